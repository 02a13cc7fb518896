"""The container config (``/etc/pve/lxc/<vmid>.conf``): model, parser and writer (pct.md §2.1-2.2).

A :class:`Section` keeps every key as the text that is written back (canonical for values that
parse, verbatim for values that do not), plus the ordered raw ``lxc.*`` entries. The description
and the runtime environment are keys too (``description``, ``env`` NUL-joined); the writer turns
them into ``#`` lines and ``lxc.environment.runtime`` lines. :class:`Config` is the main section
with the ``[pve:pending]`` section, the snapshot sections, the digest and the parse warnings.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from shared.errors import ConfigError, NotFoundError
from shared.formats.propstring import PropertyStringError
from shared.formats.types import FormatError, parse_bool
from shared.printable import printable

from . import rawlxc
from .mountpoints import (
    MountPoint,
    iter_mountpoints,
    parse_mountpoint,
    present_mountpoint_keys,
    unused_keys,
    used_volumes,
)
from .options import (
    DEV_SCHEMA,
    FEATURES_SCHEMA,
    INDEXED,
    NET_SCHEMA,
    decode_option,
    format_option,
    load_option,
    parse_option,
)

# keys the writer never prints as ``key: value`` (description and env have their own lines)
SKIP_KEYS = frozenset({"digest", "description", "pending", "snapshots", "snapname", "lxc", "env"})
# bytes kept as they are in a ``#`` description line: printable ASCII except ``%`` and ``:``
_SAFE_DESCR = frozenset(b for b in range(0x20, 0x7F) if b not in (0x25, 0x3A))


def unparsable(vmid: int, key: str, err: FormatError) -> ConfigError:
    """The error for a stored value that does not parse (a hand-edited or foreign config), in
    one line: a property string's problems follow in brackets, each with its sub-key."""
    msg = str(err).removeprefix("invalid format - ")
    if isinstance(err, PropertyStringError) and err.details:
        shown = "; ".join(f"{key}.{k}: {v}" for k, v in err.details.items())
        msg = f"{msg} ({shown})"
    return ConfigError(f"vm {vmid} - unable to parse value of '{key}' - {msg}")


def encode_text(text: str) -> str:
    """Proxmox's ``encode_text``: UTF-8, then ``%XX`` for non-printable bytes, ``%`` and ``:``."""
    data = text.encode("utf-8", "surrogateescape")
    return "".join(chr(b) if b in _SAFE_DESCR else f"%{b:02X}" for b in data)


