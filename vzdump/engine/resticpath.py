"""A guest's backup into a restic storage: the mounted file systems file by file, plus the
backed-up config, as one snapshot.

The snapshot's tree has two top-level directories, made in a stage at a fixed path per guest
(``/run/vzdump-restic/<vmid>``): ``config/`` (``pct.conf``, ``pct.fw``, the members that head
a tar archive) and ``rootfs/``, a bind mount of the directory the mode prepared (the volumes at
``/mnt/vzsnap0``, or the suspend-mode copy). The fixed path lets restic find the previous
snapshot of the guest as its parent, so unchanged files are not read again. A suspend-mode
copy gets new inode numbers and ctimes every time, so restic reads every file of it again (what
it uploads is still only what changed): told to ignore them (``--ignore-inode
--ignore-ctime``), it took a file rewritten at the same size and modification time (``cp -p``,
``tar x``, ``rsync -t``, ``touch -r``) for unchanged, and the backup kept its old content.

Owners: restic runs as host root (it must reach a root-owned local repository and the 0600
secrets, which an id-mapped restic could not), so an unprivileged container's files are stored
with host ids. The container's map is recorded in the snapshot's ``idmap=`` tag and every tar
stream made from the snapshot (restore, export) shifts the owners back into the container's id
space (shared.backups.resticstream), so what leaves the repository is what the tar path makes.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import paths, restic, resticgate, signals
from shared.archive.idmap import IdMapEntry
from shared.errors import CtkitError, StorageError
from shared.stallguard import StallGuard
from shared.storage import resticbackups
from shared.storage.resticplugin import ResticStorage
from shared.tasklog import Progress, human_bytes

from . import resticexclude

FORGET_WAIT = 600.0  # seconds a failed backup waits to forget its snapshot
STALE_LOCK_WAIT = 15.0  # seconds a backup tries to clear a lock in its way (a live one fails it)
# a backup whose counters stand still this long is stopped: restic has no timeout of its own,
# and one waiting on a hung server held the node's backup lock (and a stop-mode CT down) for good
RESTIC_STALL = 1800.0
RESTIC_PENDING = 256 << 20  # bytes restic may still have to upload once its counters stop

Log = Callable[[str], None]
CONFIG_DIR = "config"
ROOTFS_DIR = "rootfs"


@dataclass
class ResticRun:
    """What one guest's restic backup needs."""

    store: ResticStorage
    vmid: int
    when: int  # the snapshot time (epoch seconds, the backup's start)
    mode: str
    snapdir: Path
    config: bytes  # pct.conf for the backup
    firewall: bytes  # pct.fw (may be empty)
    excludes: Sequence[str]
    idmap: Sequence[IdMapEntry]
    notes: str | None = None
    protected: bool = False
    bwlimit: int = 0  # KiB/s of upload to the repository (this worker's share of the run's)


@dataclass
class ResticResult:
    volid: str
    snapshot: str
    size: int  # bytes processed (the container's backed-up size)
    added: int  # bytes added to the repository


def stage_dir(vmid: int) -> Path:
    return paths.under(f"run/vzdump-restic/{vmid}")


def idmap_tag(entries: Sequence[IdMapEntry]) -> str:
    return "/".join(f"{e.kind}:{e.ct}:{e.host}:{e.length}" for e in entries)


def is_mounted(path: Path) -> bool:
    """Whether something is mounted at ``path`` (mountinfo, not st_dev: a bind mount from the
    same file system has the device of its parent)."""
    wanted = str(path).replace("\\", "\\134").replace(" ", "\\040").replace("\n", "\\012")
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        return any(line.split(" ")[4] == wanted for line in fh)


def _umount(path: Path) -> None:
    for argv in (["umount", "-R", str(path)], ["umount", "-R", "-l", str(path)]):
        if not is_mounted(path):
            return
        subprocess.run(argv, capture_output=True, check=False)
    if is_mounted(path):
        raise CtkitError(f"unable to unmount '{path}'")


def clear_stage(stage: Path) -> None:
    """Unmount and remove a stage (also one a killed vzdump left behind). Nothing is ever
    removed below the bind mount point: it is unmounted first and then only rmdir'ed, so a
    mount that survived cannot lead a removal into the container's files."""
    rootfs = stage / ROOTFS_DIR
    _umount(rootfs)
    shutil.rmtree(stage / CONFIG_DIR, ignore_errors=True)
    for path in (rootfs, stage):
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        except OSError as err:
            raise CtkitError(f"unable to remove '{path}': {err.strerror}") from None


