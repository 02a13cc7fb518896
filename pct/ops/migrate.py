"""``pct migrate`` and ``pct remote-migrate``: move a container to another ctkit host over SSH.

Phases: pre-checks on both sides; the lock ``migrate``; a first copy of every volume while the
container keeps running; shutdown; a second copy of only what changed (btrfs: incremental send;
otherwise rsync); the mapped config installed (and started) on the target; only then the source
removed (``migrate``, ``remote-migrate --delete``) or left stopped and locked. A failure before
the target committed rolls the target back and leaves the source as it was (running again if
we stopped it). An ownership record makes a killed migration recoverable by the next one.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shared import owner, paths, signals
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.ctconfig.mountpoints import parse_mountpoint
from shared.errors import CtkitError, StateError, error_text
from shared.locks import config_lock
from shared.remote import config as remotes
from shared.remote.config import Remote
from shared.runtime import lifecycle, lxcapi, migration, recovery
from shared.runtime.beneath import check_mount_point
from shared.runtime.guestview import config_root_ids
from shared.runtime.namespace import private_mounts
from shared.storage import btrfssend
from shared.storage.btrfsplugin import BtrfsStorage
from shared.storage.config import StorageConfig, load_config
from shared.storage.volid import parse_volume_id
from shared.storage.volumes import (
    mounted_volume,
    snapshot_create,
)

from . import migrate_link as link
from . import migrate_plan as plan
from . import remote as remote_ops
from .migrate_target import SNAP_NAMES
from .target_info import TargetInfo

Log = Callable[[str], None]
MAX_FIREWALL = 1024 * 1024


@dataclass(frozen=True)
class Options:
    target: str
    target_vmid: int | None = None
    target_storage: str | None = None
    target_bridge: str | None = None
    restart: bool = False
    online: bool = False
    timeout: int = 180
    bwlimit: int | None = None
    delete: bool = True  # remove the source once the target has it


@dataclass
class Run:
    """What one migration has done so far (for the log, the abort and the record)."""

    vmid: int
    target_vmid: int
    remote: Remote
    running: bool
    opts: Options
    log: Log
    volmap: dict[str, str] = field(default_factory=dict)
    btrfs: set[str] = field(default_factory=set)
    sent: dict[str, list[str]] = field(default_factory=dict)
    stopped: bool = False
    phase: str = "copy"
    used: list[subprocess.Popen[bytes]] = field(default_factory=list)  # receivers to reap
    # its id on both hosts: what the source asks the target by when the commit's answer is lost
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    def save(self) -> None:
        """The record a later command recovers from if this process is killed. It names every
        snapshot the passes will take before the first is taken (recovery removes those that
        exist), so that no pass needs to write it again, least of all in the downtime."""
        data = {"vmid": self.vmid, "target_vmid": self.target_vmid, "remote": self.remote.name}
        data.update(phase=self.phase, running=self.running, stopped=self.stopped)
        data.update(delete=self.opts.delete)  # what recovery does with a committed source
        data.update(token=self.token)
        names = list(btrfssend.SNAP_NAMES[: 2 if self.running else 1])
        snaps = {volid: names for volid in sorted(self.btrfs)}
        owner.write_record(record_path(self.vmid), {**data, "snapshots": snaps})


record_path = migration.outgoing_record


def migrate(vmid: int, opts: Options, log: Log) -> None:
    remote = remotes.get(opts.target)
    recovery.recover(vmid, log)
    conf = store.load(vmid)
    store.check_lock(conf)
    running = lxcapi.is_running(vmid)
    if running and opts.online:
        raise StateError("lxc live migration is currently not implemented")
    if running and not opts.restart:
        raise StateError("can't migrate running container without --online or --restart")
    smap = plan.parse_map(opts.target_storage, "target-storage", "storage")
    bmap = plan.parse_map(opts.target_bridge, "target-bridge", "bridge")
    run = Run(vmid, opts.target_vmid or vmid, remote, running, opts, log)
    start = time.monotonic()
    log(f"starting migration of CT {vmid} to remote '{remote.name}' ({remote.host})")
    cfg = load_config()
    vols = plan.volumes(conf, smap, cfg, log)
    nets = plan.bridges(conf, bmap)
    info = _target_info(remote, run.target_vmid, vols, nets)
    plan.check_target(info, vols, nets)
    with config_lock(vmid):
        conf = store.load(vmid)
        store.set_lock(conf, "migrate")
        if lxcapi.is_running(vmid) != running:  # started or stopped since it was planned
            state = "running" if not running else "stopped"
            raise StateError(f"CT {vmid} is {state} now - migration not started, try again")
        store.save(conf)
    # the raw volumes it mounts to copy them live in a mount namespace of this process's own:
    # killed, it leaves no mount (and no loop device) that keeps them busy, and the next
    # command's recovery, or the next migration's removal of the source, finds them free
    private_mounts()
    # (the ExitStack holds signals from the commit on, to the end: see _transfer)
    with signals.interruptible(), contextlib.ExitStack() as no_return:
        try:
            run.save()
            _transfer(run, conf, vols, nets, info, cfg, no_return)
        except BaseException as err:
            with signals.held():
                finished = _abort(run, err)
            if not finished:
                raise
        if signals.interrupted():
            log("interrupted after the commit began - the target has the container: finished")
    log(f"migration finished successfully (duration {_hms(time.monotonic() - start)})")


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _target_info(
    remote: Remote, tvmid: int, vols: list[plan.Volume], nets: dict[str, str]
) -> TargetInfo:
    args = ["migrate-target", "info", "--vmid", str(tvmid)]
    storages = sorted({v.target_storage for v in vols})
    if storages:
        args += ["--storages", ",".join(storages)]
    if nets:
        args += ["--bridges", ",".join(sorted(set(nets.values())))]
    return remote_ops.host_info(remote, args)


def _transfer(
    run: Run,
    conf: Config,
    vols: list[plan.Volume],
    nets: dict[str, str],
    info: TargetInfo,
    cfg: StorageConfig,
    no_return: contextlib.ExitStack,
) -> None:
    log = run.log
    session = link.Session(run.remote, run.target_vmid)
    try:
        uid, gid = config_root_ids(conf)
        for vol in vols:
            reply = session.request(
                "alloc", storage=vol.target_storage, format=vol.fmt, size=vol.size, uid=uid, gid=gid
            )
            tvolid = link.volume_id(session.remote, reply)
            run.volmap[vol.volid] = tvolid
            tinfo = info.storages[vol.target_storage]
            if isinstance(cfg.storage(vol.storage), BtrfsStorage) and tinfo.type == "btrfs":
                run.btrfs.add(vol.volid)
            log(f"volume '{vol.volid}' is '{tvolid}' on the target")
        run.save()  # the snapshots to come
        # every pass's receiver starts now and waits for its stream: SSH and the remote
        # command start up while the snapshots are taken, not in a transfer or the downtime
        passes = 2 if run.running else 1
        receivers = {
            (v.volid, i): _open_receiver(run, v, i)
            for i in range(passes)
            for v in vols
            if v.volid in run.btrfs
        }
        try:
            if run.running:
                log("container is running - copying while it runs, then a short final pass")
                for vol in vols:
                    _copy(
                        run, conf, vol, cfg, live=True, receiver=receivers.pop((vol.volid, 0), None)
                    )
                log(f"shutdown CT {run.vmid}")
            if run.running:
                run.stopped = True  # from here on, a failure (or a kill) starts it again
                run.save()
            down = time.monotonic()
            if run.running:
                lifecycle.shutdown(
                    run.vmid,
                    timeout=run.opts.timeout,
                    force_stop=True,
                    skiplock=True,
                    hold_lock=False,  # its lock: migrate keeps other commands off
                )
            for vol in vols:
                receiver = receivers.pop((vol.volid, passes - 1), None)
                _copy(run, conf, vol, cfg, live=False, receiver=receiver)
        finally:
            for receiver in receivers.values():
                link.close_receiver(receiver)
        tconf = plan.target_config(conf, run.target_vmid, run.volmap, nets)
        for key, bridge in nets.items():
            log(f"mapped: {key} from {conf.nets()[key]['bridge']} to {bridge}")
        if run.running:
            log("start container on target node")
        # a session that died during the copy (its receivers may still have taken the data)
        # shows here, while a failure still means "not committed" and the source starts again;
        # only a failure of the commit itself leaves the target's state unknown
        session.request("ping")
        last_sent = {run.volmap[v]: run.sent[v][-1] for v in run.btrfs}
        # the point of no return: from the commit's request on, a signal is only noted (cut
        # in the commit, the target's state would be unknown; after it, the source would stay
        # behind), and the migration ends as the answer says: rolled back or finished
        no_return.enter_context(signals.held())
        run.phase = "committing"
        run.save()
        try:
            session.request(
                "commit",
                config=tconf.to_text(),
                firewall=_firewall_text(run.vmid),
                start=run.running,
                btrfs=last_sent,
                token=run.token,
            )
        except link.Refused:
            run.phase = "copy"  # the target refused and rolled itself back
            raise
        if run.running:
            log(f"migration downtime {time.monotonic() - down:.2f} s")
        run.phase = "committed"
        run.save()
        with contextlib.suppress(CtkitError):  # unheard, the target only keeps a note longer
            session.request("ack")
    finally:
        session.close()
        for receiver in run.used:
            link.close_receiver(receiver)
    _finish_source(run, log)


def _open_receiver(run: Run, vol: plan.Volume, index: int) -> subprocess.Popen[bytes]:
    target = [str(run.target_vmid), run.volmap[vol.volid], SNAP_NAMES[index]]
    return link.open_receiver(run.remote, target)


def _firewall_text(vmid: int) -> str | None:
    """The container's firewall config (``/etc/pve/firewall/<vmid>.fw``) to take along."""
    path = paths.firewall_conf(vmid)
    if path.is_symlink() or not path.is_file():
        return None
    with path.open("rb") as fh:
        data = fh.read(MAX_FIREWALL + 1)
    if len(data) > MAX_FIREWALL:
        raise CtkitError(f"firewall config '{path}' is larger than {MAX_FIREWALL} bytes")
    return data.decode("utf-8", "replace")


