"""``storage.cfg``: types ``dir``, ``btrfs``, ``restic``; loading, saving, the implicit ``local``.

Storage ``local`` always exists, as on Proxmox: when storage.cfg does not define it (or does not
exist at all) it is a dir storage at ``/var/lib/vz`` with content ``vztmpl,backup,rootdir,iso``.
That implicit section is never written back, so reading and writing a file keeps it unchanged.

Sections of other storage types (nfs, zfspool, pbs, ...) and invalid lines are skipped with a
warning; a config that lost anything that way refuses to be saved, so nothing is dropped from
the file behind the user's back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import atomic, paths
from ..errors import ConfigError, NotFoundError, StorageError
from ..formats import sectionconfig as sc
from ..formats.lines import read_config_text
from ..formats.propstring import Field
from ..formats.types import Bool, Enum, FormatError, Int, ListOf, StorageId, Str, ValueType
from ..prune import parse_prune_backups
from .base import Storage
from .btrfsplugin import BtrfsStorage
from .dirplugin import DirStorage
from .resticplugin import ResticStorage

CONTENT_TYPES = ("images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import", "none")
PLUGINS: dict[str, type[Storage]] = {
    "dir": DirStorage,
    "btrfs": BtrfsStorage,
    "restic": ResticStorage,
}
DEFAULT_LOCAL = {"path": "/var/lib/vz", "content": ["vztmpl", "backup", "rootdir", "iso"]}


def _check_path(value: str) -> None:
    if not value.startswith("/") or any(c in value for c in ";()") or len(value) < 2:
        raise FormatError("value does not look like a valid absolute path")


class ContentList(ListOf):
    """``content``: known types are kept in order; ``none`` cannot be combined with others."""

    def parse(self, raw: str) -> list[Any]:
        items = super().parse(raw)
        if "none" in items and len(items) > 1:
            raise FormatError("unable to combine 'none' with other content types")
        return items


class PruneBackups(ValueType):
    """``prune-backups``: validated like vzdump's option, stored as written (for round trips)."""

    name = "prune-backups"

    def parse(self, raw: str) -> str:
        parse_prune_backups(raw)
        return str(raw)


RESTIC_COMMON = ("content", "disable", "shared", "nodes", "prune-backups", "max-protected-backups")


def _check_repository(value: str) -> None:
    # restic's own syntax (/path, sftp:, rest:, s3:, b2:, azure:, gs:, swift:, rclone:); no
    # option-like or multi-line value can reach restic's environment from here
    if not value or value.startswith("-") or any(c in value for c in "\n\r\0"):
        raise FormatError("value does not look like a restic repository")


def _check_sftp_command(value: str) -> None:
    if any(c in value for c in "\n\r\0"):
        raise FormatError("value does not look like a command line")


def _content_dirs(value: str) -> None:
    for item in value.split(","):
        vtype, _, rel = item.partition("=")
        if vtype not in CONTENT_TYPES or not rel or rel.startswith("/") or ".." in rel.split("/"):
            raise FormatError(f"invalid override '{item}'")


NODE = Str(pattern=r"[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?", metavar="node")

COMMON_FIELDS: dict[str, Field] = {
    "path": Field(Str(check=_check_path, metavar="path"), optional=False),
    "content": Field(ContentList(Str(), join=",")),
    "disable": Field(Bool()),
    "shared": Field(Bool()),
    "nodes": Field(ListOf(NODE, join=",")),
    "prune-backups": Field(PruneBackups()),
    "max-protected-backups": Field(Int(minimum=-1)),
    "maxfiles": Field(Int(minimum=0)),
    "mkdir": Field(Bool()),
    "create-base-path": Field(Bool()),
    "create-subdirs": Field(Bool()),
    "is_mountpoint": Field(Str()),
    "content-dirs": Field(Str(check=_content_dirs)),
    "preallocation": Field(Enum("off", "metadata", "falloc", "full")),
}

SECTION_TYPES: dict[str, sc.SectionType] = {
    "dir": sc.SectionType(
        {**COMMON_FIELDS, "format": Field(Enum("raw", "qcow2", "vmdk", "subvol"))},
        id_type=StorageId,
    ),
    "btrfs": sc.SectionType(
        {**COMMON_FIELDS, "format": Field(Enum("raw", "subvol")), "nocow": Field(Bool())},
        id_type=StorageId,
    ),
    # a backup-only storage without a path (shared/storage/resticplugin.py)
    "restic": sc.SectionType(
        {
            "repository": Field(Str(check=_check_repository, metavar="repository"), optional=False),
            "sftp-command": Field(Str(check=_check_sftp_command, metavar="command")),
            **{k: COMMON_FIELDS[k] for k in RESTIC_COMMON},
        },
        id_type=StorageId,
    ),
}


