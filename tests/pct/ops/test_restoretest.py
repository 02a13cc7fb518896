"""``pct restore-test``: a good backup restores, starts and is destroyed; a damaged one fails;
either way no container, volume, mount or loop device is left, and the result is recorded."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from shared.backups.sidecar import sidecar_path
from shared.testbed import build_busybox_rootfs
from tests.pct.restore.vzarchive import archive_name, vzdump_archive
from tests.shared.backups.conftest import make_backup
from tests.vzdump.engine.conftest import BIN, Host, host, run, vzdump

__all__ = ["host"]

pytestmark = pytest.mark.lxc


def _nothing_left(root: Path, vmid: int) -> None:
    assert not (root / f"etc/pve/lxc/{vmid}.conf").exists()
    assert not (root / f"var/lib/lxc/{vmid}").exists()
    assert not list((root / "var/lib/vz/images").glob(f"{vmid}/*"))
    real = os.path.realpath(root)
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        assert not [ln for ln in fh if f" {real}/" in ln]
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert real not in loops


def _restore_test(volid: str, first: int, *extra: str) -> tuple[int, str]:
    res = run(
        [str(BIN / "pct"), "restore-test", volid, "--vmid-range", f"{first}-{first + 9}", *extra],
        timeout=300,
    )
    return res.rc, res.out.decode() + res.err


def test_good_backup_passes(host: Host) -> None:
    made = make_backup(host, unprivileged=True)
    first = host.new_vmid()
    rc, out = _restore_test(made.volid, first, "--check", "test -s /srv/kinds/regular.txt")
    assert rc == 0, out
    assert f"CT {first} is running" in out and "passed" in out
    _nothing_left(host.root, first)
    side = json.loads(sidecar_path(made.archive).read_text())
    assert side["restore-test"]["state"] == "ok"
    (row,) = json.loads(vzdump("list", "local", "--output-format", "json").out)
    assert row["verification"]["kind"] == "restore-test"
    assert made.ct.running() is False and made.ct.conf_path.exists()  # original untouched


def test_failing_check_fails_and_cleans_up(host: Host) -> None:
    made = make_backup(host)
    first = host.new_vmid()
    rc, out = _restore_test(made.volid, first, "--check", "test -e /no/such/file")
    assert rc == 7 and "check command failed with exit code 1" in out, out
    _nothing_left(host.root, first)
    side = json.loads(sidecar_path(made.archive).read_text())
    assert side["restore-test"]["state"] == "failed"


def test_damaged_backup_fails_and_leaves_nothing(host: Host) -> None:
    made = make_backup(host)
    data = bytearray(made.archive.read_bytes())
    mid = len(data) * 3 // 4
    data[mid : mid + 64] = bytes(64)
    made.archive.write_bytes(bytes(data))
    first = host.new_vmid()
    rc, out = _restore_test(made.volid, first)
    assert rc == 7 and "restore test of" in out and "failed" in out, out
    _nothing_left(host.root, first)
    assert json.loads(sidecar_path(made.archive).read_text())["restore-test"]["state"] == "failed"


def test_leftover_of_a_killed_test_is_removed_first(host: Host) -> None:
    made = make_backup(host)
    stale = host.create()  # stands for what a SIGKILLed test left: a CT and its marker
    conf = stale.conf_path.read_text()
    stale.conf_path.write_text("lock: create\n" + conf)
    marker = host.root / f"run/ctkit/restore-test-{stale.vmid}.lock"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    rc, out = _restore_test(made.volid, stale.vmid)
    assert rc == 0, out
    assert f"removing CT {stale.vmid} left by an interrupted restore test" in out
    assert f"as CT {stale.vmid} " in out  # the id is free again and used
    _nothing_left(host.root, stale.vmid)
    assert not marker.exists()


def test_sigterm_cleans_up(host: Host) -> None:
    made = make_backup(host)
    first = host.new_vmid()
    argv = [str(BIN / "pct"), "restore-test", made.volid, "--vmid-range", f"{first}-{first}",
            "--check", "sleep 60"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "is running" in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, "".join(seen) + rest
    _nothing_left(host.root, first)
    assert not (host.root / f"run/ctkit/restore-test-{first}.lock").exists()


def _pids_running(argv: str) -> list[int]:
    """Host pids of processes whose command line is ``argv`` (the container's included)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if proc.name.isdigit() and cmdline.rstrip(b"\0").replace(b"\0", b" ") == argv.encode():
            found.append(int(proc.name))
    return found


def test_a_killed_test_is_cleaned_up_at_once(host: Host) -> None:
    """``kill -9`` of a test while its check ran left the container running, the check in it,
    its volume mounted, until the next restore test on the range."""
    made = make_backup(host)
    first = host.new_vmid()
    check = f"sleep {600 + first % 1000}"  # this test's own: tests run side by side
    argv = [str(BIN / "pct"), "restore-test", made.volid, "--vmid-range", f"{first}-{first}",
            "--check", check]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    try:
        assert any("is running" in line for line in proc.stdout)
        deadline = time.monotonic() + 30
        while not _pids_running(check):
            assert time.monotonic() < deadline, "the check never ran"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    deadline = time.monotonic() + 60
    while (host.root / f"etc/pve/lxc/{first}.conf").exists() or _pids_running(check):
        assert time.monotonic() < deadline, "the killed test's container is still there"
        time.sleep(0.1)
    _nothing_left(host.root, first)
    assert not (host.root / f"run/ctkit/restore-test-{first}.lock").exists()
    assert not made.ct.conf_path.read_text().count("lock:")  # the original is untouched


def _crafted(host: Host, tmp_path: Path, conf: str) -> str:
    """A backup of a bootable tree with ``conf`` as its config, on storage local."""
    tree = build_busybox_rootfs(tmp_path / "tree", debian_like=True)
    dump = host.root / "var/lib/vz/dump"
    dump.mkdir(parents=True, exist_ok=True)
    name = archive_name(100)
    vzdump_archive(dump / name, conf, [(tree, "./")])
    return f"local:backup/{name}"


def test_archive_idmap_is_not_restored(host: Host, tmp_path: Path) -> None:
    # container uid 1 would be host root on /data, a volume the host sees while the copy runs
    idmap = "u:0:100000:1;u:1:0:1;g:0:100000:1;g:1:0:1"
    conf = (
        "arch: amd64\nhostname: crafted\nmemory: 256\nostype: debian\nswap: 0\n"
        "rootfs: local:100/vm-100-disk-0.raw,size=128M\nunprivileged: 1\n"
        f"mp0: local:100/vm-100-disk-1.raw,mp=/data,size=16M,idmap={idmap}\n"
    )
    first = host.new_vmid()
    rc, out = _restore_test(_crafted(host, tmp_path, conf), first, "--check", "test -d /data")
    assert rc == 0, out
    assert f"WARN: not restoring 'idmap={idmap}' of mp0 from the archive" in out, out
    _nothing_left(host.root, first)


def test_a_privileged_backup_runs_unprivileged(host: Host, tmp_path: Path) -> None:
    """An untrusted archive without ``unprivileged: 1`` started as a privileged container: its
    init ran as the host's root, which could write host-global kernel settings."""
    conf = (
        "arch: amd64\nhostname: crafted\nmemory: 256\nostype: debian\nswap: 0\n"
        "rootfs: local:100/vm-100-disk-0.raw,size=128M\n"
    )
    first = host.new_vmid()
    volid = _crafted(host, tmp_path, conf)
    rc, out = _restore_test(volid, first, "--check", "cat /proc/self/uid_map")
    assert rc == 0, out
    assert re.search(r"check: +0 +100000 +65536$", out, re.MULTILINE), out
    _nothing_left(host.root, first)


def test_a_signal_in_the_restores_last_steps_ends_the_test(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TERM noted while the restore committed (work that holds signals off) was never acted
    on: the test went on, started the container, said 'passed' and exited 0."""
    from pct.ops import restore as restore_op
    from pct.ops.restoretest import RestoreTest, restore_test

    made = make_backup(host)
    first = host.new_vmid()
    commit = restore_op.commit_config

    def commit_then_term(*args: object, **kw: object) -> object:
        done = commit(*args, **kw)  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGTERM)
        return done

    monkeypatch.setattr(restore_op, "commit_config", commit_then_term)
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        restore_test(RestoreTest(made.volid, vmid_range=(first, first)), log=lines.append)
    out = "\n".join(lines)
    assert "the signal came after the restore was complete" in out, out
    assert "is running" not in out and "passed" not in out, out
    _nothing_left(host.root, first)