@contextlib.contextmanager
def staged(run: ResticRun) -> Iterator[Path]:
    stage = stage_dir(run.vmid)
    clear_stage(stage)
    try:
        (stage / ROOTFS_DIR).mkdir(parents=True, mode=0o700)
        config = stage / CONFIG_DIR
        config.mkdir(mode=0o700)
        (config / "pct.conf").write_bytes(run.config)
        (config / "pct.fw").write_bytes(run.firewall)
        # private: with shared propagation, unmounting the stage's copies of the source's
        # own mounts (mount points of the CT) would unmount those too
        for argv in (
            ["mount", "--rbind", str(run.snapdir), str(stage / ROOTFS_DIR)],
            ["mount", "--make-rprivate", str(stage / ROOTFS_DIR)],
        ):
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise CtkitError(f"unable to bind-mount '{run.snapdir}': {proc.stderr.strip()}")
        yield stage
    finally:
        with signals.held():
            clear_stage(stage)


def backup_args(run: ResticRun, stage: Path, size: int, patterns: Sequence[str]) -> list[str]:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run.when))  # restic's TZ is UTC
    tags: dict[str, str | None] = {
        resticbackups.TAG: None,
        "type": "lxc",
        "vmid": str(run.vmid),
        "size": str(size),
        resticbackups.TIME_TAG: resticbackups.iso_time(run.when),
    }
    if run.idmap:
        tags["idmap"] = idmap_tag(run.idmap)
    if run.notes:
        tags["notes"] = resticbackups.encode_notes(run.notes)
    if run.protected:
        tags[resticbackups.PROTECTED] = None
    args = ["backup", "--json", "--time", stamp, "--host", paths.node_name()]
    args += restic.tags_arg(tags) + resticexclude.exclude_args(stage / ROOTFS_DIR, patterns)
    if run.bwlimit > 0:
        args += ["--limit-upload", str(run.bwlimit)]
    return [*args, CONFIG_DIR, ROOTFS_DIR]


def sibling_log_dirs(store: ResticStorage) -> list[Path]:
    """The log directories of this node's other restic storages on ``store``'s repository. A
    volume id names a snapshot by guest and second: two storages on one repository that each
    backed up a guest in the same second made one volume id name two backups, and neither
    could be restored. A guest is in one backup at a time and each leaves its log: a second
    that one of them used is used for all."""
    from shared.storage.config import load_config

    return [
        other.subdir("backup")
        for other in load_config()
        if isinstance(other, ResticStorage)
        and other.id != store.id
        and other.repository.rstrip("/") == store.repository.rstrip("/")
    ]


def volume_id(store: ResticStorage, vmid: int, when: float) -> str:
    """The volume id a backup started at ``when`` gets (hooks see it as TARGET)."""
    return store.volid(f"backup/ct/{vmid}/{resticbackups.iso_time(int(when))}")


def backup(run: ResticRun, log: Log) -> ResticResult:
    volid = volume_id(run.store, run.vmid, run.when)
    log(resticbackups.creating_line(volid))
    with staged(run) as stage:
        patterns = resticexclude.effective(run.excludes, unprivileged=bool(run.idmap))
        predicted = resticexclude.tree_size(stage / ROOTFS_DIR, patterns)
        predicted += len(run.config) + len(run.firewall)
        summary = _run_backup(run, backup_args(run, stage, predicted, patterns), stage, log)
    snap = str(summary.get("snapshot_id") or "")
    if not snap:
        raise StorageError(f"restic storage '{run.store.id}': no snapshot was written")
    size = int(summary.get("total_bytes_processed") or 0)
    added = int(summary.get("data_added") or 0)
    log(
        f"restic: {summary.get('files_new', 0)} new, {summary.get('files_changed', 0)} changed, "
        f"{summary.get('files_unmodified', 0)} unmodified files; "
        f"{human_bytes(size)} processed, {human_bytes(added)} added to the repository "
        f"in {float(summary.get('total_duration') or 0):.2f}s"
    )
    record_size(run.store, snap, predicted, size, log)
    return ResticResult(volid, snap, size, added)


