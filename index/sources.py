"""Index sources in ``etc/pveam/sources.cfg`` (a section config); the two upstream sources
are the default when the file does not exist.

    source: proxmox
        url http://download.proxmox.com/images
        index aplinfo-pve-9.dat
        fingerprints F4E1...0C39,24B3...778E

Optional keys: ``mirrors`` (further base URLs, tried in order), ``enabled 0|1``, and the
transfer limits (:class:`Transfer`): ``connect-timeout`` and ``read-timeout`` (seconds),
``retries`` (further attempts per file after the first), ``max-size`` (largest template without
a Content-Length, e.g. ``16G``) and ``max-index-size`` (index and signature). The source
name is also the file name of its stored index, so it is restricted to a safe character set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared import atomic, paths
from shared.errors import AlreadyExistsError, ConfigError, NotFoundError
from shared.formats import sectionconfig
from shared.formats.lines import read_config_text
from shared.formats.propstring import Field
from shared.formats.sectionconfig import Section, SectionConfig, SectionType
from shared.formats.types import Bool, FormatError, Int, ListOf, Number, Size, Str, ValueType
from shared.gpg import normalize_fingerprint
from shared.http import (
    DEFAULT_RETRIES,
    Downloader,
    RetryCallback,
    RetryPolicy,
)
from shared.httpclient import DEFAULT_TIMEOUT, Client

from . import store

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
INDEX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
URL_RE = re.compile(r"https?://[^\s/?#@]+(?:/[^\s?#]*)?", re.IGNORECASE)


class SourceError(ConfigError):
    """An invalid source definition (one line, names the offending value)."""


def check_name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise FormatError(
            f"invalid source name '{value}' (up to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit)"
        )
    return value


def _ignore(_value: object) -> None:
    return None


def check_url(value: str) -> str:
    if not URL_RE.fullmatch(value) or not _host_and_port_read(value):
        raise FormatError(f"invalid URL '{value}' (expected http://host/path or https://...)")
    return value.rstrip("/")


def _host_and_port_read(value: str) -> bool:
    """Whether the URL's host and port parse (port 99999, '[::1' were stored, and every
    update failed on them later)."""
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(value)
        return bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:
        return False


def check_index(value: str) -> str:
    if not INDEX_RE.fullmatch(value) or value.endswith((".gz", ".asc")):
        raise FormatError(
            f"invalid index file name '{value}' (a plain file name such as 'aplinfo.dat')"
        )
    return value


def check_fingerprint(value: str) -> str:
    try:
        return normalize_fingerprint(value)
    except ValueError as err:
        raise FormatError(str(err)) from None


@dataclass(frozen=True)
class _Checked(ValueType):
    """A string type whose check also canonicalizes (URL without trailing '/', FPR upper)."""

    kind: str = "url"

    def parse(self, raw: str) -> str:
        return {"url": check_url, "index": check_index, "fpr": check_fingerprint}[self.kind](raw)


@dataclass(frozen=True)
class Transfer:
    """How patiently and how much a source's files are fetched. The defaults give up on a
    stalled server within about a minute and bound a body without Content-Length."""

    connect_timeout: float = DEFAULT_TIMEOUT[0]
    read_timeout: float = DEFAULT_TIMEOUT[1]
    retries: int = DEFAULT_RETRIES
    max_size: int = 16 << 30
    max_index_size: int = 64 << 20

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def downloader(
        self,
        client: Client | None = None,
        *,
        retry: RetryPolicy | None = None,
        on_retry: RetryCallback | None = None,
    ) -> Downloader:
        """A downloader with these timeouts; ``retry`` overrides the retry count (tests)."""
        policy = retry or RetryPolicy(retries=self.retries)
        return Downloader(client, timeout=self.timeout, retry=policy, on_retry=on_retry)


# sources.cfg key -> Transfer attribute
TRANSFER_KEYS = {
    "connect-timeout": "connect_timeout",
    "read-timeout": "read_timeout",
    "retries": "retries",
    "max-size": "max_size",
    "max-index-size": "max_index_size",
}

SOURCE_TYPE = SectionType(
    fields={
        "url": Field(_Checked("url"), optional=False),
        "index": Field(_Checked("index"), optional=False),
        "fingerprints": Field(ListOf(_Checked("fpr")), optional=False),
        "mirrors": Field(ListOf(_Checked("url"))),
        "enabled": Field(Bool()),
        "connect-timeout": Field(Number(minimum=0.1, maximum=3600)),
        "read-timeout": Field(Number(minimum=0.1, maximum=3600)),
        "retries": Field(Int(minimum=0, maximum=20)),
        "max-size": Field(Size()),
        "max-index-size": Field(Size()),
    },
    id_type=Str(check=lambda v: _ignore(check_name(v))),
)
TYPES = {"source": SOURCE_TYPE}


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    index: str
    fingerprints: tuple[str, ...]
    mirrors: tuple[str, ...] = ()
    enabled: bool = True
    transfer: Transfer = Transfer()

    @property
    def bases(self) -> tuple[str, ...]:
        """The base URLs to try, in order."""
        return (self.url, *self.mirrors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "index": self.index,
            "fingerprints": list(self.fingerprints),
            "mirrors": list(self.mirrors),
            "enabled": self.enabled,
            **{key: getattr(self.transfer, attr) for key, attr in TRANSFER_KEYS.items()},
        }


PROXMOX_FPRS = (
    "F4E136C67CDCE41AE6DE6FC81140AF8F639E0C39",
    "24B30F06ECC1836A4E5EFECBA7BCD1420BFE778E",
)
TURNKEY_FPRS = ("694CFF26795A29BAE07B4EB585C25E95A16EB94D",)
DEFAULT_SOURCES = (
    Source("proxmox", "http://download.proxmox.com/images", "aplinfo-pve-9.dat", PROXMOX_FPRS),
    Source("turnkey", "https://releases.turnkeylinux.org/pve", "aplinfo.dat", TURNKEY_FPRS),
)


def _to_section(src: Source) -> Section:
    props: dict[str, Any] = {
        "url": src.url,
        "index": src.index,
        "fingerprints": list(src.fingerprints),
    }
    if src.mirrors:
        props["mirrors"] = list(src.mirrors)
    if not src.enabled:
        props["enabled"] = False
    for key, attr in TRANSFER_KEYS.items():
        value = getattr(src.transfer, attr)
        if value != getattr(Transfer, attr):
            props[key] = value
    return Section("source", src.name, props)


def _from_section(sec: Section) -> Source:
    props = sec.props
    return Source(
        name=sec.id,
        url=props["url"],
        index=props["index"],
        fingerprints=tuple(props["fingerprints"]),
        mirrors=tuple(props.get("mirrors") or ()),
        enabled=bool(props.get("enabled", True)),
        transfer=Transfer(
            **{attr: props[key] for key, attr in TRANSFER_KEYS.items() if key in props}
        ),
    )


def _read_config() -> SectionConfig:
    path = paths.sources_cfg()
    try:
        text = read_config_text(path, path.name)
    except FileNotFoundError:
        cfg = SectionConfig(types=TYPES)
        cfg.sections = [_to_section(s) for s in DEFAULT_SOURCES]
        return cfg
    try:
        cfg = sectionconfig.parse(text, TYPES, strict=True)
        for sec in cfg.sections:
            cfg.validate(sec)
            if not sec.props.get("fingerprints"):
                raise ConfigError(f"source '{sec.id}': at least one fingerprint is required")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return cfg


def load_sources() -> list[Source]:
    """Every configured source, in file order (the defaults when there is no file)."""
    return [_from_section(sec) for sec in _read_config().sections]


def enabled_sources() -> list[Source]:
    return [s for s in load_sources() if s.enabled]


def _checked(check: Any, value: str) -> str:
    try:
        return str(check(value))
    except FormatError as err:
        raise SourceError(str(err)) from None


def make_source(
    name: str,
    url: str,
    index: str,
    fingerprints: list[str] | tuple[str, ...] | str,
    mirrors: list[str] | tuple[str, ...] | str = (),
    enabled: bool = True,
    limits: dict[str, str] | None = None,
) -> Source:
    """Validate the parts of a source; fingerprints and mirrors may be comma-separated text;
    ``limits`` maps sources.cfg transfer keys (``read-timeout``...) to their text values."""
    if isinstance(fingerprints, str):
        fingerprints = [f for f in re.split(r"[,;]", fingerprints) if f.strip()]
    if isinstance(mirrors, str):
        mirrors = [m for m in re.split(r"[,;\s]+", mirrors) if m]
    if not fingerprints:
        raise SourceError("at least one fingerprint is required")
    return Source(
        name=_checked(check_name, name),
        url=_checked(check_url, url),
        index=_checked(check_index, index),
        fingerprints=tuple(dict.fromkeys(_checked(check_fingerprint, f) for f in fingerprints)),
        mirrors=tuple(_checked(check_url, m) for m in mirrors),
        enabled=enabled,
        transfer=parse_transfer(limits or {}),
    )


def check_limit(key: str, value: str) -> str:
    """Check one transfer setting's text (for the command line's one-line-per-error report)."""
    SOURCE_TYPE.fields[key].type.parse(value)
    return value


def describe_transfer(transfer: Transfer) -> str:
    """``connect-timeout 10, read-timeout 15, ...`` in sources.cfg spelling."""
    types = SOURCE_TYPE.fields
    return ", ".join(
        f"{key} {types[key].type.render(getattr(transfer, attr))}"
        for key, attr in TRANSFER_KEYS.items()
    )


def parse_transfer(limits: dict[str, str]) -> Transfer:
    """A :class:`Transfer` from sources.cfg keys and text values, each checked by its type."""
    values: dict[str, Any] = {}
    for key, raw in limits.items():
        if key not in TRANSFER_KEYS:
            raise SourceError(f"unknown transfer setting '{key}'")
        try:
            values[TRANSFER_KEYS[key]] = SOURCE_TYPE.fields[key].type.parse(raw)
        except FormatError as err:
            raise SourceError(f"{key}: {err}") from None
    return Transfer(**values)


def _write(cfg: SectionConfig) -> None:
    atomic.write_text(paths.sources_cfg(), cfg.render(), mode=0o644)


def add_source(source: Source) -> Source:
    """Add a source (the defaults are written out too when there was no file yet)."""
    cfg = _read_config()
    if cfg.get(source.name) is not None:
        raise AlreadyExistsError(f"source '{source.name}' already exists")
    cfg.add(_to_section(source))
    _write(cfg)
    return source


def remove_source(name: str) -> Source:
    """Remove a source from the config, then its stored index, signature and state."""
    cfg = _read_config()
    sec = cfg.get(name)
    if sec is None:
        raise NotFoundError(f"source '{name}' does not exist")
    cfg.remove(name)
    _write(cfg)
    store.remove_stored(name)
    return _from_section(sec)


__all__ = [
    "DEFAULT_SOURCES",
    "Source",
    "SourceError",
    "Transfer",
    "add_source",
    "enabled_sources",
    "load_sources",
    "make_source",
    "remove_source",
]
