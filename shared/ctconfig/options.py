"""The container option schema (pct.md §2.3): every config key with its type and canonical text.

Two levels of checking, as in Proxmox:

- :func:`parse_option` is the strict check of a value given on the command line (ranges, enums,
  patterns, formats); it raises :class:`FormatError` / :class:`PropertyStringError` whose text is
  Proxmox's message.
- :func:`load_option` is the lenient check of a value read from a config file (Proxmox's
  ``check_type``): booleans and integers are normalised, formatted strings and property strings
  are validated and re-printed canonically, plain strings (enums, patterns, ranges) are taken as
  they are. A failure there is only a warning for the caller; the text is then kept verbatim.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.formats.digits import MAX_DIGITS, ascii_int
from shared.formats.propstring import Field, PropertyStringError, PropSchema, split_list
from shared.formats.types import (
    Bool,
    ConfigId,
    DnsName,
    Enum,
    FormatError,
    Int,
    Number,
    Size,
    Str,
    ValueType,
    check_dns_name,
    check_ipv4,
    check_ipv6,
    parse_size,
)

__all__ = [
    "DEV_SCHEMA",
    "FEATURES_SCHEMA",
    "INDEXED",
    "MP_SCHEMA",
    "NET_SCHEMA",
    "ROOTFS_SCHEMA",
    "UNUSED_SCHEMA",
    "FormatError",
    "OptionSpec",
    "PropertyStringError",
    "format_option",
    "is_settable",
    "load_option",
    "option_exists",
    "option_spec",
    "param_errors",
    "parse_option",
    "split_list",
]

ZONE_TAB = Path("/usr/share/zoneinfo/zone.tab")


# --- format checks (messages as Proxmox's format verifiers word them) --------------------------


def check_mp_string(value: str) -> None:
    """``pve-lxc-mp-string``: no ``/./``, ``/../``, trailing ``/.``/``/..``, leading ``../``;
    and (ctkit) no control characters (they reach logs, mails and terminals as they are) and
    not the container's root itself (an empty target in the generated mount entry)."""
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise FormatError("invalid format - the path contains control characters")
    # (and, ctkit, a bare '..': accepted, it failed every start after with 'invalid path')
    if (
        re.search(r"/\.\.?/", value)
        or re.search(r"/\.\.?$", value)
        or value.startswith("../")
        or value == ".."
    ):
        raise FormatError(f"invalid format - {value} contains illegal character sequences")
    if not [part for part in value.split("/") if part not in ("", ".")]:
        raise FormatError(f"invalid format - {value} is the container's root")


def check_dev_string(value: str) -> None:
    """``pve-lxc-dev-string``: below ``/dev/``, no ``/./``, ``/../``, ``/.``, ``/..``."""
    if re.search(r"/\.\.?(?:/|$)", value) or not value.startswith("/dev/"):
        raise FormatError(f"invalid format - {value} is not a valid device path")


VOLUME_ID_RE = re.compile(r"([a-z][a-z0-9\-_.]*[a-z0-9]):(.+)", re.I | re.S | re.A)


def check_volume_id(value: str) -> None:
    if not VOLUME_ID_RE.fullmatch(value):
        raise FormatError(f"invalid format - unable to parse volume ID '{value}'")


def check_unicast_mac(value: str) -> None:
    if not re.fullmatch(r"[a-f0-9][02468ace](?::[a-f0-9]{2}){5}", value, re.I | re.A):
        raise FormatError("invalid format - value does not look like a valid unicast MAC address")


def check_ipv4_config(value: str) -> None:
    if value in ("dhcp", "manual") or _is_cidr(value, 4):
        return
    raise FormatError(
        "invalid format - value does not look like a valid ipv4 network configuration"
    )


def check_ipv6_config(value: str) -> None:
    if value in ("auto", "dhcp", "manual") or _is_cidr(value, 6):
        return
    raise FormatError(
        "invalid format - value does not look like a valid ipv6 network configuration"
    )


def _is_cidr(value: str, version: int) -> bool:
    addr, sep, text = value.partition("/")
    prefix = ascii_int(text, 3) if sep else None
    if prefix is None:
        return False
    limit = 32 if version == 4 else 128
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.version == version and prefix <= limit


