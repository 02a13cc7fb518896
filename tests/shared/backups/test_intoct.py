"""Extracting into a container: owners mapped into its id space, only below a new directory,
never through a symlink the container made; running unprivileged CTs too."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.vzdump.engine.conftest import BIN, Host, only_archive, vzdump

from .conftest import make_backup

pytestmark = pytest.mark.lxc


def _extract(volid: str, vmid: int, dest: str, *paths: str) -> tuple[int, str]:
    res = vzdump("extract", volid, *paths, "--vmid", str(vmid), "--dest", dest)
    return res.rc, res.err + res.out.decode()


def test_into_stopped_and_running_unprivileged_ct(host: Host) -> None:
    made = make_backup(host, unprivileged=True)
    rc, out = _extract(made.volid, made.ct.vmid, "/restored", "/srv/kinds/sub", "/etc/hostname")
    assert rc == 0, out
    base = made.rootfs / "restored"
    deep = base / "srv/kinds/sub/deep.txt"
    assert deep.read_bytes() == b"deep\n"
    assert (os.stat(deep).st_uid, os.stat(deep).st_gid) == (100033, 100033)
    assert os.stat(base / "etc/hostname").st_uid == 100000
    assert not list(host.root.glob("run/ctkit/extract-*"))  # mount dir gone, nothing mounted
    made.ct.start()
    rc, out = _extract(made.volid, made.ct.vmid, "/again", "/srv/kinds/regular.txt")
    assert rc == 0, out
    again = made.rootfs / "again/srv/kinds/regular.txt"
    assert again.read_bytes().startswith(b"hello") and os.stat(again).st_uid == 100000
    rc, out = _extract(made.volid, made.ct.vmid, "/again", "/srv/kinds/regular.txt")
    assert rc == 4 and "exists" in out


def test_refusals(host: Host) -> None:
    made = make_backup(host)
    outside = host.root / "outside"
    outside.mkdir()
    os.symlink(str(outside), made.rootfs / "evil")
    rc, out = _extract(made.volid, made.ct.vmid, "/evil/x", "/srv/kinds")
    assert rc == 9 and "symlink" in out, out
    assert list(outside.iterdir()) == []
    made.ct.start()
    rc, out = _extract(made.volid, made.ct.vmid, "/r", "/srv/kinds")
    assert rc == 6 and "privileged" in out, out
    res = vzdump("extract", made.volid, "/srv", "--vmid", str(made.ct.vmid))
    assert res.rc == 2


def test_running_ct_cannot_redirect_the_extraction(host: Host) -> None:
    made = make_backup(host, unprivileged=True)
    other = host.create(unprivileged=True)  # its files are host uid 100000's, as tar's are
    victim = other.volume() / "root"
    before = sorted(os.listdir(victim))
    made.ct.start()
    # the container swaps the new directory for a symlink to the other container's files
    # (a host path) as soon as it appears
    swap = (
        "touch /ready; while :; do if [ -d /restored ] && [ ! -L /restored ]; then "
        f"mv /restored /x; ln -s {victim} /restored; break; fi; done"
    )
    argv = [str(BIN / "pct"), "exec", str(made.ct.vmid), "--", "sh", "-c", swap]
    swapper = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (made.rootfs / "ready").exists():
            assert time.monotonic() < deadline and swapper.poll() is None
            time.sleep(0.05)
        rc, out = _extract(made.volid, made.ct.vmid, "/restored", "/srv/kinds")
        assert rc == 0, out
        swapper.wait(timeout=30)  # it saw the finished directory and moved it
        assert sorted(os.listdir(victim)) == before
        assert (made.rootfs / "x/srv/kinds/regular.txt").read_bytes().startswith(b"hello")
        assert not [n for n in os.listdir(made.rootfs) if n.startswith(".vzdump-extract-")]
    finally:
        if swapper.poll() is None:
            swapper.kill()
            swapper.wait()


def test_a_running_cts_nested_mount_point_is_named(host: Host) -> None:
    """A destination below two mount points is on the deeper one: the refusal named mp0 for a
    path on mp1."""
    ct = host.create(
        extra=["--mp0", "local:0,mp=/data,backup=1", "--mp1", "local:0,mp=/data/sub,backup=1"]
    )
    res = vzdump(str(ct.vmid), "--storage", "local", "--compress", "zstd")
    assert res.rc == 0, res.err
    volid = f"local:backup/{only_archive(host.root / 'var/lib/vz/dump', ct.vmid).name}"
    ct.start()
    for dest, key in (("/data/sub/back", "mp1"), ("/data/back", "mp0")):
        rc, out = _extract(volid, ct.vmid, dest, "/etc/hostname")
        assert (rc, out) == (6, f"'{dest}' is on mount point {key} - stop the CT first\n")