def record_size(store: ResticStorage, snap: str, tagged: int, size: int, log: Log) -> None:
    """The snapshot was tagged with the size measured before the backup; should restic have
    processed a different amount, the tag is corrected (one more restic run)."""
    if tagged == size:
        return
    try:
        args = ["tag", "--remove", f"size={tagged}", "--add", f"size={size}", snap]
        restic.run_exclusive(store.repo, args)
    except CtkitError as err:  # the backup is complete; only its listed size is off
        log(f"WARN: unable to record the backup size - {err}")


def _run_backup(run: ResticRun, args: list[str], stage: Path, log: Log) -> dict[str, Any]:
    """restic's backup, holding the repository's gate shared (retention and tagging of this
    host wait for it); its summary, which names a snapshot even when the backup failed."""
    summary: dict[str, Any] = {}
    try:
        with resticgate.gate(run.store.id, run.store.repo.repository, exclusive=False):

            def attempt() -> None:
                try:
                    _stream_backup(run, args, stage, log, summary)
                except restic.NodeKeyRefused:  # nothing done yet; now with the password
                    _stream_backup(run, args, stage, log, summary)

            # A lock in the way stopped restic before it did anything. A stale exclusive one
            # (a prune killed with the scheduler's service) failed every backup until someone
            # cleared it by hand; 'restic unlock' removes only stale locks, never a live one's
            restic.retry_locked(
                run.store.repo, attempt, time.monotonic() + STALE_LOCK_WAIT, 1.0,
                unlock_every=1.0,
                locked=lambda: log("restic: the repository is locked - removing stale locks"),
                waiting=lambda: log("restic: the repository is still locked - trying again "
                                    f"for {STALE_LOCK_WAIT:.0f} s"),
            )  # fmt: skip
    except BaseException:
        with signals.held():
            _forget_partial(run, summary, log)
        raise
    return summary


def _stream_backup(
    run: ResticRun, args: list[str], stage: Path, log: Log, summary: dict[str, Any]
) -> None:
    with signals.held():  # a signal now is only noted: restic never runs on unwatched
        proc = restic.start(run.store.repo, args, cwd=stage)
    guard = StallGuard(proc.stop_soon, stall_limit(run.bwlimit))
    try:
        signals.raise_if_interrupted()
        with guard, Progress(f"backup of CT {run.vmid}", interval=30.0) as prog:
            seen, mark = 0, None
            for item in proc.json_lines():
                kind = item.get("message_type")
                if kind == "status":
                    done = int(item.get("bytes_done") or 0)
                    if done > seen:
                        prog.update(done - seen)
                        seen = done
                    now = (done, item.get("files_done"), item.get("total_files"))
                    if now != mark:  # restic repeats its status while it waits
                        guard.progress()
                        mark = now
                    continue
                guard.progress()
                if kind == "summary":
                    summary.update(item)
                elif kind == "error":
                    err = item.get("error")
                    what = err.get("message") if isinstance(err, dict) else err
                    log(f"WARN: restic: {item.get('item', '')}: {what}")
        if guard.fired:
            proc.finish_quietly()
            raise StorageError(
                f"restic storage '{run.store.id}': the backup made no progress for "
                f"{guard.limit:.0f} s (a hung server?) - restic stopped"
            )
        proc.finish()
    except BaseException:
        with signals.held():
            proc.kill()
        raise


def stall_limit(bwlimit_kib: int) -> float:
    """How long a backup may show no progress: restic's counters stand still while the last
    packs go up (and while it waits for a hung server); with an upload limit that can take a
    while, so at least twice what that limit sends of RESTIC_PENDING."""
    if bwlimit_kib <= 0:
        return RESTIC_STALL
    return max(RESTIC_STALL, 2 * RESTIC_PENDING / (bwlimit_kib * 1024))


def _forget_partial(run: ResticRun, summary: dict[str, Any], log: Log) -> None:
    """restic saves a snapshot even when some files could not be read (exit code 3); a
    failed backup must not be listed (retention would count it), so it is forgotten again,
    after the gate is released, waiting for other hosts' locks as long as is reasonable."""
    snap = str(summary.get("snapshot_id") or "")
    if not snap:
        return
    try:
        restic.run_exclusive(run.store.repo, ["forget", snap], wait=FORGET_WAIT)
    except CtkitError as err:
        log(
            f"ERROR: the incomplete restic snapshot {snap[:8]} is still listed - {err}; "
            f"remove it with 'vzdump prune' or 'restic forget {snap[:8]}'"
        )
