"""Volume ids ``<storage>:<volname>`` and directory volume names (Proxmox's Plugin.pm rules).

Volume names by content type:

    vztmpl/<file>                      template (pveam §7 extensions, case-insensitive)
    backup/<file>                      vzdump archive (vzdump §2.1)
    iso/<file>.iso|.img                ISO image
    snippets/<file>                    snippet (hook scripts)
    <vmid>/vm-<vmid>-disk-<n>.raw      disk image; base-… for templates
    <vmid>/subvol-<vmid>-disk-<n>.subvol
    <basevmid>/<basename>/<vmid>/<name>  linked clone (parsed, never created here)
    rootdir/<vmid>                     legacy OpenVZ private area

No name may contain ``/`` where a file name is expected, so a volume id never resolves outside
its storage's directory for that content type.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import StorageError
from ..formats.archivename import BACKUP_EXT
from ..formats.types import STORAGE_ID_RE

TEMPLATE_EXT = r"(?i:\.(?:tar(?!\.)|tar\.(?:gz|xz|zst|bz2)))"
TEMPLATE_EXT_RE = re.compile(TEMPLATE_EXT + r"$")
TEMPLATE_FORMATS = {".tar.gz": "tgz", ".tar.xz": "txz", ".tar.zst": "tzst", ".tar.bz2": "tbz2"}
ISO_EXT = r"(?i:\.(?:iso|img))"
NAME_MAX = 255  # bytes in one file name (Linux)

VOLID_RE = re.compile(rf"({STORAGE_ID_RE}):(.+)", re.IGNORECASE | re.ASCII)
_TEMPLATE_RE = re.compile(rf"vztmpl/([^/]+{TEMPLATE_EXT})")
_ISO_RE = re.compile(rf"iso/([^/]+{ISO_EXT})")
_BACKUP_RE = re.compile(rf"backup/([^/]+{BACKUP_EXT})")
_BACKUP_VMID_RE = re.compile(r"vzdump-(?:openvz|lxc|qemu)-([0-9]+)-.+")
_SNIPPET_RE = re.compile(r"snippets/([^/]+)")
_ROOTDIR_RE = re.compile(r"rootdir/([0-9]+)")
_IMAGE_RE = re.compile(r"([1-9][0-9]*)/(\S+)")
_CLONE_RE = re.compile(r"([1-9][0-9]*)/(\S+)/([1-9][0-9]*)/(\S+)")
_NAME_DIR_RE = re.compile(r"((base-)?[^/\s]+\.(raw|qcow2|vmdk|subvol))")


@dataclass(frozen=True)
class VolName:
    """A parsed volume name (Proxmox's parse_volname tuple)."""

    vtype: str  # images | vztmpl | backup | iso | snippets | rootdir
    name: str  # the file (or directory) name
    vmid: int | None = None  # owner
    basename: str | None = None  # linked clones: the base image
    basevmid: int | None = None
    is_base: bool = False
    format: str | None = None  # raw | subvol | qcow2 | vmdk for images; raw for files


def parse_volume_id(volid: str) -> tuple[str, str]:
    """``local:vztmpl/x.tar.zst`` → ``("local", "vztmpl/x.tar.zst")``."""
    m = VOLID_RE.fullmatch(volid)
    if not m:
        raise StorageError(f"unable to parse volume ID '{volid}'")
    return m.group(1), m.group(2)


def is_volume_id(text: str) -> bool:
    return VOLID_RE.fullmatch(text) is not None


def format_volid(storeid: str, volname: str) -> str:
    return f"{storeid}:{volname}"


def parse_name_dir(name: str) -> tuple[str, str, bool]:
    """An image file name → (name, format, is_base)."""
    m = _NAME_DIR_RE.fullmatch(name)
    if not m:
        raise StorageError(f"unable to parse volume filename '{name}'")
    return m.group(1), m.group(3), m.group(2) is not None


def parse_volname(volname: str) -> VolName:
    """Parse a directory-storage volume name; raises ``unable to parse directory volume name``."""
    # (a component longer than a file name can be would fail every file call with an error)
    if "\0" in volname or any(len(os.fsencode(p)) > NAME_MAX for p in volname.split("/")):
        raise StorageError(f"unable to parse directory volume name '{volname}'")
    if m := _CLONE_RE.fullmatch(volname):
        parse_name_dir(m.group(2))
        name, fmt, is_base = parse_name_dir(m.group(4))
        return VolName("images", name, int(m.group(3)), m.group(2), int(m.group(1)), is_base, fmt)
    if m := _IMAGE_RE.fullmatch(volname):
        name, fmt, is_base = parse_name_dir(m.group(2))
        return VolName("images", name, int(m.group(1)), is_base=is_base, format=fmt)
    if m := _ISO_RE.fullmatch(volname):
        return VolName("iso", m.group(1), format="raw")
    if m := _TEMPLATE_RE.fullmatch(volname):
        return VolName("vztmpl", m.group(1), format="raw")
    if m := _ROOTDIR_RE.fullmatch(volname):
        return VolName("rootdir", m.group(1), int(m.group(1)))
    if m := _BACKUP_RE.fullmatch(volname):
        owner = _BACKUP_VMID_RE.fullmatch(m.group(1))
        return VolName("backup", m.group(1), int(owner.group(1)) if owner else None, format="raw")
    if (m := _SNIPPET_RE.fullmatch(volname)) and m.group(1) not in (".", ".."):
        return VolName("snippets", m.group(1), format="raw")
    raise StorageError(f"unable to parse directory volume name '{volname}'")


def template_format(name: str) -> str:
    """The listing format of a template file: tgz, txz, tzst, tbz2 or tar."""
    lower = name.lower()
    for ext, fmt in TEMPLATE_FORMATS.items():
        if lower.endswith(ext):
            return fmt
    if TEMPLATE_EXT_RE.search(name):
        return "tar"
    raise StorageError(f"'{name}' does not look like a template archive")


def is_template_name(name: str) -> bool:
    """A template file's name: one path component, not hidden, a template extension."""
    return (
        "/" not in name
        and "\0" not in name
        and not name.startswith(".")
        and len(os.fsencode(name)) <= NAME_MAX
        and bool(TEMPLATE_EXT_RE.search(name))
    )


# --- container disk names ----------------------------------------------------------------


def disk_name(vmid: int, index: int, fmt: str) -> str:
    """``vm-<vmid>-disk-<n>.raw`` or ``subvol-<vmid>-disk-<n>.subvol``."""
    prefix = "subvol" if fmt == "subvol" else "vm"
    return f"{prefix}-{vmid}-disk-{index}.{fmt}"


def disk_index_re(vmid: int) -> re.Pattern[str]:
    """Any name that uses a disk index of ``vmid`` (images, subvols, bases, btrfs snapshots)."""
    return re.compile(rf"(?:vm|base|subvol|basevol)-{vmid}-disk-([0-9]+)(?:[.@].*)?")


def base_name(name: str) -> str:
    """The template (base) name of an image: ``vm-`` becomes ``base-``; others stay."""
    return re.sub(r"^vm-", "base-", name)