def check_ip_with_ll_iface(value: str) -> None:
    """An IP address; link-local IPv6 may carry an interface (``fe80::1%eth0``)."""
    m = re.fullmatch(r"(fe80:[^%]+)%(.*)", value, re.I | re.A)
    if m and re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_.\-]{1,20}[a-zA-Z0-9]", m.group(2)):
        value = m.group(1)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise FormatError("invalid format - value does not look like a valid IP address") from None


def check_idmap(value: str) -> None:
    """``passthrough`` or ``u|g:<ct>:<host>:<count>`` entries joined with ``;``."""
    if value == "passthrough":
        return
    for entry in value.split(";"):
        if not re.fullmatch(r"[ug]:\d+:\d+:\d+", entry):
            raise FormatError(f"invalid format - invalid idmap entry '{entry}'")


def check_tag(value: str) -> None:
    if not re.fullmatch(r"[a-z0-9_][a-z0-9_\-+.]*", value, re.I | re.A):
        raise FormatError("invalid format - invalid characters in tag")


def check_timezone(value: str) -> None:
    if value in ("host", "UTC") or value in _zone_names():
        return
    raise FormatError(f"invalid format - invalid time zone '{value}'")


@functools.lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    try:
        lines = ZONE_TAB.read_text(encoding="utf-8").splitlines()
    except OSError:
        return frozenset()
    fields = (line.split("\t") for line in lines if line and not line.lstrip().startswith("#"))
    return frozenset(f[2] for f in fields if len(f) > 2)


# --- value types beyond shared.formats.types --------------------------------------------------


@dataclass(frozen=True)
class DiskSize(Size):
    """``disk-size`` with Proxmox's message."""

    def parse(self, raw: str) -> int:
        try:
            return parse_size(raw)
        except FormatError:
            raise FormatError(
                f"invalid format - value '{raw}' does not look like a valid disk size"
            ) from None


@dataclass(frozen=True)
class SpaceList(ValueType):
    """A ``split_list`` list checked item by item and stored space-joined (nameserver, ...)."""

    item: Str = field(default_factory=Str)
    name = "list"
    joins_repeats = True

    def parse(self, raw: str) -> list[str]:
        items = split_list(str(raw))
        for item in items:
            self.item.parse(item)
        return items

    def render(self, value: Any) -> str:
        return " ".join(value) if isinstance(value, list | tuple) else str(value)


@dataclass(frozen=True)
class TagList(ValueType):
    """``pve-tag-list``; the canonical text is deduplicated, lower-cased, sorted, `;`-joined."""

    name = "tags"
    joins_repeats = True

    def parse(self, raw: str) -> list[str]:
        tags = split_list(str(raw))
        for tag in tags:
            check_tag(tag)
        return unique_tags(tags)

    def render(self, value: Any) -> str:
        tags = split_list(value) if isinstance(value, str) else list(value)
        return ";".join(unique_tags(tags))