def decode_text(text: str) -> str:
    """Proxmox's ``decode_text``: ``%XX`` unescaped, then decoded as UTF-8."""
    data = text.encode("utf-8", "surrogateescape")
    raw = re.sub(rb"%([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), data)
    return raw.decode("utf-8", "replace")


class Section:
    """One section of a config file: ``key -> text`` plus raw ``lxc.*`` entries."""

    def __init__(
        self,
        vmid: int = 0,
        values: dict[str, str] | None = None,
        lxc: list[tuple[str, str]] | None = None,
    ) -> None:
        self.vmid = vmid
        self.values: dict[str, str] = dict(values or {})
        self.lxc: list[tuple[str, str]] = list(lxc or [])

    # --- access ---------------------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        return key in self.values

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vmid={self.vmid}, values={self.values!r})"

    def keys(self) -> list[str]:
        return sorted(self.values)

    def get_raw(self, key: str) -> str | None:
        """The stored text of ``key`` (as written to the file), or None."""
        return self.values.get(key)

    def get(self, key: str, default: Any = None) -> Any:
        """The parsed value: dict for property strings, int/float/bool, list for lists.

        Keys outside the schema give their text. A stored value that does not parse (kept
        verbatim from a hand-edited file) raises ConfigError.
        """
        text = self.values.get(key)
        if text is None:
            return default
        if key == "env":
            return text.split("\0")
        try:
            return decode_option(key, text)
        except FormatError as err:
            raise unparsable(self.vmid, key, err) from None

    def set(self, key: str, value: Any) -> None:
        """Validate and store a value (raw text or parsed value); None deletes the key.

        Raises FormatError / PropertyStringError with Proxmox's message.
        """
        if value is None:
            self.delete(key)
            return
        if isinstance(value, MountPoint):
            value = value.to_dict()
        if isinstance(value, str):
            text = format_option(key, parse_option(key, value))
        else:
            text = format_option(key, value)
            parse_option(key, text)
        self.values[key] = text

    def set_raw(self, key: str, text: str) -> None:
        """Store text verbatim, without any check (internal keys, restore of foreign data)."""
        self.values[key] = text

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def is_empty(self) -> bool:
        return not self.values and not self.lxc

    @property
    def description(self) -> str | None:
        return self.values.get("description")

    @description.setter
    def description(self, text: str | None) -> None:
        if text:
            self.values["description"] = text
        else:
            self.values.pop("description", None)

    @property
    def env(self) -> list[str]:
        text = self.values.get("env")
        return [item for item in text.split("\0") if item] if text else []

    def _flag(self, key: str) -> bool:
        try:
            return parse_bool(self.values.get(key) or "0")
        except FormatError:
            return False

    def mountpoints(self, *, strict: bool = False) -> list[MountPoint]:
        """rootfs first, then mp0..mp255, parsed. An entry that does not parse (a hand-edited
        or newer config) is skipped, or with ``strict`` a ConfigError naming it, as at start:
        whatever archives, copies, snapshots or mounts the container's data must not go on
        without a mount point it cannot read (a backup left its files out, and succeeded)."""
        if strict:
            return [self.mountpoint(key) for key in present_mountpoint_keys(self.values)]
        return list(iter_mountpoints(self.values))

    def mountpoint(self, key: str) -> MountPoint:
        """The stored rootfs/mpN ``key`` parsed (it must exist); a value that does not parse
        (a hand-edited or foreign config) is a ConfigError naming it, as at start."""
        try:
            return parse_mountpoint(key, self.values[key])
        except FormatError as err:
            raise unparsable(self.vmid, key, err) from None

    def _indexed(self, prefix: str) -> Iterator[tuple[str, str]]:
        for i in range(INDEXED[prefix]):
            key = f"{prefix}{i}"
            if key in self.values:
                yield key, self.values[key]

    def nets(self) -> dict[str, dict[str, Any]]:
        """``net0``..``net31`` parsed, in index order (entries that do not parse skipped)."""
        return _parse_family(self._indexed("net"), NET_SCHEMA.parse)

    def devices(self) -> dict[str, dict[str, Any]]:
        """``dev0``..``dev255`` parsed, in index order."""
        return _parse_family(self._indexed("dev"), DEV_SCHEMA.parse)

    def unused(self) -> dict[str, str]:
        """``unusedN -> volid`` in index order."""
        return {k: self.values[k] for k in unused_keys(self.values)}

    def features(self) -> dict[str, Any]:
        text = self.values.get("features")
        if not text:
            return {}
        try:
            return FEATURES_SCHEMA.parse(text)
        except FormatError:
            return {}

    def copy(self) -> Section:
        return copy.deepcopy(self)


