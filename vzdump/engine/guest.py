"""One guest's backup (spec vzdump §4.1, §2.2, §7): lock, mode, archive, rename, notes,
protection, pruning, hooks; cleanup and the log copy on every path."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from shared import atomic, paths, signals
from shared import owner as owners
from shared.archive.codecs import zstd_threads
from shared.archive.ratelimit import TokenBucket
from shared.archive.tarcreate import CreateSpec, create
from shared.archive.vzdumpformat import write_members
from shared.backups.locate import archive_file
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.errors import CtkitError, NotFoundError, OutputClosed, error_text
from shared.locks import config_lock
from shared.runtime import lxcapi, recovery
from shared.runtime.guestview import config_idmap, config_root_ids
from shared.safefile import remove_tree
from shared.storage.api import get_storage, set_backup_notes, set_backup_protected
from shared.storage.loop import fs_type
from shared.storage.resticplugin import ResticStorage
from shared.tasklog import Progress, timestamp

from .. import notes
from ..options import BackupOptions, exclude_patterns
from ..report import GuestResult
from . import modes, nested, retention
from .hooks import Hooks
from .log import JobLog
from .target import (
    Target,
    format_duration,
    format_size,
    fresh_dir,
    pigz_threads,
    temp_dir,
    tree_bytes,
    unused_start,
)


@dataclass
class JobEnv:
    """What every guest of a job shares."""

    opts: BackupOptions
    storage: str | None
    dumpdir: Path
    log: JobLog
    hooks: Hooks
    stdout: IO[bytes] | None = None
    # a parallel job (vzdump.engine.parallel): this worker's slot, the worker count, and the
    # run's one bandwidth limit that all workers' archive streams share
    slot: int = 0
    workers: int = 1
    bucket: TokenBucket | None = None
    # storages whose removed backups' space is reclaimed once, at the end of the run (shared
    # by the workers' copies of this)
    reclaim: set[str] = field(default_factory=set)


def mountpoint_lines(conf: Config) -> tuple[list[Any], list[Any], list[str]]:
    """(included, excluded, the include/exclude log lines) — spec §3.3."""
    inc, exc, lines = [], [], []
    for mp in conf.mountpoints(strict=True):
        enabled, why = mp.backup_enabled()
        if enabled:
            inc.append(mp)
            lines.append(f"including mount point {mp.key} ('{mp.path}') in backup")
            continue
        exc.append(mp)
        kind = "volume" if mp.type == "volume" else mp.type
        lines.append(f"excluding {kind} mount point {mp.key} ('{mp.path}') from backup ({why})")
    return inc, exc, lines


class GuestBackup:
    def __init__(self, env: JobEnv, vmid: int) -> None:
        self.env = env
        self.vmid = vmid
        self.opts = env.opts
        self.log = env.log
        self.started = time.monotonic()
        self.started_at = time.time()
        self.locked = False
        self.target: Target | None = None
        self.tmpdir: Path | None = None
        self.size: int | None = None
        self.tar_bytes: int | None = None
        self.owner: owners.Owner | None = None
        self.name = f"CT{vmid}"
        self.volid: str | None = None  # a restic backup's volume id, once written
        self.restic = self._restic_storage()
        # the mode hooks are told: the requested one until the effective one is known (§4.5)
        self.mode = self.opts.mode

    @property
    def tardir(self) -> Path:
        """What tar reads, in the tmpdir (see :meth:`_before_log`)."""
        assert self.tmpdir is not None
        return self.tmpdir / "tar"

    def _restic_storage(self) -> ResticStorage | None:
        if self.env.storage is None or self.env.stdout is not None:
            return None
        store = get_storage(self.env.storage)
        return store if isinstance(store, ResticStorage) else None

    # --- the flow -------------------------------------------------------------------------

    def run(self) -> GuestResult:
        try:
            conf = self._before_log()
        except (Exception, KeyboardInterrupt) as err:
            # failed before its log exists: the error is in the task log only, no .log copy
            with signals.held():
                return self._finish(error_text(err))
        error: str | None = None
        try:
            # the first line of the guest's own log; a guest that failed before has no log (§4.1)
            self.log.info(f"Starting Backup of VM {self.vmid} (lxc)")
            self._backup(conf)
        except (Exception, KeyboardInterrupt) as err:
            error = error_text(err)
        with signals.held():
            return self._finish(error)

    def _before_log(self) -> Config:
        # a vzdump killed earlier may have left this CT frozen, stopped or locked
        recovery.recover(self.vmid, self.log.info, self.log.warn)
        conf = store.load_or_none(self.vmid)
        if conf is None:
            raise NotFoundError(f"unable to find VM '{self.vmid}'")
        self.name = str(conf.get("hostname") or f"CT{self.vmid}")
        retention.precheck(self.opts, self.env.storage, self.env.dumpdir, self.vmid)
        stdout = self.env.stdout is not None
        others: list[Path] = []
        if self.restic is not None:
            from . import resticpath  # the restic path's modules: only for a restic storage

            others = resticpath.sibling_log_dirs(self.restic)
        when = unused_start(self.env.dumpdir, self.vmid, others)
        self.target = Target.make(self.env.dumpdir, self.vmid, self.opts.compress, stdout, when)
        self.tmpdir, note = temp_dir(
            self.opts.tmpdir, self.target, self.vmid, archive_beside=self.restic is None
        )
        if note:
            self.log.task_only(note)
        dat = str(self.target.dat) if self.target.dat is not None else ""
        self.owner = owners.claim(self.vmid, owners.BACKUP_OP, tmpdir=str(self.tmpdir), dat=dat)
        fresh_dir(self.tmpdir)  # root's, 0700: no container reaches what is in it by path
        # what tar reads (the config members, suspend mode's copy) is in a directory of the
        # CT's root, which tar of an unprivileged CT runs as; tar starts in it, as root hands
        # it over. The tmpdir itself was the CT root's, in a dump directory a container may
        # reach: one swapped its entries for links (host files in its own backup, a config of
        # its choosing for the restore), and read another CT's copy on the same id map.
        os.mkdir(self.tardir, 0o700)
        os.chown(self.tardir, *config_root_ids(conf), follow_symlinks=False)
        self.log.open_guest(self.vmid)
        with contextlib.suppress(FileNotFoundError):
            self.target.logfile.unlink()
        return conf

    def _backup(self, conf: Config) -> None:
        self.log.task_only(f"Backup started at {timestamp()}")
        running = lxcapi.is_running(self.vmid)
        self.log.info(f"status = {'running' if running else 'stopped'}")
        if self._lock() != running:
            # a pct start or stop held the config lock until it was done: the mode follows
            # the state the lock now keeps (a "stop mode" backup of a started CT read it live)
            running = not running
            self.log.info(f"status = {'running' if running else 'stopped'} (changed meanwhile)")
        conf = store.load(self.vmid)
        mode = self.mode = self.mode if running else "stop"
        run = self._guest_run(conf, mode)
        if mode == "snapshot":
            self._prepare_lines(run)
            if not modes.snapshot_possible(run):
                self.log.info("mode failure - some volumes do not support snapshots")
                self.log.info("trying 'suspend' mode instead")
                mode = run.mode = "suspend"
        self.mode = mode
        self._mode_lines(mode)
        if mode != "snapshot":
            self._prepare_lines(run)
        with self._mode(run, running) as snapdir:
            self._archive(run, snapdir)
            # still inside the mode: backup-end runs before a stopped CT is restarted (§4.2)
            self._after_archive(run)
        if not self.opts.verify:
            return
        if self.restic is not None and self.volid is not None:
            self._verify_restic(self.restic, self.volid)
        elif self.target is not None and self.target.archive:
            self._verify(self.target.archive)  # after the mode: the guest runs again meanwhile
        self._prune()  # only a backup that read back whole may cost an older one

    def _prune(self) -> None:
        assert self.target is not None
        archive = self.target.archive
        if archive is not None and self.opts.remove:
            if self.restic is not None:
                made = self.volid
            elif self.env.storage:
                made = f"{self.env.storage}:backup/{archive.name}"
            else:
                made = str(archive)
            retention.prune_after(
                self.opts,
                self.env.storage,
                self.env.dumpdir,
                self.vmid,
                self.log.info,
                warn=self.log.warn,
                made=made,
                reclaim_later=self.env.reclaim,
            )

    def _verify(self, archive: Path) -> None:
        """``--verify``: read the new archive back end to end (shared.backups.verify)."""
        from shared.backups.verify import verify  # only with --verify

        self.log.info("verifying archive")
        volid = f"{self.env.storage}:backup/{archive.name}" if self.env.storage else None
        report = verify(archive_file(archive, volid), expected_tar_bytes=self.tar_bytes)
        self.log.info(
            f"archive verified: {report.members} members, {report.tar_bytes} bytes of tar data "
            f"({report.seconds:.2f}s)"
        )

    def _verify_restic(self, store: ResticStorage, volid: str) -> None:
        """``--verify`` of a restic backup: read it back to the end as a restore would."""
        from shared.backups.resticstream import read_through

        self.log.info("verifying backup")
        members, size, seconds = read_through(store, volid.split(":", 1)[1])
        self.log.info(
            f"backup verified: {members} members, {size} bytes of tar data ({seconds:.2f}s)"
        )

    def _guest_run(self, conf: Config, mode: str) -> modes.GuestRun:
        inc, exc, _lines = mountpoint_lines(conf)
        assert self.tmpdir is not None
        return modes.GuestRun(
            vmid=self.vmid,
            conf=conf,
            included=inc,
            excluded=exc,
            hooks=self.env.hooks,
            log=self.log.info,
            warn=self.log.warn,
            error=self.log.error,
            tmpdir=self.tardir,
            # rsync limits each process: the workers split the run's total between them
            bwlimit=-(-self.opts.bwlimit // self.env.workers),
            excludes=exclude_patterns(self.opts),
            mode=mode,
            hook_env=self._hook_env(),
            owner=self.owner,
            slot=self.env.slot,
        )

    def _hook_env(self) -> dict[str, str]:
        """This guest's variables for its hook phases, passed with every call (a job-level
        phase or the next guest never sees them)."""
        env = {"VMTYPE": "lxc", "HOSTNAME": self.name}
        if self.target is not None and self.restic is not None:
            from . import resticpath  # the restic path's modules: only for a restic storage

            env["TARGET"] = resticpath.volume_id(self.restic, self.vmid, self.target.when)
            env["LOGFILE"] = str(self.target.logfile)
        elif self.target is not None:
            env["TARGET"] = str(self.target.archive) if self.target.archive else "-"
            env["LOGFILE"] = str(self.target.logfile)
        return env

    def _hook(self, phase: str) -> None:
        self.env.hooks.run(phase, self.mode, self.vmid, env=self._hook_env())

    def _prepare_lines(self, run: modes.GuestRun) -> None:
        self.log.info(f"CT Name: {self.name}")
        for line in mountpoint_lines(run.conf)[2]:
            self.log.info(line)
        if self.restic is not None and run.mode == "stop":
            return  # restic reads the mounted tree across file systems: nothing is left out
        for line in nested.left_out(run.included):
            self.log.warn(line)

    def _mode_lines(self, mode: str) -> None:
        self.log.info(f"backup mode: {mode}")
        if self.opts.bwlimit:
            self.log.info(f"bandwidth limit: {self.opts.bwlimit} KiB/s")
        self.log.info(f"ionice priority: {self.opts.ionice}")

    @contextlib.contextmanager
    def _mode(self, run: modes.GuestRun, running: bool) -> Iterator[Path]:
        if run.mode == "snapshot":
            with modes.snapshot_mode(run) as snapdir:
                yield snapdir
        elif run.mode == "suspend":
            assert self.tmpdir is not None
            nfs = fs_type(self.tmpdir) in ("nfs", "nfs4")
            if nfs:
                self.log.info(
                    "temporary directory is on NFS, disabling xattr and acl support, consider "
                    "configuring a local tmpdir via /etc/vzdump.conf"
                )
            with modes.suspend_mode(run, nfs) as snapdir:
                yield snapdir
        else:
            with modes.stop_mode(run, running, self.opts.stopwait) as snapdir:
                yield snapdir

    def _lock(self) -> bool:
        """Set ``lock: backup``; whether the CT runs, read under the same config lock (start
        and stop are refused from then on, so it stays so)."""
        with config_lock(self.vmid):
            conf = store.load(self.vmid)
            store.set_lock(conf, "backup")
            if self.owner is not None:
                owners.update(self.owner, lock="backup", mode=self.mode)
            with signals.step():  # the lock and the mark that it is ours to drop go together
                store.save(conf)
                self.locked = True
            return lxcapi.is_running(self.vmid)

    def _unlock(self) -> None:
        if not self.locked:
            return
        try:
            with config_lock(self.vmid):
                conf = store.load(self.vmid)
                if conf.lock in recovery.SNAPSHOT_LOCKS and modes.SNAPNAME in conf.snapshots:
                    # our snapshot's removal stopped half-way (a busy volume, a tool killed by
                    # Ctrl-C): the record stays ours, and the next command finishes it, lock and
                    # all, once this process is gone (the next backup failed on the lock)
                    return
                if conf.lock == "backup":
                    conf.delete("lock")
                    store.save(conf)
            self.locked = False
        except CtkitError as err:
            self.log.warn(f"unable to remove lock: {err}")

    # --- the archive ---------------------------------------------------------------------

    def _assemble(self, conf: Config) -> None:
        """The config members into <tmpdir> (apart from suspend mode's copy of the data)."""
        assert self.tmpdir is not None
        fw = paths.firewall_conf(self.vmid)
        firewall = fw.read_bytes() if fw.is_file() else b""
        write_members(self.tardir, conf.for_backup().to_bytes(), firewall, config_root_ids(conf))

    def _archive(self, run: modes.GuestRun, snapdir: Path) -> None:
        assert self.tmpdir is not None and self.target is not None
        conf = store.load(self.vmid)
        excludes = exclude_patterns(self.opts)
        # tar never matches these (in suspend mode rsync applied them to the copy already);
        # the restic path drops them too, so that both back up the same files
        for pattern in (p for p in excludes if p.endswith("/") and run.mode != "suspend"):
            self.log.warn(f"tar does not match exclusion with a trailing slash '{pattern}'")
        if self.restic is not None:
            self._restic_archive(run, snapdir, conf, excludes)
            return
        self._assemble(conf)
        spec = CreateSpec(
            tmpdir=self.tardir,
            snapdir=snapdir,
            sources=["."] if run.mode == "suspend" else modes.sources(run),
            excludes=excludes,
            idmap=config_idmap(conf) or None,
        )
        if run.mode == "suspend":
            spec.excludes = [p for p in spec.excludes if not p.endswith("/")]
        dest: Path | IO[bytes]
        if self.target.archive is None:
            self.log.info("sending archive to stdout")
            assert self.env.stdout is not None
            dest = self.env.stdout
        else:
            self.log.info(f"creating vzdump archive '{self.target.archive}'")
            assert self.target.dat is not None
            with contextlib.suppress(FileNotFoundError):
                self.target.dat.unlink()
            dest = self.target.dat
        self._run_pipeline(spec, dest)

    def _run_pipeline(self, spec: CreateSpec, dest: Path | IO[bytes]) -> None:
        assert self.target is not None
        label = f"backup of CT {self.vmid}"
        # the bar's total, worth its metadata walk only where a bar is drawn
        stream = self.log.progress_stream
        bar = stream is None and sys.stderr.isatty()
        total = tree_bytes(spec.snapdir, list(spec.sources)) if bar else None
        with Progress(label, total, interval=30.0, stream=stream) as prog:
            last = [0]

            def progress(done: int) -> None:
                prog.update(done - last[0])
                last[0] = done
                self.log.checkpoint()

            stats = create(
                spec,
                dest,
                compression=self.opts.compression,
                zstd_threads=zstd_threads(self.opts.zstd),
                pigz_threads=pigz_threads(self.opts.pigz),
                bwlimit_kib=self.opts.bwlimit or None,
                bucket=self.env.bucket,
                progress=progress,
                log=self.log.info,
            )
        self.tar_bytes = stats.bytes_in
        if self.target.archive is not None and self.target.dat is not None:
            try:
                # never over an archive that appeared meanwhile (another host on shared storage)
                atomic.commit_file(self.target.dat, self.target.archive, overwrite=False)
            except OSError as err:
                raise CtkitError(
                    f"unable to rename '{self.target.dat}' to '{self.target.archive}': {err}"
                ) from None
            self.size = self.target.archive.stat().st_size
            self.log.info(f"archive file size: {format_size(self.size)}")

    def _restic_archive(
        self, run: modes.GuestRun, snapdir: Path, conf: Config, excludes: list[str]
    ) -> None:
        """The restic path: notes and protection go into the snapshot as it is written."""
        from . import resticpath

        assert self.restic is not None and self.target is not None
        fw = paths.firewall_conf(self.vmid)
        notes = self._notes_text(conf)
        result = resticpath.backup(
            resticpath.ResticRun(
                store=self.restic,
                vmid=self.vmid,
                when=int(self.target.when),
                mode=run.mode,
                snapdir=snapdir,
                config=conf.for_backup().to_bytes(),
                firewall=fw.read_bytes() if fw.is_file() else b"",
                excludes=excludes,
                idmap=config_idmap(conf),
                notes=notes,
                protected=self.opts.protected,
                bwlimit=-(-self.opts.bwlimit // self.env.workers),  # split as for rsync
            ),
            self.log.info,
        )
        self.volid = result.volid
        self.size = result.size
        if notes:
            self.log.info("adding notes to backup")
        if self.opts.protected:
            self.log.info("marking backup as protected")

    def _after_archive(self, run: modes.GuestRun) -> None:
        assert self.target is not None
        storage = self.env.storage
        if self.restic is not None:
            pass  # notes and protection are in the snapshot already
        elif self.target.archive is not None and storage:
            volid = f"{storage}:backup/{self.target.archive.name}"
            self._notes(volid, run.conf)
            if self.opts.protected:
                self.log.info("marking backup as protected")
                try:
                    set_backup_protected(volid, True)
                except CtkitError as err:
                    raise CtkitError(f"unable to set protected flag - {err}") from None
        if not self.opts.verify:  # with --verify, retention waits for the read-back
            self._prune()
        self._hook("backup-end")

    def _notes(self, volid: str, conf: Config) -> None:
        template = self.opts.notes_template
        if not template:
            return
        self.log.info("adding notes to backup")
        try:
            text = notes.render(
                template, self.vmid, guestname=conf.get("hostname"), node=paths.node_name()
            )
            set_backup_notes(volid, text)
        except (CtkitError, ValueError) as err:
            self.log.warn(f"unable to add notes - {err}")

    def _notes_text(self, conf: Config) -> str | None:
        template = self.opts.notes_template
        if not template:
            return None
        try:
            return notes.render(
                template, self.vmid, guestname=conf.get("hostname"), node=paths.node_name()
            )
        except (CtkitError, ValueError) as err:
            self.log.warn(f"unable to add notes - {err}")
            return None

    # --- the end -------------------------------------------------------------------------

    def _cleanup(self) -> None:
        self._unlock()
        if self.target is not None and self.target.dat is not None:
            try:
                self.target.dat.unlink()
            except FileNotFoundError:
                pass
            except OSError as err:  # a dump directory gone read-only: the other guests go on
                self.log.warn(f"unable to remove '{self.target.dat}' - {err.strerror}")
        left = False
        if self.tmpdir is not None:
            remove_tree(self.tmpdir, ignore_errors=True)
            left = os.path.lexists(self.tmpdir)
        if self.owner is not None and not self.locked and not left:
            # a lock we failed to drop stays recorded as ours, and so does a temp dir we could
            # not remove: the next command's recovery removes it
            owners.release(self.owner)

    def _finish(self, error: str | None) -> GuestResult:
        self._cleanup()
        elapsed = time.monotonic() - self.started
        if error is None:
            self.log.info(f"Finished Backup of VM {self.vmid} ({format_duration(elapsed)})")
            self.log.task_only(f"Backup finished at {timestamp()}")
        elif error == OutputClosed().message:
            # the user's own pipe stopped reading: said plainly, not as a backup failure
            self.log.info(f"Backup of VM {self.vmid} stopped - {error}")
            self.log.task_only(f"Stopped at {timestamp()}")
        else:
            self.log.error(f"Backup of VM {self.vmid} failed - {error}")
            self.log.task_only(f"Failed at {timestamp()}")
        if error is not None:
            try:
                self._hook("backup-abort")
            except CtkitError as err:
                self.log.warn(str(err))
        lines: list[str] = []
        if self.log.in_guest and self.target is not None:
            copy_to = self.target.logfile if self.target.dumpdir.is_dir() else None
            lines = self.log.close_guest(copy_to)
        try:
            self._hook("log-end")
        except CtkitError as err:
            self.log.warn(str(err))
        return self._result("ok" if error is None else "err", error, lines)

    def _result(self, status: str, error: str | None, lines: list[str]) -> GuestResult:
        archive = self.target.archive if self.target is not None else None
        return GuestResult(
            vmid=self.vmid,
            name=self.name,
            status=status,
            seconds=time.monotonic() - self.started,
            started=self.started_at,
            finished=time.time(),
            size=self.size if status == "ok" else None,
            filename=(self.volid or str(archive))
            if archive is not None and status == "ok"
            else None,
            error=error,
            log_lines=lines,
        )