def unique_tags(tags: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for tag in sorted(tags, key=str.lower):
        seen.setdefault(tag.lower(), None)
    return list(seen)


ENV_ITEM = r"\w+=[^\x00-\x08\x0a-\x1f\x7f]*"


@dataclass(frozen=True)
class EnvList(ValueType):
    """The runtime environment: ``VAR=value`` items, NUL-joined."""

    name = "env"

    def parse(self, raw: str) -> list[str]:
        text = str(raw)
        if not re.fullmatch(rf"{ENV_ITEM}(?:\0{ENV_ITEM})*", text, re.ASCII):
            raise FormatError("value does not match the regex pattern")
        return text.split("\0")

    def render(self, value: Any) -> str:
        return "\0".join(value) if isinstance(value, list | tuple) else str(value)


@dataclass(frozen=True)
class StartupOrder(ValueType):
    """``pve-startup-order``: ``[[order=]N][,up=N][,down=N]``, printed as the GUI writes it."""

    name = "startup"

    def parse(self, raw: str) -> dict[str, int]:
        res: dict[str, int] = {}
        for part in str(raw).split(","):
            if not part.strip():
                continue
            m = re.fullmatch(r"(?:order=)?(\d{1,18})|(up|down)=(\d{1,18})", part, re.ASCII)
            if not m:
                raise FormatError("invalid format - unable to parse startup options")
            if m.group(1) is not None:
                res["order"] = int(m.group(1))
            else:
                res[m.group(2)] = int(m.group(3))
        if not res:
            raise FormatError("invalid format - unable to parse startup options")
        return res

    def render(self, value: Any) -> str:
        if isinstance(value, str):
            value = self.parse(value)
        return ",".join(f"{k}={value[k]}" for k in ("order", "up", "down") if k in value)


@dataclass(frozen=True)
class PropString(ValueType):
    """A property-string option: parses into a dict, prints canonically."""

    schema: PropSchema = field(default_factory=lambda: PropSchema({}))
    name = "property-string"

    def parse(self, raw: str) -> dict[str, Any]:
        return self.schema.parse(str(raw))

    def render(self, value: Any) -> str:
        if isinstance(value, str):
            value = self.schema.parse(value)
        return self.schema.render(value)

    def describe(self) -> str:
        return self.schema.describe()


# --- property-string schemas ---------------------------------------------------------------

MOUNT_OPTION = r"(?:discard|lazytime|noatime|nodev|noexec|nosuid)"
MP_STRING = Str(check=check_mp_string, metavar="volume")


def _rootfs_fields() -> dict[str, Field]:
    return {
        "volume": Field(MP_STRING, optional=False, default_key=True),
        "size": Field(DiskSize()),
        "acl": Field(Bool()),
        "idmap": Field(Str(check=check_idmap, metavar="idmap")),
        "mountoptions": Field(Str(pattern=rf"{MOUNT_OPTION}(?:;{MOUNT_OPTION})*")),
        "quota": Field(Bool()),
        "replicate": Field(Bool()),
        "ro": Field(Bool()),
        "shared": Field(Bool()),
    }


ROOTFS_SCHEMA = PropSchema(_rootfs_fields())
MP_SCHEMA = PropSchema(
    {
        **_rootfs_fields(),
        "backup": Field(Bool()),
        "keepattrs": Field(Bool()),
        "mp": Field(Str(check=check_mp_string, metavar="Path"), optional=False),
    }
)
UNUSED_SCHEMA = PropSchema(
    {"volume": Field(Str(check=check_volume_id, metavar="volume"), False, default_key=True)}
)
NET_SCHEMA = PropSchema(
    {
        "name": Field(Str(pattern=r"[-_.\w\d]+"), optional=False),
        "bridge": Field(Str(pattern=r"[-_.\w\d]+", metavar="bridge")),
        "firewall": Field(Bool()),
        "gw": Field(Str(check=check_ipv4, metavar="GatewayIPv4")),
        "gw6": Field(Str(check=check_ipv6, metavar="GatewayIPv6")),
        "host-managed": Field(Bool()),
        "hwaddr": Field(Str(check=check_unicast_mac, metavar="XX:XX:XX:XX:XX:XX")),
        "ip": Field(Str(check=check_ipv4_config, metavar="(IPv4/CIDR|dhcp|manual)")),
        "ip6": Field(Str(check=check_ipv6_config, metavar="(IPv6/CIDR|auto|dhcp|manual)")),
        "link_down": Field(Bool()),
        "mtu": Field(Int(minimum=64, maximum=65535)),
        "rate": Field(Number(minimum=0)),
        "tag": Field(Int(minimum=1, maximum=4094)),
        "trunks": Field(Str(pattern=r"\d+(?:;\d+)*", metavar="vlanid[;vlanid...]")),
        "type": Field(Enum("veth")),
    }
)
MAX_ID = (1 << 32) - 2  # uid_t is 32 bits and (uid_t)-1 means "unchanged" to chown
DEV_SCHEMA = PropSchema(
    {
        "path": Field(Str(check=check_dev_string, metavar="Path"), default_key=True),
        "mode": Field(Str(pattern=r"0[0-7]{3}", metavar="Octal access mode")),
        # (uid_t)-1 means "unchanged" to chown: an id above it passed set and broke the start
        "uid": Field(Int(minimum=0, maximum=MAX_ID)),
        "gid": Field(Int(minimum=0, maximum=MAX_ID)),
        "deny-write": Field(Bool()),
    }
)
FEATURES_SCHEMA = PropSchema(
    {
        "force_rw_sys": Field(Bool()),
        "fuse": Field(Bool()),
        "keyctl": Field(Bool()),
        "mknod": Field(Bool()),
        "mount": Field(Str(pattern=r"[a-zA-Z0-9_; ]+", metavar="fstype;fstype;...")),
        "nesting": Field(Bool()),
    }
)

# --- the option table ---------------------------------------------------------------------


@dataclass(frozen=True)
class OptionSpec:
    """One config key. ``formatted``: checked and re-printed even when read from a file."""

    key: str
    type: ValueType
    default: Any = None
    formatted: bool = False
    internal: bool = False  # parent/snaptime: never given on the command line

    def parse(self, raw: str) -> Any:
        return self.type.parse(raw)

    def render(self, value: Any) -> str:
        return self.type.render(value)


def _spec(key: str, vtype: ValueType, default: Any = None, **kw: Any) -> OptionSpec:
    return OptionSpec(key, vtype, default, **kw)


def _fmt(key: str, vtype: ValueType, default: Any = None, **kw: Any) -> OptionSpec:
    return OptionSpec(key, vtype, default, formatted=True, **kw)


# the lock of a stopped container whose volumes are mounted on the host: a start, a stop and
# the start hook go ahead under it, as Proxmox's do
MOUNTED_LOCK = "mounted"
LOCKS = [
    "backup",
    "create",
    "destroyed",
    "disk",
    "fstrim",
    "migrate",
    MOUNTED_LOCK,
    "rollback",
    "snapshot",
    "snapshot-delete",
]
# memory and swap in MiB: their sum in bytes must fit the kernel's signed 64-bit cgroup limits
# (larger values wrap around in the cgroup file and leave the container a random limit)
MAX_MIB = (1 << 42) - 1
OSTYPES = "debian devuan ubuntu centos fedora opensuse archlinux alpine gentoo nixos unmanaged"

FIXED: dict[str, OptionSpec] = {
    s.key: s
    for s in (
        _spec("arch", Enum("amd64", "i386", "arm64", "armhf", "riscv32", "riscv64"), "amd64"),
        _spec("cmode", Enum("shell", "console", "tty"), "tty"),
        _spec("console", Bool(), True),
        _spec("cores", Int(minimum=1, maximum=8192)),
        _spec("cpulimit", Number(minimum=0, maximum=8192), 0),
        _spec("cpuunits", Int(minimum=0, maximum=500000)),
        _spec("debug", Bool(), False),
        _spec("description", Str(max_length=8 * 1024)),
        _spec("entrypoint", Str(pattern=r"[^\x00-\x08\x0a-\x1f\x7f]+"), "/sbin/init"),
        _spec("env", EnvList()),
        _fmt("features", PropString(FEATURES_SCHEMA)),
        _fmt("hookscript", Str(check=check_volume_id, metavar="volume")),
        _fmt("hostname", DnsName),
        _spec("lock", Enum(*LOCKS)),
        _spec("memory", Int(minimum=16, maximum=MAX_MIB), 512),
        _fmt("nameserver", SpaceList(Str(check=check_ip_with_ll_iface))),
        _spec("onboot", Bool(), False),
        _spec("ostype", Enum(*OSTYPES.split())),
        _fmt("parent", ConfigId, internal=True),
        _spec("protection", Bool(), False),
        _fmt("rootfs", PropString(ROOTFS_SCHEMA)),
        _fmt("searchdomain", SpaceList(Str(check=check_dns_name))),
        _spec("snaptime", Int(minimum=0), internal=True),
        _fmt("startup", StartupOrder()),
        _spec("swap", Int(minimum=0, maximum=MAX_MIB), 512),
        _fmt("tags", TagList()),
        _spec("template", Bool(), False),
        _fmt("timezone", Str(check=check_timezone, metavar="timezone")),
        _spec("tty", Int(minimum=0, maximum=6), 2),
        _spec("unprivileged", Bool(), False),
    )
}

# indexed families: prefix -> (count, spec factory)
INDEXED: dict[str, int] = {"mp": 256, "net": 32, "dev": 256, "unused": 256}
_FAMILY_TYPES: dict[str, ValueType] = {
    "mp": PropString(MP_SCHEMA),
    "net": PropString(NET_SCHEMA),
    "dev": PropString(DEV_SCHEMA),
    "unused": PropString(UNUSED_SCHEMA),
}
INDEXED_RE = re.compile(r"(mp|net|dev|unused)(0|[1-9]\d{0,2})")


def option_spec(key: str) -> OptionSpec | None:
    """The spec of ``key`` (``memory``, ``mp7``, ``net31``...), None for unknown keys."""
    spec = FIXED.get(key)
    if spec is not None:
        return spec
    m = INDEXED_RE.fullmatch(key)
    if m and int(m.group(2)) < INDEXED[m.group(1)]:
        return OptionSpec(key, _FAMILY_TYPES[m.group(1)], formatted=True)
    return None


def option_exists(key: str) -> bool:
    return option_spec(key) is not None


def is_settable(key: str) -> bool:
    """Whether ``key`` may be given on the command line (everything but parent/snaptime)."""
    spec = option_spec(key)
    return spec is not None and not spec.internal


NOT_UTF8_RE = re.compile("[\udc80-\udcff]")


def parse_option(key: str, raw: str) -> Any:
    """Strictly validate a command-line value; returns the parsed value.

    Property strings give dicts (sizes in bytes), lists give ``list[str]``, booleans ``bool``.
    """
    spec = option_spec(key)
    if spec is None:
        raise FormatError(
            "property is not defined in schema and the schema does not allow additional properties"
        )
    text = str(raw)
    if key != "description" and ("\n" in text or "\r" in text):
        raise FormatError("property contains a line feed")
    if key != "description" and NOT_UTF8_RE.search(text):
        # bytes that are no UTF-8 reach us as surrogates (the command line's decoding); written
        # out, they made a config that no command could read any more
        raise FormatError("value is not valid UTF-8")
    return spec.parse(text)


def format_option(key: str, value: Any) -> str:
    """The canonical config-file text of ``value`` (a parsed value or a raw string)."""
    spec = option_spec(key)
    if spec is None:
        return str(value)
    if isinstance(value, str) and isinstance(spec.type, Bool | Int | Number):
        value = spec.parse(value)
    return spec.render(value)


@functools.lru_cache(maxsize=4096)
def load_option(key: str, raw: str) -> str:
    """Proxmox's ``check_type`` for a value read from a file; returns the text to keep.

    Raises FormatError (message without the ``invalid format - `` prefix) for unknown keys and
    bad values; the caller warns and keeps ``raw``. A pure function of its arguments, so its
    results are kept: a backup reads its container's config a dozen times, and ``pct list``
    reads many configs whose lines are mostly the same.
    """
    spec = option_spec(key)
    if spec is None:
        raise FormatError(f"unknown setting '{key}'")
    try:
        return _load(spec, raw)
    except PropertyStringError as err:
        lines = [f"{key}.{k}: {v}" for k, v in err.details.items()]
        raise FormatError("\n".join(["format error", *lines])) from None
    except FormatError as err:
        raise FormatError(str(err).removeprefix("invalid format - ")) from None


def _load(spec: OptionSpec, raw: str) -> str:
    vtype = spec.type
    if isinstance(vtype, Bool):
        return vtype.render(vtype.parse(raw))
    if isinstance(vtype, Int):
        if not re.fullmatch(r"\d+", raw, re.ASCII):
            raise FormatError(f"type check ('integer') failed - got '{raw}'")
        if len(raw) > MAX_DIGITS:
            raise FormatError(f"type check ('integer') failed - got {len(raw)} digits")
        return str(int(raw))
    if isinstance(vtype, Number):
        if not re.fullmatch(r"\d+(\.\d+)?", raw, re.ASCII):
            raise FormatError(f"type check ('number') failed - got '{raw}'")
        return raw
    if spec.formatted:
        vtype.parse(raw)  # validated; Proxmox keeps the text as written until the key is set
        return raw
    return raw


def decode_option(key: str, text: str) -> Any:
    """The parsed value of stored text (lenient on ranges, as a loaded file is)."""
    spec = option_spec(key)
    if spec is None:
        return text
    vtype = spec.type
    if isinstance(vtype, Int):
        return int(_load(spec, text))
    if isinstance(vtype, Number):
        return float(_load(spec, text))
    if isinstance(vtype, Bool):
        return vtype.parse(text)
    if isinstance(vtype, Str) and not spec.formatted:
        return text
    return vtype.parse(text)


def param_errors(key: str, err: FormatError) -> dict[str, str]:
    """``{param: message}`` lines for ``400 Parameter verification failed.``."""
    if isinstance(err, PropertyStringError):
        out = {key: str(err)}
        out.update({f"{key}.{k}": v for k, v in err.details.items()})
        return out
    return {key: str(err)}