def _parse_family(items: Iterator[tuple[str, str]], parse: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, text in items:
        try:
            out[key] = parse(text)
        except FormatError:
            continue
    return out


def parse_pending_delete(text: str | None) -> dict[str, bool]:
    """``delete:`` of ``[pve:pending]`` → ``{key: force}`` (``!key`` = forced)."""
    if not text:
        return {}
    result: dict[str, bool] = {}
    for entry in re.split(r"\s+", re.sub(r"[,;]", " ", text).strip()):
        if entry:
            force = entry.startswith("!")
            result[entry[1:] if force else entry] = force
    return result


def print_pending_delete(deletes: dict[str, bool]) -> str:
    return ",".join(("!" if deletes[k] else "") + k for k in sorted(deletes))


class Config(Section):
    """A whole container config: main section, ``[pve:pending]``, snapshots, digest, warnings."""

    def __init__(self, vmid: int, values: dict[str, str] | None = None) -> None:
        super().__init__(vmid, values)
        self.pending = Section(vmid)
        self.snapshots: dict[str, Section] = {}
        self.warnings: list[str] = []
        self._file: bytes | None = None  # the file as last read or written
        self._digest: str | None = None

    def read_from(self, data: bytes) -> None:
        """The file this config was last read from or written to: what :attr:`digest` hashes."""
        self._file, self._digest = data, None

    @property
    def digest(self) -> str | None:
        """Proxmox's ``digest``: the SHA-1 of the file as last read or written, None for a
        config never read or written. Computed when asked: most commands never need it, and
        hashlib loads OpenSSL at import."""
        if self._digest is None and self._file is not None:
            import hashlib

            self._digest = hashlib.sha1(self._file).hexdigest()
        return self._digest

    # --- well-known keys -------------------------------------------------------------------

    @property
    def lock(self) -> str | None:
        return self.values.get("lock")

    @property
    def unprivileged(self) -> bool:
        return self._flag("unprivileged")

    @property
    def protection(self) -> bool:
        return self._flag("protection")

    @property
    def is_template(self) -> bool:
        return self.values.get("template") == "1"

    @property
    def parent(self) -> str | None:
        return self.values.get("parent")

    # --- pending ---------------------------------------------------------------------------

    def pending_deletes(self) -> dict[str, bool]:
        return parse_pending_delete(self.pending.values.get("delete"))

    def _store_pending_deletes(self, deletes: dict[str, bool]) -> None:
        if deletes:
            self.pending.values["delete"] = print_pending_delete(deletes)
        else:
            self.pending.values.pop("delete", None)

    def add_pending_delete(self, key: str, force: bool = False) -> None:
        deletes = self.pending_deletes()
        deletes[key] = force
        self._store_pending_deletes(deletes)

    def remove_pending_delete(self, key: str) -> None:
        deletes = self.pending_deletes()
        if deletes.pop(key, None) is not None:
            self._store_pending_deletes(deletes)

    def cleanup_pending(self) -> bool:
        """Drop pending values equal to the current ones and deletes of unset keys."""
        changed = False
        for key in [k for k in self.pending.values if k != "delete"]:
            if self.values.get(key) == self.pending.values[key]:
                del self.pending.values[key]
                changed = True
        deletes = self.pending_deletes()
        kept = {k: f for k, f in deletes.items() if k in self.values}
        changed = changed or len(kept) != len(deletes)
        self._store_pending_deletes(kept)
        return changed

    def merged(self) -> Section:
        """The main section with pending values applied and pending deletes removed."""
        merged = Section(self.vmid, self.values, self.lxc)
        for key, text in self.pending.values.items():
            if key != "delete":
                merged.values[key] = text
        for key in self.pending_deletes():
            merged.values.pop(key, None)
        return merged

    # --- snapshots and derived configs -----------------------------------------------------

    def snapshot(self, name: str) -> Section:
        section = self.snapshots.get(name)
        if section is None:
            raise NotFoundError(f"snapshot '{name}' does not exist")
        return section

    def for_backup(self) -> Config:
        """The config as stored in a backup: no lock, parent, snapshots or pending section."""
        values = {k: v for k, v in self.values.items() if k not in ("lock", "parent", "snapstate")}
        backup = Config(self.vmid, values)
        backup.lxc = list(self.lxc)
        return backup

    def copy(self) -> Config:
        return copy.deepcopy(self)

    def to_text(self) -> str:
        return write_config(self)

    def to_bytes(self) -> bytes:
        return self.to_text().encode("utf-8", "surrogateescape")


# --- parsing ------------------------------------------------------------------------------

PENDING_RE = re.compile(r"^\[pve:pending\]\s*$", re.I | re.ASCII)
SECTION_RE = re.compile(r"^\[([a-z][a-z0-9_\-]+)\]\s*$", re.I | re.ASCII)
DESCR_LINE_RE = re.compile(r"^\#(.*)$")
DESCR_KEY_RE = re.compile(r"^(description):\s*(.*\S)\s*$", re.ASCII)
SNAPSTATE_RE = re.compile(r"^snapstate:\s*(prepare|delete)\s*$", re.ASCII)
DELETE_RE = re.compile(r"^delete:\s*(.*\S)\s*$", re.ASCII)
_SURROGATE_RE = re.compile("[\udc80-\udcff]")
KEY_RE = re.compile(r"^([a-z][a-z_]*\d*):\s*(.+?)\s*$", re.ASCII)


class _Parser:
    """Line-by-line state of :func:`parse_config`."""

    def __init__(self, conf: Config, strict: bool) -> None:
        self.conf = conf
        self.strict = strict
        self.section: Section = conf
        self.in_pending = False
        self.descr = ""

    def problem(self, message: str) -> None:
        if self.strict:
            raise ConfigError(message)
        self.conf.warnings.append(message)

    def flush_description(self) -> None:
        if self.descr:
            self.section.values["description"] = self.descr
        self.descr = ""

    def feed(self, line: str, lineno: int) -> None:
        if not line.strip():
            return
        if self.header(line):
            return
        m = DESCR_LINE_RE.match(line)
        if m:
            self.descr += decode_text(m.group(1)) + "\n"
            return
        if _SURROGATE_RE.search(line):
            # undecodable bytes would reach LXC, the guest files and the writer: never load them
            shown = line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise ConfigError(
                f"vm {self.conf.vmid} - line {lineno} is not valid UTF-8: {shown}",
                hint="container configs are UTF-8 text: fix or remove that line",
            )
        self.body(line)

    def header(self, line: str) -> bool:
        if PENDING_RE.match(line):
            self.flush_description()
            self.conf.pending = self.section = Section(self.conf.vmid)
            self.in_pending = True
            return True
        m = SECTION_RE.match(line)
        if m:
            self.flush_description()
            self.section = Section(self.conf.vmid)
            self.conf.snapshots[m.group(1)] = self.section
            self.in_pending = False
            return True
        return False

    def body(self, line: str) -> None:
        vmid = self.conf.vmid
        entry = rawlxc.split_line(line)
        if entry is not None:
            self.raw_lxc(line, *entry)
        elif m := DESCR_KEY_RE.match(line):
            self.descr += decode_text(m.group(2))
        elif m := SNAPSTATE_RE.match(line):
            self.section.values["snapstate"] = m.group(1)
        elif m := DELETE_RE.match(line):
            if self.in_pending:
                self.section.values["delete"] = m.group(1)
            else:
                self.problem(f"vm {vmid} - property 'delete' is only allowed in [pve:pending]")
        elif m := KEY_RE.match(line):
            self.key_value(m.group(1), m.group(2))
        else:
            self.problem(f"vm {vmid} - unable to parse config: {line}")

    def raw_lxc(self, line: str, key: str, value: str) -> None:
        check = rawlxc.check_key(self.conf.vmid, key)
        if not check.accepted:
            self.problem(check.message or f"vm {self.conf.vmid} - unable to parse config: {line}")
            return
        if check.message:
            self.conf.warnings.append(check.message)
        if key == rawlxc.ENV_RUNTIME_KEY:
            env = self.section.values.get("env")
            self.section.values["env"] = value if env is None else f"{env}\0{value}"
        else:
            self.section.lxc.append((key, value))

    def key_value(self, key: str, value: str) -> None:
        try:
            text = load_option(key, value)
        except FormatError as err:
            self.problem(f"vm {self.conf.vmid} - unable to parse value of '{key}' - {err}")
            text = value
        self.section.values[key] = text


def parse_config(data: bytes | str, vmid: int, *, strict: bool = False) -> Config:
    """Parse a config file leniently (problems go to ``conf.warnings``) or strictly (raise)."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
    conf = Config(vmid)
    conf.read_from(raw)
    parser = _Parser(conf, strict)
    for lineno, line in enumerate(raw.decode("utf-8", "surrogateescape").split("\n"), 1):
        parser.feed(line, lineno)
    parser.flush_description()
    conf.values.pop("snapstate", None)
    return conf


# --- writing ------------------------------------------------------------------------------


def _description_lines(descr: str) -> list[str]:
    lines = descr.split("\n")
    while lines and lines[-1] == "":  # Perl's split drops trailing empty fields
        lines.pop()
    return ["#" + encode_text(line) for line in lines]


# every key this module writes: option names and raw ``lxc.`` keys (what the reader takes back)
_WRITTEN_KEY_RE = re.compile(r"[a-z][a-z0-9_.\-]*", re.ASCII)


def _line(key: str, value: str) -> str:
    if not _WRITTEN_KEY_RE.fullmatch(key):  # a newline in a key would start a line of its own
        raise ConfigError(f"invalid property name '{printable(key)}'")
    if "\n" in value:
        raise ConfigError(f"detected invalid newline inside property '{key}'")
    return f"{key}: {value}\n"


def section_text(values: dict[str, str], lxc: list[tuple[str, str]]) -> str:
    """One section: description lines, sorted keys, env lines, raw lxc entries."""
    out = [line + "\n" for line in _description_lines(values.get("description") or "")]
    out += [_line(k, values[k]) for k in sorted(values) if k not in SKIP_KEYS]
    env = values.get("env")
    if env:
        # an empty entry (two NULs, an empty line read back) is dropped, as Proxmox's writer
        # splits the list on runs of NULs
        out += [_line(rawlxc.ENV_RUNTIME_KEY, item) for item in env.split("\0") if item]
    out += [_line(k, v) for k, v in lxc]
    return "".join(out)


def write_config(conf: Config) -> str:
    """The file text of ``conf`` (pct.md §2.2); raises ConfigError for a newline in a value."""
    main = {k: v for k, v in conf.values.items() if k != "snapstate"}
    used = set(used_volumes(main))
    for key in unused_keys(main):
        if main[key] in used:
            del main[key]
    text = section_text(main, conf.lxc)
    if not conf.pending.is_empty():
        text += "\n[pve:pending]\n" + section_text(conf.pending.values, conf.pending.lxc)
    for name in sorted(conf.snapshots):
        snap = conf.snapshots[name]
        text += f"\n[{name}]\n" + section_text(snap.values, snap.lxc)
    return text
