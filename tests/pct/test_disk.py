"""resize, df, cpusets, fstrim, push and pull on real containers (spec pct.md §1, §8, §9 case 44).

Online growth of a mounted ext4 needs CAP_SYS_RESOURCE, which the reference VM lacks: there the
running-CT resize test checks the volume, the loop device's capacity and the warning instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import paths
from shared.runtime import lxcapi
from shared.storage import loop
from shared.storage.dirplugin import pad_kib
from tests.pct.conftest import (
    PCT,
    Pct,
    kill_alone,
    leftovers,
    running,
    tmpfs_storage,
    wait_for,
    wait_while_running,
)

pytestmark = pytest.mark.lxc

Text = Callable[[int], str]
Images = Callable[[int], Path]
SIZE_RE = r"\d+|\d+\.\d[KMGT]"


def ext4_bytes(image: Path) -> int:
    out = subprocess.run(
        ["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(re.findall(r"^(Block count|Block size):\s+(\d+)$", out, re.M))
    return int(fields["Block count"]) * int(fields["Block size"])


@pytest.fixture
def dir_ct(pct: Pct, vmid: int, busybox_template: Path) -> int:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    return vmid


def test_case_44_resize_a_stopped_raw_rootfs(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Text, images: Images, ctroot: Path
) -> None:
    pct("create", vmid, busybox_template)
    image = images(vmid) / f"vm-{vmid}-disk-0.raw"
    res = pct("resize", vmid, "rootfs", "2G", check=False)
    assert res.rc != 0 and res.err == "unable to shrink disk size\n"
    res = pct("resize", vmid, "rootfs", "4G", check=False)
    assert res.rc != 0 and res.err == "disk is already at specified size\n"
    res = pct("resize", vmid, "rootfs", "+1G")  # e2fsck + resize2fs wait for ext4's MMP
    assert "WARN" not in res.text
    assert f"rootfs: local:{vmid}/vm-{vmid}-disk-0.raw,size=5G\n" in conf_text(vmid)
    assert image.stat().st_size == 5 << 30
    assert ext4_bytes(image) == 5 << 30
    assert leftovers(ctroot) == []


def test_a_resize_killed_half_way_is_finished_by_the_next_one(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Text, images: Images, ctroot: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    image = images(vmid) / f"vm-{vmid}-disk-0.raw"
    conf = ctroot / f"etc/pve/lxc/{vmid}.conf"
    # killed after growing the image, before resize2fs and the config save
    os.truncate(image, 2 << 30)
    res = pct("resize", vmid, "rootfs", "2G")
    assert (
        "finishing an interrupted resize of rootfs to 2.0G" in res.text and "WARN" not in res.text
    )
    assert f"rootfs: local:{vmid}/vm-{vmid}-disk-0.raw,size=2G\n" in conf_text(vmid)
    assert ext4_bytes(image) == 2 << 30
    # killed after the config save, before resize2fs (the order before the fix)
    os.truncate(image, 3 << 30)
    conf.write_text(conf_text(vmid).replace(",size=2G", ",size=3G"))
    pct("resize", vmid, "rootfs", "3G")
    assert ext4_bytes(image) == 3 << 30
    # nothing left to finish: Proxmox's refusal
    res = pct("resize", vmid, "rootfs", "3G", check=False)
    assert res.rc != 0 and res.err == "disk is already at specified size\n"
    pct("start", vmid)
    inside = pct("exec", vmid, "--", "df", "-k", "/").out.splitlines()[-1].split()
    assert int(inside[1]) > 2900 * 1024


def test_a_relative_resize_killed_half_way_is_finished_by_the_same_command(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Text, images: Images
) -> None:
    """``+N`` again after a kill past the growth of the image grew it a second time (counted
    from the grown image): asked for 1G + 1G, the disk became 3G. The config, saved last,
    still has the size the first command counted from: the same command finishes it. Another
    ``+N`` counts from the image, as Proxmox does."""
    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    image = images(vmid) / f"vm-{vmid}-disk-0.raw"
    grown = pad_kib((1 << 30) + (1 << 30) // 10)  # +0.1G: the image is whole KiB, 1.1G is not
    os.truncate(image, grown)  # killed after growing the image, before resize2fs and the save
    res = pct("resize", vmid, "rootfs", "+0.1G")
    assert "finishing an interrupted resize of rootfs to 1.1G" in res.text, res.text
    assert f"rootfs: local:{vmid}/vm-{vmid}-disk-0.raw,size={grown // 1024}K\n" in conf_text(vmid)
    # resize2fs leaves the image a whole number of blocks
    assert image.stat().st_size == ext4_bytes(image) == grown // 4096 * 4096
    os.truncate(image, 3 << 30)  # killed again, then another size asked for
    pct("resize", vmid, "rootfs", "+512M")
    assert image.stat().st_size == ext4_bytes(image) == (3 << 30) + (512 << 20)
    assert ",size=3584M\n" in conf_text(vmid)


R = 1_395_864_371  # 1.3G: not a whole KiB


@pytest.mark.parametrize(
    ("size", "recorded", "current", "repeats"),
    [
        ("+1G", 1 << 30, 2 << 30, True),  # killed after the image grew
        ("+1G", 1 << 30, 1 << 30, False),  # not yet grown: a real growth
        ("+1G", 2 << 30, 2 << 30, False),  # done and saved
        ("+2G", 1 << 30, 2 << 30, False),  # another size: counted from the image
        ("2G", 1 << 30, 2 << 30, False),  # an absolute size is no count
        ("+1G", None, 2 << 30, False),  # no recorded size
        ("+1G", R, pad_kib(R + (1 << 30)), True),  # killed after the image grew (whole KiB)
        ("+1G", R, (R + (1 << 30)) // 4096 * 4096, True),  # ... and after resize2fs
        ("+1G", R, R // 4096 * 4096, False),  # a finished 1.3G, as resize2fs left the image
        ("+4K", R, pad_kib(R), False),  # too small to tell from the rounding: a growth
        ("+1", R, pad_kib(R), False),
    ],
)
def test_which_relative_resize_repeats_an_interrupted_one(
    size: str, recorded: int | None, current: int, repeats: bool
) -> None:
    from pct.ops.disk import _repeats_interrupted

    assert _repeats_interrupted(size, recorded, current) is repeats


def test_the_mark_of_a_killed_e2fsck_is_cleared_by_the_next_command(
    pct: Pct, vmid: int, busybox_template: Path, images: Images
) -> None:
    """A ``pct resize`` killed while its e2fsck ran (or whose e2fsck died on the broken pipe of
    a killed pct) left e2fsck's MMP mark on the image: from then on every mount and every check
    refused the container ("MMP: e2fsck being run") until a human ran tune2fs. ``pct start``
    and ``pct resize`` clear such a mark once no process holds the image."""
    from shared.storage.ext4mmp import fsck_mark
    from tests.shared.storage.test_ext4mmp import e2fsck_holding_its_mark

    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    image = images(vmid) / f"vm-{vmid}-disk-0.raw"
    with e2fsck_holding_its_mark(image):
        res = pct("start", vmid, check=False)  # a check that runs is not ours to clear
        assert res.rc != 0 and fsck_mark(image)
    pct("start", vmid)
    assert not fsck_mark(image)
    assert "/" in pct("exec", vmid, "--", "df", "-k", "/").out
    pct("stop", vmid)
    with e2fsck_holding_its_mark(image):
        pass  # killed
    res = pct("resize", vmid, "rootfs", "+8M")
    assert f"cleared the mark of an interrupted e2fsck on 'local:{vmid}/" in res.text
    assert "WARN" not in res.text and ext4_bytes(image) == (1 << 30) + (8 << 20)


E2FSCK_HOLDING = """#!/usr/bin/python3
import fcntl, os, shutil, sys
# the real e2fsck, its output into a full pipe: it blocks at its first pass line, mark set
read_end, write_end = os.pipe()
fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
os.write(write_end, b"x" * fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ))
os.dup2(write_end, 1)
os.set_inheritable(read_end, True)  # a reader stays: the write blocks, not EPIPE
os.execv(REAL, ["e2fsck", *sys.argv[1:]])
"""


def _resize_held_in_e2fsck(vmid: int, image: Path, tmp_path: Path) -> subprocess.Popen[str]:
    """``pct resize`` (a session of its own) once its e2fsck holds the image, its mark set."""
    from shared.storage.ext4mmp import fsck_mark

    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    real = shutil.which("e2fsck")
    (fakebin / "e2fsck").write_text(E2FSCK_HOLDING.replace("REAL", repr(real)))
    (fakebin / "e2fsck").chmod(0o755)
    env = dict(os.environ, PATH=f"{fakebin}:{os.environ['PATH']}")
    argv = [str(PCT), "resize", str(vmid), "rootfs", "+8M"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        wait_while_running(proc, lambda: fsck_mark(image), "e2fsck mark")
    except AssertionError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc


def test_a_resize_interrupted_in_its_e2fsck_leaves_no_mark(
    pct: Pct, vmid: int, busybox_template: Path, images: Images, conf_text: Text, tmp_path: Path
) -> None:
    """SIGTERM while the resize's e2fsck ran: the command killed it, and its MMP mark stayed
    for the next command to find. Now the resize clears it before it exits 130."""
    from shared.storage.ext4mmp import fsck_mark

    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    image = images(vmid) / f"vm-{vmid}-disk-0.raw"
    proc = _resize_held_in_e2fsck(vmid, image, tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 130 and err.endswith("interrupted by signal\n"), err
    assert not fsck_mark(image)
    assert "lock:" not in conf_text(vmid)
    res = pct("resize", vmid, "rootfs", "1032M")
    assert "finishing an interrupted resize" in res.text and "WARN" not in res.text, res.text
    assert ext4_bytes(image) == (1 << 30) + (8 << 20)


def test_a_resize_killed_in_its_e2fsck_takes_the_check_with_it(
    pct: Pct, vmid: int, busybox_template: Path, images: Images, tmp_path: Path
) -> None:
    """kill -9 of pct resize while its e2fsck ran: the check ran on, writing the image, beside
    the next commands (their mounts failed). It now ends with the command, and the next start
    clears its mark (a resize finishes the grow: see the test above)."""
    from shared.storage.ext4mmp import fsck_mark

    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    image = images(vmid) / f"vm-{vmid}-disk-0.raw"
    proc = _resize_held_in_e2fsck(vmid, image, tmp_path)
    kill_alone(proc)  # no cleanup of its own runs; e2fsck must end with it
    pct("start", vmid)  # the check's mark is cleared, the volume mounts
    assert not fsck_mark(image)
    pct("exec", vmid, "--", "true")
    pct("stop", vmid)


def test_resize_a_running_raw_mount_point(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Text, images: Images
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--mp0", "local:1,mp=/data")
    pct("start", vmid)
    image = images(vmid) / f"vm-{vmid}-disk-1.raw"
    res = pct("resize", vmid, "mp0", "+512M")
    assert f"mp0: local:{vmid}/vm-{vmid}-disk-1.raw,mp=/data,size=1536M\n" in conf_text(vmid)
    assert image.stat().st_size == 1536 << 20
    (dev,) = loop.devices_for(image)
    size = subprocess.run(["blockdev", "--getsize64", dev], capture_output=True, text=True)
    assert int(size.stdout) == 1536 << 20  # losetup --set-capacity happened
    inside = pct("exec", vmid, "--", "df", "-k", "/data").out.splitlines()[-1].split()
    if "Failed to update the container's filesystem" in res.text:
        # no CAP_SYS_RESOURCE here: the file system keeps its size, the CT keeps running
        assert "resize2fs" in res.text and int(inside[1]) < 1100 * 1024
    else:
        assert int(inside[1]) > 1300 * 1024
    assert pct("status", vmid).out == "status: running\n"


def test_resize_refusals(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path, tmp_path: Path
) -> None:
    vmid, other = new_vmid(), new_vmid()
    pct("create", other, busybox_template, "--rootfs", "local:0")
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--mp1", f"{tmp_path},mp=/b")
    with open(ctroot / f"etc/pve/lxc/{vmid}.conf", "a") as fh:
        fh.write(f"mp2: local:{other}/subvol-{other}-disk-0.subvol,mp=/o,size=0T\n")
    cases = {
        ("rootfs", "+1G"): "can't resize this image format",
        ("mp1", "1G"): f"unable to parse volume ID '{tmp_path}'",
        ("mp2", "+1G"): f"can't resize mount point owned by another container ({other})",
        ("mp3", "1G"): "disk 'mp3' does not exist",
    }
    for (disk, size), message in cases.items():
        res = pct("resize", vmid, disk, size, check=False)
        assert res.rc != 0 and res.err == message + "\n", (disk, res.err)
    res = pct("resize", vmid, "rootfs", "1X", check=False)
    assert res.rc == 2 and "size: value does not match the regex pattern" in res.err
    res = pct("resize", vmid, "rootfs", "1" * 400, check=False)  # an OverflowError traceback
    assert res.rc == 2 and "size: unable to parse size '111" in res.err, res.err


def test_df_of_a_stopped_and_a_running_ct(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Text, ctroot: Path, tmp_path: Path
) -> None:
    pct(
        "create", vmid, busybox_template, "--rootfs", "local:1", "--mp0", "local:1,mp=/data",
        "--mp1", f"{tmp_path},mp=/srv/host",
    )  # fmt: skip
    out = pct("df", vmid).out
    lines = out.splitlines()
    assert lines[0].split() == ["MP", "Volume", "Size", "Used", "Avail", "Use%", "Path"]
    rows = [line.split() for line in lines[1:]]
    assert [(r[0], r[1], r[6]) for r in rows] == [
        ("rootfs", f"local:{vmid}/vm-{vmid}-disk-0.raw", "/"),
        ("mp0", f"local:{vmid}/vm-{vmid}-disk-1.raw", "/data"),
        ("mp1", str(tmp_path), "/srv/host"),
    ]
    for row in rows:
        assert all(re.fullmatch(SIZE_RE, cell) for cell in row[2:5]), row
        assert re.fullmatch(r"\d+\.\d", row[5]) and float(row[5]) <= 100
    assert rows[0][2].endswith("M") and 900 < float(rows[0][2][:-1]) < 1024  # a 1 GiB ext4
    # columns are aligned: every row starts its Path where the header does
    assert len({line.rindex(" ") for line in lines}) == 1
    assert "lock:" not in conf_text(vmid)  # the temporary 'mounted' lock is gone
    assert leftovers(ctroot) == []
    pct("start", vmid)
    pct("exec", vmid, "--", "dd", "if=/dev/zero", "of=/data/blob", "bs=1M", "count=20")
    running = [line.split() for line in pct("df", vmid).out.splitlines()[1:]]
    assert running[1][0] == "mp0" and running[1][3].endswith("M")
    assert float(running[1][3][:-1]) >= 20


def test_cpusets(pct: Pct, new_vmid: Callable[[], int], busybox_template: Path) -> None:
    assert pct("cpusets").out == "no running containers\n"
    one, two = sorted([new_vmid(), new_vmid()])
    pct("create", one, busybox_template, "--rootfs", "local:0", "--cores", "1")
    pct("create", two, busybox_template, "--rootfs", "local:0")
    pct("start", one)
    pct("start", two)
    lines = pct("cpusets").out.splitlines()
    host = os.cpu_count() or 1
    assert lines[0] == lines[-1] and set(lines[0]) == {"-"}
    assert len(lines) == 4
    cpus = {int(line.split(":")[0]): line.split(":", 1)[1] for line in lines[1:3]}
    assert [int(c) for c in cpus[two].split()] == list(range(host))
    assert len(cpus[one].split()) == 1
    assert len(lines[0]) == max(len(line) for line in lines[1:3])
    pct("stop", two)
    assert len(pct("cpusets").out.splitlines()) == 3


def _allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def test_fstrim_of_a_stopped_and_a_running_ct(
    pct: Pct, vmid: int, busybox_template: Path, images: Images, conf_text: Text, ctroot: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:1", "--mp0", "local:1,mp=/data,ro=1")
    image = images(vmid) / f"vm-{vmid}-disk-0.raw"
    pct("start", vmid)
    pct("exec", vmid, "--", "sh", "-c", "dd if=/dev/urandom of=/blob bs=1M count=24; sync")
    pct("exec", vmid, "--", "sh", "-c", "rm /blob; sync")
    pid = lxcapi.init_pid(vmid)
    before = _allocated(image)
    out = pct("fstrim", vmid).out
    assert re.fullmatch(rf"/proc/{pid}/root/: .* \(\d+ bytes\) trimmed\n", out)  # mp0 is ro
    assert _allocated(image) < before - (16 << 20)
    pct("stop", vmid)
    out = pct("fstrim", vmid, "--ignore-mountpoints").out
    assert re.fullmatch(rf"{ctroot}/var/lib/lxc/{vmid}/rootfs/: .* trimmed\n", out)
    assert "lock:" not in conf_text(vmid)
    assert leftovers(ctroot) == []


def test_push_and_pull(pct: Pct, dir_ct: int, images: Images, tmp_path: Path) -> None:
    ct = dir_ct
    src = tmp_path / "src.txt"
    src.write_text("hello\n")
    res = pct("push", ct, src, "/root/a.txt", check=False)
    assert res.rc != 0 and res.err == "can only push files to a running CT\n"
    res = pct("pull", ct, "/etc/passwd", tmp_path / "x", check=False)
    assert res.rc != 0 and res.err == "can only pull files from a running VM\n"
    pct("start", ct)
    rootfs = images(ct) / f"subvol-{ct}-disk-0.subvol"
    pct("push", ct, src, "/root/a.txt", "--user", "nobody", "--group", "nogroup", "--perms", "640")
    st = (rootfs / "root/a.txt").stat()
    # names come from the CT's passwd/group; ids are shifted into the host range
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (165534, 165534, 0o640)
    assert pct("exec", ct, "--", "stat", "-c", "%u:%g %a", "/root/a.txt").out == "65534:65534 640\n"
    pct("push", ct, src, "/root/b.txt")
    st = (rootfs / "root/b.txt").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (100000, 0o644)
    # an existing file is truncated, its mode kept unless --perms is given
    src.write_text("hi\n")
    pct("push", ct, src, "/root/a.txt")
    assert (rootfs / "root/a.txt").read_text() == "hi\n"
    assert stat.S_IMODE((rootfs / "root/a.txt").stat().st_mode) == 0o640
    pct("push", ct, src, "/root/a.txt", "--perms", "0x1ed")
    assert stat.S_IMODE((rootfs / "root/a.txt").stat().st_mode) == 0o755
    res = pct("push", ct, src, "/root/c.txt", "--user", "nosuchuser", check=False)
    assert res.rc != 0 and res.err == "failed to get uid for: nosuchuser\n"
    # pull: the destination is a host file, owner names are the host's
    dest = tmp_path / "pulled"
    pct("pull", ct, "/etc/passwd", dest, "--perms", "600", "--user", "0")
    assert dest.read_bytes() == (rootfs / "etc/passwd").read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    for path in ("/dev/zero", "/nonexistent"):
        res = pct("pull", ct, path, tmp_path / "never", check=False)
        assert res.rc != 0 and res.err.startswith(f"failed to open {path}: ")
        assert not (tmp_path / "never").exists()
    res = pct("push", ct, src, "/dev/null", check=False)
    assert res.rc != 0 and res.err == "failed to create file: /dev/null: not a regular file\n"


def test_push_and_pull_never_follow_a_container_symlink_to_the_host(
    pct: Pct, dir_ct: int, images: Images, tmp_path: Path
) -> None:
    ct = dir_ct
    host_file = tmp_path / "secret" / "host.txt"
    host_file.parent.mkdir()
    host_file.write_text("host secret\n")
    payload = tmp_path / "payload"
    payload.write_text("from push\n")
    pct("start", ct)
    rootfs = images(ct) / f"subvol-{ct}-disk-0.subvol"
    # the container points a link at the host's path; that path does not exist inside
    pct("exec", ct, "--", "ln", "-s", str(host_file), "/tmp/evil")
    res = pct("push", ct, payload, "/tmp/evil", check=False)
    assert res.rc != 0 and "No such file or directory" in res.err
    res = pct("pull", ct, "/tmp/evil", tmp_path / "stolen", check=False)
    assert res.rc != 0 and not (tmp_path / "stolen").exists()
    # now the same path exists inside too: the link resolves to the container's copy
    pct("exec", ct, "--", "mkdir", "-p", str(host_file.parent))
    pct("exec", ct, "--", "sh", "-c", f"echo ct file > {host_file}")
    pct("push", ct, payload, "/tmp/evil")
    assert host_file.read_text() == "host secret\n"
    assert (rootfs / str(host_file).lstrip("/")).read_text() == "from push\n"
    pct("pull", ct, "/tmp/evil", tmp_path / "got")
    assert (tmp_path / "got").read_text() == "from push\n"
    # a link to a directory works the same way
    pct("exec", ct, "--", "ln", "-s", "/etc", "/tmp/etc-link")
    pct("push", ct, payload, "/tmp/etc-link/motd")
    assert (rootfs / "etc/motd").read_text() == "from push\n"


def test_push_into_a_privileged_ct_keeps_host_ids(
    pct: Pct, vmid: int, busybox_template: Path, images: Images, tmp_path: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--unprivileged", "0")
    pct("start", vmid)
    src = tmp_path / "f"
    src.write_text("x\n")
    pct("push", vmid, src, "/root/f", "--user", "1000", "--group", "nogroup")
    st = (images(vmid) / f"subvol-{vmid}-disk-0.subvol/root/f").stat()
    assert (st.st_uid, st.st_gid) == (1000, 65534)


def test_pull_reads_only_what_the_container_root_could(
    pct: Pct, dir_ct: int, images: Images, tmp_path: Path
) -> None:
    """pct pull opened the path as the host's root inside the CT's mount namespace: a link the
    container made to /proc/timer_list copied host kernel data (/proc/kmsg drained the host's
    ring buffer), and a host-owned file the container's root may not read was copied out."""
    ct = dir_ct
    pct("start", ct)
    rootfs = images(ct) / f"subvol-{ct}-disk-0.subvol"
    out = tmp_path / "out"
    pct("exec", ct, "--", "ln", "-s", "/proc/timer_list", "/root/t.log")
    res = pct("pull", ct, "/root/t.log", out, check=False)
    assert res.rc == 1 and res.out == ""
    assert res.err == "failed to open /root/t.log: Permission denied\n"
    assert not out.exists()
    # world-readable, yet kernel state rather than a file: refused on what it is
    for path, fs in (("/proc/version", "proc"), ("/sys/kernel/uevent_seqnum", "sysfs")):
        res = pct("pull", ct, path, out, check=False)
        assert res.rc == 1
        assert res.err == f"failed to open {path}: on the kernel's {fs} file system\n"
        assert not out.exists()
    # owned by the host's root (unmapped in the CT), group-readable: the CT's root cannot read
    # it, and neither may pull, even run by a root in group 0 (as after a login)
    secret = rootfs / "root/host-only"
    secret.write_text("host secret\n")
    os.chown(secret, 0, 0)
    secret.chmod(0o640)
    res = pct("exec", ct, "--", "cat", "/root/host-only", check=False)
    assert res.rc != 0 and "Permission denied" in res.err
    argv = [str(PCT), "pull", str(ct), "/root/host-only", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, extra_groups=[0], check=False)
    assert proc.returncode == 1
    assert proc.stderr == "failed to open /root/host-only: Permission denied\n"
    assert not out.exists()
    # what the container's root may read still comes out
    pct("exec", ct, "--", "sh", "-c", "echo ct data > /root/mine; chmod 600 /root/mine")
    pct("pull", ct, "/root/mine", out)
    assert out.read_text() == "ct data\n"