def _copy(
    run: Run,
    conf: Config,
    vol: plan.Volume,
    cfg: StorageConfig,
    live: bool,
    receiver: subprocess.Popen[bytes] | None = None,
) -> None:
    tvolid = run.volmap[vol.volid]
    what = "first pass, running" if live else ("final pass" if run.running else "copy")
    if vol.volid in run.btrfs:
        sid, volname = parse_volume_id(vol.volid)
        assert receiver is not None  # opened for every pass of a btrfs volume
        run.used.append(receiver)  # closed and reaped however this pass ends
        sent = run.sent.setdefault(vol.volid, [])
        snap = SNAP_NAMES[len(sent)]
        sent.append(snap)  # before it exists: a failure halfway is undone too
        snapshot_create(vol.volid, snap, cfg)
        parent = sent[-2] if len(sent) > 1 else None
        argv = btrfssend.send_argv(cfg.storage(sid), volname, snap, parent)
        result = link.send_btrfs(argv, receiver, run.opts.bwlimit)
        kind = "incremental btrfs send" if parent else "btrfs send"
    else:
        with _source_tree(run, conf, vol, cfg, live) as source:
            result = link.rsync(
                run.remote, source, [str(run.target_vmid), tvolid], run.opts.bwlimit
            )
        kind = "rsync"
    run.log(f"{vol.volid}: {what} ({kind}): {result.describe()}")