@dataclass
class StorageConfig:
    """The parsed storage.cfg plus the implicit ``local`` storage."""

    sections: sc.SectionConfig
    warnings: list[str] = field(default_factory=list)
    lossy: bool = False  # sections were skipped: writing would drop them
    # sections skipped because a value is invalid: id -> why. Such a storage is an error when
    # used, never replaced: an invalid 'local' became the built-in one, and volumes and
    # backups went to /var/lib/vz without a word
    invalid: dict[str, str] = field(default_factory=dict)

    def ids(self) -> list[str]:
        ids = [s.id for s in self.sections]
        return ids if "local" in ids or "local" in self.invalid else ["local", *ids]

    def __iter__(self) -> Iterator[Storage]:
        for sid in self.ids():
            yield self.storage(sid)

    def __contains__(self, sid: object) -> bool:
        return sid in self.ids()

    def get(self, sid: str) -> Storage | None:
        section = self.sections.get(sid)
        if section is None:
            if sid == "local" and sid not in self.invalid:
                return make_storage("dir", "local", dict(DEFAULT_LOCAL))
            return None
        return make_storage(section.type, section.id, section.props, section.dropped)

    @property
    def unsupported(self) -> dict[str, str]:
        """Sections of a type ctkit has no plugin for (``lvmthin``, ``zfspool``...): id -> type."""
        return dict(self.sections.unknown)

    def storage(self, sid: str) -> Storage:
        store = self.get(sid)
        if store is None:
            stype = self.sections.unknown.get(sid)
            if stype is not None:
                raise StorageError(unsupported_message(sid, stype))
            if sid in self.invalid:
                raise StorageError(f"storage '{sid}' is not usable - {self.invalid[sid]}")
            raise NotFoundError(f"storage '{sid}' does not exist")
        return store

    def add(self, stype: str, sid: str, props: dict[str, Any]) -> Storage:
        """Add a section (values already parsed, e.g. ``{"path": "/x", "content": ["iso"]}``)."""
        self.sections.add(sc.Section(stype, sid, dict(props)))
        return self.storage(sid)

    def remove(self, sid: str) -> None:
        self.sections.remove(sid)

    def render(self) -> str:
        return self.sections.render()


def unsupported_message(sid: str, stype: str) -> str:
    return f"storage '{sid}' has type '{stype}', which ctkit does not support"


def skipped_sections_warning(cfg: StorageConfig) -> str | None:
    """The one warning line for list-level commands about sections ctkit cannot use."""
    if not cfg.unsupported:
        return None
    names = ", ".join(f"'{t}: {sid}'" for sid, t in cfg.unsupported.items())
    return f"WARN: storage.cfg: skipped section(s) of a type ctkit does not support: {names}"


def make_storage(
    stype: str, sid: str, props: dict[str, Any], unreadable: Mapping[str, str] | None = None
) -> Storage:
    try:
        cls = PLUGINS[stype]
    except KeyError:
        raise ConfigError(f"unknown storage type '{stype}'") from None
    return cls(sid, props, unreadable)


def parse_config(text: str) -> StorageConfig:
    """Parse storage.cfg text; bad lines and sections become warnings."""
    parsed = sc.parse(text, SECTION_TYPES)
    cfg = StorageConfig(parsed, warnings=list(parsed.warnings))
    cfg.lossy = bool(parsed.warnings)  # skipped lines would be dropped by a rewrite
    for section in list(parsed.sections):
        try:
            parsed.validate(section)
        except ConfigError as err:
            # the line the parse dropped says why, more than what its absence broke ('path'
            # missing, for a relative path)
            why = section.problems[0] if section.problems else str(err)
            cfg.warnings.append(f"ignore section '{section.type}: {section.id}' - {err}")
            cfg.invalid[section.id] = f"storage.cfg section '{section.type}: {section.id}': {why}"
            parsed.sections.remove(section)
            cfg.lossy = True
            continue
        for item in section.props.get("content", []):
            if item not in CONTENT_TYPES:
                cfg.warnings.append(
                    f"storage '{section.id}': storage does not support content type '{item}'"
                )
    return cfg


def load_config(path: Path | None = None) -> StorageConfig:
    """Read storage.cfg (``paths.storage_cfg()``); a missing file gives just ``local``."""
    path = path or paths.storage_cfg()
    try:
        text = read_config_text(path, path.name)
    except FileNotFoundError:
        text = ""
    return parse_config(text)


def save_config(cfg: StorageConfig, path: Path | None = None) -> None:
    """Write storage.cfg atomically (refused if parsing had to drop sections)."""
    if cfg.lossy:
        raise ConfigError(
            "refusing to write storage.cfg: it contains lines that could not be parsed",
            hint="fix or remove them by hand first",
        )
    atomic.write_text(path or paths.storage_cfg(), cfg.render())