def test_pull_from_a_privileged_ct_refuses_kernel_files(
    pct: Pct, vmid: int, busybox_template: Path, tmp_path: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--unprivileged", "0")
    pct("start", vmid)
    out = tmp_path / "out"
    pct("exec", vmid, "--", "ln", "-s", "/proc/timer_list", "/root/t.log")
    res = pct("pull", vmid, "/root/t.log", out, check=False)
    assert res.rc == 1
    assert res.err == "failed to open /root/t.log: on the kernel's proc file system\n"
    assert not out.exists()
    pct("exec", vmid, "--", "sh", "-c", "echo ct data > /root/mine; chmod 600 /root/mine")
    pct("pull", vmid, "/root/mine", out)
    assert out.read_text() == "ct data\n"


def test_push_and_pull_refuse_owner_values_out_of_range(
    pct: Pct, dir_ct: int, images: Images, tmp_path: Path
) -> None:
    """--user 99999999999 made pull die with a traceback (OverflowError from fchown) and left an
    empty destination; push left an empty file in the CT, --perms 77777777777777777777 one with
    mode 000. Values are checked before anything is opened; a file made is removed on failure."""
    ct = dir_ct
    pct("start", ct)
    rootfs = images(ct) / f"subvol-{ct}-disk-0.subvol"
    src = tmp_path / "src"
    src.write_text("data\n")
    out = tmp_path / "out"
    cases = (
        ("user", "99999999999", "uid '99999999999' out of range (0..4294967294)"),
        ("group", "4294967295", "gid '4294967295' out of range (0..4294967294)"),
        ("perms", "77777777777777777777", "mode '077777777777777777777' out of range (0..07777)"),
        ("perms", "10000", "mode '010000' out of range (0..07777)"),
    )
    for param, value, problem in cases:
        for argv in (
            ("push", ct, src, "/root/c", f"--{param}", value),
            ("pull", ct, "/etc/passwd", out, f"--{param}", value),
        ):
            res = pct(*argv, check=False)
            assert res.rc == 2 and res.out == ""
            lines = res.err.split("\n")
            assert lines[:3] == ["", "400 Parameter verification failed.", f"{param}: {problem}"]
            assert not (rootfs / "root/c").exists() and not out.exists()
    # the largest values still pass
    pct("pull", ct, "/etc/passwd", out, "--user", "4294967294", "--group", "4294967294")
    assert (out.stat().st_uid, out.stat().st_gid) == (4294967294, 4294967294)
    pct("pull", ct, "/etc/passwd", out, "--perms", "7777")
    # (the copy, written in the CT's user namespace, drops set-id bits as the kernel does)
    assert stat.S_IMODE(out.stat().st_mode) & 0o1777 == 0o1777
    out.unlink()
    # a failure after the file was made takes it away again: uid 70000 has no id in the CT
    res = pct("push", ct, src, "/root/c", "--user", "70000", check=False)
    assert res.rc == 1 and res.err == "failed to change file owner: Invalid argument\n"
    assert not (rootfs / "root/c").exists()
    # a source that is no regular file is refused before anything is made
    res = pct("push", ct, tmp_path, "/root/c", check=False)
    assert res.rc == 1 and res.err == f"failed to open {tmp_path} for reading: not a regular file\n"
    assert not (rootfs / "root/c").exists()


@pytest.mark.parametrize("size", ["9999T", "+99999999T", "18446744073709551616"])
def test_a_resize_beyond_the_file_system_limit_fails_in_one_line(
    pct: Pct, vmid: int, busybox_template: Path, size: str
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    before = paths.ct_conf(vmid).read_text()
    res = pct("resize", vmid, "rootfs", size, check=False)
    assert res.rc == 9 and len(res.err.splitlines()) == 1, res.text
    # no storage here has the room such a file system's growth writes: refused before the
    # image grows (one that has it gets the file system's own "File too large")
    assert "not enough free space on storage 'local' to grow the file system" in res.err
    assert paths.ct_conf(vmid).read_text() == before


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_push_takes_only_a_regular_file(
    pct: Pct, dir_ct: int, images: Images, tmp_path: Path, kind: str
) -> None:
    """A FIFO as the source waited for ever; /dev/zero filled the container's disk."""
    src = tmp_path / "src"
    if kind == "fifo":
        os.mkfifo(src)
    elif kind == "directory":
        src.mkdir()
    else:
        src = Path("/dev/zero")
    pct("start", dir_ct)
    res = pct("push", dir_ct, src, "/root/x", check=False, timeout=20)
    assert res.rc != 0 and res.err.startswith(f"failed to open {src} for reading"), res.err
    assert not (images(dir_ct) / f"subvol-{dir_ct}-disk-0.subvol/root/x").exists()
    pct("stop", dir_ct)


def test_a_failed_copy_never_costs_the_file_it_was_to_replace(
    pct: Pct, vmid: int, busybox_template: Path, tmp_path: Path
) -> None:
    """Proxmox truncates an existing destination before it copies: a push that ran out of
    room, or a pull of a path that does not exist, left the old file empty. The new content
    goes beside it and replaces it only when complete."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0.1")
    pct("start", vmid)
    pct("exec", vmid, "--", "sh", "-c", "echo precious > /root/keep")
    big = tmp_path / "big"
    with big.open("wb") as fh:  # more than the 100 MiB volume holds (data: holes cost nothing)
        for _ in range(200):
            fh.write(b"x" * (1 << 20))
    res = pct("push", vmid, big, "/root/keep", check=False)
    assert res.rc != 0 and res.err.startswith("failed to copy "), res.text
    assert pct("exec", vmid, "--", "cat", "/root/keep").out == "precious\n"
    assert pct("exec", vmid, "--", "ls", "-a", "/root").out.split() == [".", "..", "keep"]
    mine = tmp_path / "mine"
    mine.write_text("host data\n")
    res = pct("pull", vmid, "/root/missing", mine, check=False)
    # exit 3, as every file that does not exist (it was 1), in push and pull
    assert (res.rc, res.err) == (3, "failed to open /root/missing: No such file or directory\n")
    assert mine.read_text() == "host data\n"
    res = pct("push", vmid, tmp_path / "missing", "/root/keep", check=False)
    assert (res.rc, res.err) == (3, f"failed to open {tmp_path / 'missing'} for reading\n")
    assert sorted(p.name for p in tmp_path.glob("*mine*")) == ["mine"]
    pct("stop", vmid)


def test_push_keeps_owner_and_set_id_bits_and_clears_what_a_killed_copy_left(
    pct: Pct, dir_ct: int, images: Images, tmp_path: Path
) -> None:
    ct = dir_ct
    pct("start", ct)
    rootfs = images(ct) / f"subvol-{ct}-disk-0.subvol"
    src = tmp_path / "tool"
    src.write_text("#!/bin/sh\n")
    pct("push", ct, src, "/root/tool", "--user", "nobody", "--perms", "4755")
    st = (rootfs / "root/tool").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (165534, 0o4755)  # chown cleared it
    pct("push", ct, src, "/root/tool")  # the replacement keeps owner and mode
    st = (rootfs / "root/tool").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (165534, 0o4755)
    # a push killed half-way left its temp file; the next push to the name removes it, but
    # never one of a process that still runs
    dead = rootfs / "root/.tool.ctkit-copy-4194305"  # above the kernel's largest pid
    live = rootfs / f"root/.tool.ctkit-copy-{os.getpid()}"
    for path in (dead, live):
        path.write_text("partial")
    pct("push", ct, src, "/root/tool")
    assert not dead.exists() and live.exists()
    pct("stop", ct)


def test_push_never_gives_a_file_of_an_unmapped_owner_to_the_containers_nobody(
    pct: Pct, dir_ct: int, images: Images, tmp_path: Path
) -> None:
    """In an unprivileged CT a file owned by a host id the CT does not map (a host directory
    bound in) shows as 65534 inside: the copy that replaced it was chowned to that, so the
    file passed from its host owner to the container's nobody (host 165534)."""
    ct = dir_ct
    pct("start", ct)
    target = images(ct) / f"subvol-{ct}-disk-0.subvol/root/host-owned"
    target.write_text("old\n")
    os.chown(target, 1000, 1000)
    os.chmod(target, 0o666)
    src = tmp_path / "src"
    src.write_text("new\n")
    res = pct("push", ct, src, "/root/host-owned", check=False)
    st = target.stat()
    assert (st.st_uid, st.st_gid, target.read_text()) == (1000, 1000, "old\n"), res.text
    assert res.rc != 0 and res.err == (
        "failed to create file: /root/host-owned: its owner (uid 1000) is not mapped in the"
        " container\n"
    )
    res = pct("push", ct, src, "/root/host-owned", "--user", "0", check=False)
    assert res.rc != 0 and res.err.endswith("(gid 1000) is not mapped in the container\n")
    # ids the container names are set as given
    pct("push", ct, src, "/root/host-owned", "--user", "0", "--group", "0")
    st = target.stat()
    assert (st.st_uid, st.st_gid, target.read_text()) == (100000, 100000, "new\n")
    pct("stop", ct)


def test_push_to_a_missing_directory_creates_no_file(
    pct: Pct, dir_ct: int, images: Images, tmp_path: Path
) -> None:
    """'/root/new/' names a directory: the copy went to a new file '/root/new' (Path() drops
    the slash, and a '.' after it), where Proxmox's create fails; '' renamed a copy onto '.'."""
    ct = dir_ct
    pct("start", ct)
    src = tmp_path / "src"
    src.write_text("x\n")
    missing = "No such file or directory"
    for dest, error in (("/root/new/", "Is a directory"), ("/root/new/.", missing), ("", missing)):
        res = pct("push", ct, src, dest, check=False)
        assert res.rc != 0 and res.err == f"failed to create file: {dest}: {error}\n", res.text
    assert sorted(os.listdir(images(ct) / f"subvol-{ct}-disk-0.subvol/root")) == []
    pct("stop", ct)


def test_a_new_owner_never_inherits_the_old_files_set_id_bits(
    pct: Pct, dir_ct: int, images: Images, tmp_path: Path
) -> None:
    """A user's setuid file, pushed over with --user root and no --perms, became a setuid-root
    file (the old mode was set after the chown); a chown clears set-id bits, as it did before
    the copy went beside the file. Set-id bits given with --perms stay."""
    ct = dir_ct
    pct("start", ct)
    tool = images(ct) / f"subvol-{ct}-disk-0.subvol/root/tool"
    tool.write_text("mine\n")
    os.chown(tool, 101000, 101000)  # the container's uid 1000
    os.chmod(tool, 0o6755)
    src = tmp_path / "src"
    src.write_text("#!/bin/sh\n")
    pct("push", ct, src, "/root/tool", "--user", "root")
    st = tool.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (100000, 101000, 0o755)
    pct("push", ct, src, "/root/tool", "--perms", "4755")
    pct("push", ct, src, "/root/tool")  # the same owner: the mode carries over whole
    assert stat.S_IMODE(tool.stat().st_mode) == 0o4755
    pct("stop", ct)


INSIDE_SLEEPING = """
import os, sys, time
from shared.runtime.nsenter import in_container
pid, fd = int(sys.argv[1]), int(sys.argv[2])

def work() -> None:
    os.write(fd, b"%d\\n" % os.getpid())
    time.sleep(30)

in_container(pid, work, userns=True)
"""


def test_a_killed_push_into_an_unprivileged_ct_takes_its_copy_with_it(
    pct: Pct, dir_ct: int
) -> None:
    """kill -9 of pct push: its child, which copies as the container's root, went on and
    renamed its copy over the file a later push had written. Entering the container's user
    namespace changes the child's ids, and the kernel then drops its parent-death signal."""
    from shared.runtime import lxcapi

    pct("start", dir_ct)
    init = lxcapi.init_pid(dir_ct)
    assert init is not None
    read_end, write_end = os.pipe()
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", INSIDE_SLEEPING, str(init), str(write_end)],
                            cwd=repo, pass_fds=(write_end,))  # fmt: skip
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            child = int(pipe.readline())
        proc.kill()
        proc.wait()
        assert wait_for(lambda: not running(child), 5), (
            "the child runs on after its parent's kill -9"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
    pct("stop", dir_ct)


def test_a_resize_without_room_for_the_file_systems_growth_changes_nothing(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path, conf_text: Text
) -> None:
    """On a full storage resize2fs stopped half-way: the ext4 was left damaged, the resize
    exited 0 with a warning and the config named the new size."""
    with tmpfs_storage(ctroot, "full", "24m") as sid:
        pct("create", vmid, busybox_template, "--rootfs", f"{sid}:0.1")
        image = ctroot / f"mnt/{sid}/images/{vmid}/vm-{vmid}-disk-0.raw"
        before, size = conf_text(vmid), image.stat().st_size
        filler = ctroot / f"mnt/{sid}/filler"
        with contextlib.suppress(OSError), open(filler, "wb") as fh:  # until ENOSPC
            while True:
                fh.write(b"\0" * (1 << 20))
        res = pct("resize", vmid, "rootfs", "+1G", check=False)
        assert res.rc == 9 and res.err.startswith(
            f"not enough free space on storage '{sid}' to grow the file system of "
            f"'{sid}:{vmid}/vm-{vmid}-disk-0.raw': about 36.0M needed, "
        ), res.text
        assert conf_text(vmid) == before and image.stat().st_size == size
        check = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
        filler.unlink()
        pct("resize", vmid, "rootfs", "+64M")  # with room, it grows
        assert ext4_bytes(image) == size + (64 << 20)
        pct("destroy", vmid)