@contextlib.contextmanager
def _source_tree(
    run: Run, conf: Config, vol: plan.Volume, cfg: StorageConfig, live: bool
) -> Iterator[Path]:
    """The volume's files: a directory volume as it is, a running container's raw volume
    through the container's own mount, any other raw volume mounted read-only here."""
    sid, volname = parse_volume_id(vol.volid)
    if vol.fmt == "subvol":
        yield cfg.storage(sid).path_of(volname)
        return
    pid = lxcapi.init_pid(run.vmid) if live else None
    mps = [parse_mountpoint(k, conf.values[k]) for k in vol.keys if not k.startswith("unused")]
    if pid is not None and mps:
        # an absolute symlink the container put there resolves on the host: refused, as vzdump
        # refuses it (the first pass would send host files to the other host)
        root = Path(f"/proc/{pid}/root")
        check_mount_point(root, mps[0].path)
        yield root / mps[0].path.lstrip("/")
        return
    tmpdir = tempfile.TemporaryDirectory(prefix="migrate-", dir=_mkdir(paths.migrate_dir()))
    with tmpdir as tmp, mounted_volume(vol.volid, Path(tmp), read_only=True, cfg=cfg):
        yield Path(tmp)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _finish_source(run: Run, log: Log) -> None:
    with signals.held():
        migration.drop_snapshots(run.sent, run.log)
        _complete_source(run.vmid, run.opts.delete, log)
        owner.remove_record(record_path(run.vmid))


def _complete_source(vmid: int, delete: bool, log: Log) -> None:
    """After the target committed: remove the source, or keep it stopped and locked."""
    if not delete:
        log(f"CT {vmid} stays on this node, stopped and locked 'migrate'")
        return
    migration.remove_source(vmid, log)


def _abort(run: Run, err: BaseException) -> bool:
    """Undo what can be undone; True when the target turns out to have committed the migration
    (the commit's answer was lost): the migration is finished, and says so (it exited 11 with
    the link's error, and a script retried a migration that had happened)."""
    log = run.log
    if run.phase == "committing":
        log(f"WARN: the commit's answer was lost: {error_text(err)}")
    else:
        log(f"ERROR: migration aborted: {error_text(err)}")
    if run.phase == "committed":
        # the target has it: leave the source locked rather than risk two running copies
        log(f"ERROR: CT {run.vmid} left stopped and locked 'migrate' on this node")
        return False
    migration.drop_snapshots(run.sent, run.log)
    if run.phase == "committing":
        # the commit's answer was lost (the link cut): the target knows what became of it
        outcome = migration.ask_outcome(run.remote.name, run.target_vmid, run.token)
        if outcome == "committed":
            log(f"remote '{run.remote.name}' committed the migration - finishing it")
            run.phase = "committed"
            _finish_source(run, log)
            return True
        if outcome != "none":
            # the record stays: the next command that meets the container asks again
            log(f"ERROR: state on the target unknown - CT {run.vmid} left locked 'migrate'")
            return False
        log(f"ERROR: migration aborted: remote '{run.remote.name}' did not commit it")
    # started before the lock and the record go: a kill in between leaves it to recovery
    if run.stopped and not lxcapi.is_running(run.vmid):
        log(f"start container {run.vmid} again on the source")
        try:
            lifecycle.start(run.vmid, skiplock=True, log=log)
        except CtkitError as start_err:
            log(f"ERROR: restarting CT {run.vmid} failed - {start_err}")
    migration.unlock(run.vmid)
    owner.remove_record(record_path(run.vmid))
    return False
