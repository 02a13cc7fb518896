"""Verify a backup archive end to end in one streaming pass.

What is checked: the whole compressed stream decodes (zstd frame checksums, gzip CRCs and
lengths, lzop's checksums), every tar header parses with a good checksum, the stream is not
cut (a complete compressed stream and a tar end-of-archive marker), the backed-up config
members parse as a container config, no member is one a restore would refuse (a name out
of the tree, a write through a symlink), and the tar size matches the ``Total bytes written`` that
tar reported in the backup log, when that log is there. The archive is read once; the decoder
and the header walk share one pass, so this costs about what ``zstd -t`` alone costs.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from shared.archive.decode import open_decoded
from shared.archive.pipeline import CHUNK
from shared.archive.tarformat import AREG, CONT, REG, Member
from shared.archive.targuard import ExtractGuard, split_name
from shared.archive.tarscan import ScanSink, TarScanner
from shared.archive.vzdumpformat import CONFIG_PARTS, MAX_CONFIG, MEMBERS
from shared.ctconfig.config import parse_config
from shared.errors import ArchiveError, VerifyError

from .locate import Backup
from .sidecar import Verification, now, record

MAX_LOG = 64 << 20
MAX_ID = (1 << 32) - 1
_ID_KEYS = frozenset({b"uid", b"gid"})
_CONFIG_KEYS = {b"/".join(split_name(n.encode()) or ()) for n in MEMBERS}
_TOTAL_RE = re.compile(r"Total bytes written: ([0-9]+)")


@dataclass
class Report:
    """What one verification saw."""

    members: int = 0
    tar_bytes: int = 0  # decompressed length of the tar stream
    archive_bytes: int = 0  # compressed bytes read
    config: bool = False
    logged_tar_bytes: int | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "members": self.members,
            "tar_bytes": self.tar_bytes,
            "archive_bytes": self.archive_bytes,
            "config": self.config,
        }
        if self.warnings:
            out["warnings"] = self.warnings
        if self.logged_tar_bytes is not None:
            out["logged_tar_bytes"] = self.logged_tar_bytes
        return out


class _Walk(ScanSink):
    """Counts members and captures the config members' content; every member passes the
    restore's guard too (a backup that restore would refuse is no good backup)."""

    def __init__(self) -> None:
        self.last: Member | None = None
        self.configs: list[tuple[Member, bytearray]] = []
        self._seen: set[bytes] = set()  # the config members' names taken
        self.guard = ExtractGuard(allow_devices=True)  # a privileged CT's device nodes are data

    def member(self, member: Member) -> bool:
        self.last = member
        self.guard.member(member)
        if _ID_KEYS & member.pax.keys() or member.header[108] & 0x80 or member.header[116] & 0x80:
            # beyond the header's 7 octal digits (a pax record, base-256): tar refuses an id
            # out of range, and so would every restore
            for what, value in (("uid", member.uid), ("gid", member.gid)):
                if value > MAX_ID:
                    raise ArchiveError(f"member '{member.display}' has {what} {value} out of range")
        if member.type not in (REG, AREG, CONT):
            return False
        key = b"/".join(split_name(member.name) or ())
        # the first of each is the backup's, as a restore reads it; a later one is the
        # container's own file of that name, which it may fill with anything
        if key not in _CONFIG_KEYS or key in self._seen:
            return False
        if member.size > MAX_CONFIG:  # the restore's bound, and its refusal
            raise ArchiveError(f"config member '{member.display}' is too large")
        self._seen.add(key)
        self.configs.append((member, bytearray()))
        return True

    def data(self, piece: memoryview) -> None:
        self.configs[-1][1].extend(piece)


def logged_tar_bytes(backup: Backup) -> int | None:
    """tar's ``Total bytes written`` from the backup's log beside the archive, if recorded."""
    log = backup.logfile
    if log is None or log.is_symlink() or not log.is_file() or log.stat().st_size > MAX_LOG:
        return None
    found = _TOTAL_RE.findall(log.read_text(errors="replace"))
    return int(found[-1]) if found else None


def _where(walk: _Walk, scanner: TarScanner, compressed: int) -> str:
    last = f", after member '{walk.last.display}'" if walk.last is not None else ""
    return f"at archive offset {compressed}, tar offset {scanner.offset}{last}"


def scan(backup: Backup, report: Report) -> _Walk:
    """Decode and walk the whole archive; an ArchiveError says what broke and where."""
    walk = _Walk()
    scanner = TarScanner(walk, forward=False, deliver_data=True)
    stream = open_decoded(backup.path, backup.compression)
    try:
        while True:
            try:
                data = stream.read(CHUNK)
                if not data:
                    scanner.finish()
                    break
                report.tar_bytes += len(data)
                scanner.feed(data)
            except ArchiveError as err:
                where = _where(walk, scanner, stream.source.count)
                raise ArchiveError(f"{err} ({where})") from None
    finally:
        report.archive_bytes = stream.source.count
        stream.close()
    report.members = scanner.members
    return walk


def check_configs(backup: Backup, walk: _Walk, report: Report) -> None:
    """The config members must be there and ``pct.conf`` must read as a container config.

    Unknown settings and values this version cannot check are warnings, not failures: a backup
    made by a newer Proxmox is still good. A line that is no config syntax at all, or a
    ``pct.conf`` without a root file system, fails, and so does an archive without one.
    """
    configs = [(m, c) for m, c in walk.configs if split_name(m.name) == CONFIG_PARTS]
    if not configs:  # pct.fw alone, or pct.conf as a link or directory: restore refuses it
        raise ArchiveError("not a vzdump archive: no container config member")
    vmid = backup.info.vmid or 0
    for member, content in configs:
        conf = parse_config(bytes(content), vmid)
        broken = [w for w in conf.warnings if "unable to parse config" in w]
        if broken:
            raise ArchiveError(f"config member '{member.display}' does not parse: {broken[0]}")
        if "rootfs" not in conf.values:
            raise ArchiveError(f"config member '{member.display}' has no rootfs")
        report.warnings += conf.warnings
    report.config = True


def check_log(backup: Backup, report: Report, expected: int | None) -> None:
    report.logged_tar_bytes = logged_tar_bytes(backup) if expected is None else expected
    logged = report.logged_tar_bytes
    if logged is not None and logged != report.tar_bytes:
        raise ArchiveError(
            f"archive holds {report.tar_bytes} bytes of tar data, "
            f"the backup log recorded {logged} (truncated or replaced?)"
        )


def verify(
    backup: Backup, *, expected_tar_bytes: int | None = None, store_result: bool = True
) -> Report:
    """Verify ``backup``; the result is recorded in its sidecar. Raises VerifyError on failure.

    ``expected_tar_bytes`` is the tar size the writer saw (vzdump ``--verify`` knows it before
    the log is copied beside the archive); without it the backup log's total is used."""
    report = Report()
    started = time.monotonic()
    try:
        walk = scan(backup, report)
        check_configs(backup, walk, report)
        check_log(backup, report, expected_tar_bytes)
    except ArchiveError as err:
        report.seconds = time.monotonic() - started
        message = f"verification of '{backup.volid}' failed: {err}"
        if store_result:
            record(backup.path, Verification("verify", "failed", now(), report.as_dict(), message))
        raise VerifyError(message) from None
    report.seconds = time.monotonic() - started
    if store_result:
        record(backup.path, Verification("verify", "ok", now(), report.as_dict()))
    return report
