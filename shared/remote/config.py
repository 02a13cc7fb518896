"""``/etc/pve/ctkit-remotes.cfg``: named SSH destinations of other ctkit hosts.

    ssh: <name>
        host 198.18.0.2
        port 22
        user root
        identity /root/.ssh/id_ed25519
        hostkey ssh-ed25519 AAAA...
        command /usr/local/bin/pct
        root /srv/other

The host key is pinned here and nothing else is trusted: ssh runs with strict host-key
checking against a known-hosts file holding only this key, so a remote is never trusted on
first use. ``command`` and ``root`` are the remote ``pct`` and its CTKIT_ROOT when not default.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import atomic, paths
from ..errors import ConfigError, NotFoundError, ParamError
from ..formats import sectionconfig as sc
from ..formats.lines import read_config_text
from ..formats.propstring import Field
from ..formats.types import FormatError, Int, Str
from ..regularfile import read_regular

HOSTKEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)
MAX_KEY_LEN = 16384


def _check_hostkey(value: str) -> None:
    parse_hostkey(value)


def _check_abs(value: str) -> None:
    if not value.startswith("/") or any(c in value for c in "\n\0"):
        raise FormatError("value does not look like a valid absolute path")


NAME = Str(pattern=r"[a-zA-Z][a-zA-Z0-9_.-]{0,62}", metavar="name")
SECTION_TYPES = {
    "ssh": sc.SectionType(
        {
            "host": Field(Str(pattern=r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}"), optional=False),
            "port": Field(Int(minimum=1, maximum=65535)),
            "user": Field(Str(pattern=r"[a-z_][a-z0-9_.-]{0,31}")),
            "identity": Field(Str(check=_check_abs)),
            "hostkey": Field(Str(check=_check_hostkey, max_length=MAX_KEY_LEN), optional=False),
            "command": Field(Str(check=_check_abs)),
            "root": Field(Str(check=_check_abs)),
        },
        id_type=NAME,
    )
}


def hostkey_from_file(path: Path) -> str:
    """The host key in a ``.pub`` file a person names (``--hostkey-file``): a regular file,
    not a symlink, opened without waiting (a FIFO would block), of at most MAX_KEY_LEN bytes."""
    try:
        found = read_regular(path, MAX_KEY_LEN, follow_symlinks=False)
    except OSError as err:
        raise ParamError({"hostkey-file": f"'{path}': {err.strerror}"}) from None
    if found is None:
        what = "is not a regular file" if path.is_symlink() or path.exists() else "does not exist"
        raise ParamError({"hostkey-file": f"'{path}' {what}"})
    if len(found[0]) > MAX_KEY_LEN:
        raise ParamError({"hostkey-file": f"'{path}' is too large for a host key"})
    return found[0].decode("utf-8", "replace").strip()


def parse_hostkey(value: str) -> tuple[str, bytes]:
    """``<type> <base64>`` (a comment after it is dropped) → (type, key blob)."""
    parts = value.split()
    if len(parts) < 2 or parts[0] not in HOSTKEY_TYPES:
        raise FormatError("expected '<key type> <base64 key>' (e.g. from the host's .pub file)")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise FormatError("host key is not valid base64") from None
    # the blob starts with its own length-prefixed type name: a mismatch is a pasting error
    if blob[4 : 4 + len(parts[0])] != parts[0].encode():
        raise FormatError("host key blob does not match its type")
    return parts[0], blob


def fingerprint(hostkey: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a host key."""
    _type, blob = parse_hostkey(hostkey)
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class Remote:
    name: str
    host: str
    hostkey: str
    port: int = 22
    user: str = "root"
    identity: str | None = None
    command: str | None = None
    root: str | None = None

    def props(self) -> dict[str, Any]:
        keytype, blob = parse_hostkey(self.hostkey)
        data: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user}
        data["hostkey"] = f"{keytype} {base64.b64encode(blob).decode()}"
        for key in ("identity", "command", "root"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data


def _from_section(sec: sc.Section) -> Remote:
    p = sec.props
    return Remote(
        name=sec.id,
        host=str(p["host"]),
        hostkey=str(p["hostkey"]),
        port=int(p.get("port", 22)),
        user=str(p.get("user", "root")),
        identity=p.get("identity"),
        command=p.get("command"),
        root=p.get("root"),
    )


def load(path: Path | None = None) -> sc.SectionConfig:
    path = path or paths.remotes_cfg()
    try:
        text = read_config_text(path, path.name)
    except FileNotFoundError:
        text = ""
    # strict: a remote with a bad host key must never be half-read and used
    return sc.parse(text, SECTION_TYPES, strict=True)


def list_remotes() -> list[Remote]:
    return [_from_section(sec) for sec in load()]


def get(name: str) -> Remote:
    sec = load().get(name)
    if sec is None:
        raise NotFoundError(f"remote '{name}' does not exist", hint="see 'pct remote list'")
    return _from_section(sec)


def add(remote: Remote) -> None:
    cfg = load()
    try:
        cfg.add(sc.Section("ssh", remote.name, remote.props()))
    except ConfigError as err:
        raise ConfigError(f"remote '{remote.name}': {err}") from None
    atomic.write_text(paths.remotes_cfg(), cfg.render(), mode=0o600)


def remove(name: str) -> None:
    cfg = load()
    if cfg.get(name) is None:
        raise NotFoundError(f"remote '{name}' does not exist")
    cfg.remove(name)
    atomic.write_text(paths.remotes_cfg(), cfg.render(), mode=0o600)


def validate(remote: Remote) -> Remote:
    """Check every field against the schema (the same checks as reading the file)."""
    stype = SECTION_TYPES["ssh"]
    raw = {"name": remote.name, "host": remote.host, "port": str(remote.port)}
    raw.update(user=remote.user, hostkey=remote.hostkey)
    raw.update({k: v for k in ("identity", "command", "root") if (v := getattr(remote, k))})
    errors: dict[str, str] = {}
    for key, value in raw.items():
        try:
            NAME.parse(value) if key == "name" else stype.parse_value(key, value)
        except FormatError as err:
            errors[key] = str(err)
    if errors:
        raise ParamError(errors)
    return remote
