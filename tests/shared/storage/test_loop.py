"""Loop devices, mounts and ext4 resizing with real devices."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from shared.errors import CommandError
from shared.storage import ext4mmp, loop
from tests.midway import stopped_midway

from .conftest import needs_root

MIB = 1 << 20

pytestmark = needs_root


def has_cap_sys_resource() -> bool:
    """Online ext4 resizing needs CAP_SYS_RESOURCE (some sandboxes drop it)."""
    with open("/proc/self/status") as fh:
        caps = next(line for line in fh if line.startswith("CapEff:")).split()[1]
    return bool(int(caps, 16) & (1 << 24))


def ext4_image(path: Path, size: int = 16 * MIB, mmp: bool = True) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)
    if mmp:
        loop.make_ext4(path, 100000, 100000)
    else:  # e2fsck/resize2fs wait ~11 s on an MMP file system; plain ext4 keeps tests fast
        subprocess.run(["mkfs.ext4", "-q", "-F", str(path)], check=True)
    return path


def mount_options(target: Path) -> set[str]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        if fields[4] == str(target):
            return set(fields[5].split(","))
    raise AssertionError(f"{target} is not mounted")


def test_raw_mount_always_releases_the_loop_device(tmp_path: Path, target: Path) -> None:
    image = ext4_image(tmp_path / "disk.raw")
    with (
        pytest.raises(RuntimeError, match=r"boom"),
        loop.mounted(image, target, "raw", options=["noatime"]) as handle,
    ):
        assert handle.loopdev is not None
        assert loop.backing_file(handle.loopdev) == image
        assert loop.devices_for(image) == [handle.loopdev]
        # what the mounted file system's files show as their device: a snapshot checks it
        assert loop.device_numbers(image) == {target.stat().st_dev}
        assert loop.is_backing(image) and loop.is_mounted(target)
        assert "noatime" in mount_options(target)
        assert target.stat().st_uid == 100000  # root_owner from mkfs
        (target / "f").write_text("data")
        raise RuntimeError("boom")
    assert not loop.is_mounted(target)
    assert loop.devices_for(image) == [] and loop.device_numbers(image) == set()
    with loop.mounted(image, target, "raw", read_only=True):
        assert (target / "f").read_text() == "data"
        assert "ro" in mount_options(target)
        with pytest.raises(OSError):
            (target / "g").write_text("x")
    assert loop.devices_for(image) == []


def test_busy_mount_is_unmounted_lazily(tmp_path: Path, target: Path) -> None:
    image = ext4_image(tmp_path / "disk.raw")
    with loop.mounted(image, target, "raw"):
        holder = open(target / "open-file", "w")  # noqa: SIM115 - keeps the file system busy
    try:
        assert not loop.is_mounted(target)
    finally:
        holder.close()
    assert loop.wait_unused(image, 2.0)  # the device goes once the last file is closed
    assert loop.devices_for(image) == []


def test_failed_mount_detaches(tmp_path: Path, target: Path) -> None:
    image = tmp_path / "zeros.raw"
    with open(image, "wb") as fh:
        fh.truncate(4 * MIB)
    with pytest.raises(CommandError, match=r"mount"):
        loop.mount_volume(image, target, "raw")
    assert loop.devices_for(image) == []
    assert not loop.is_mounted(target)


def test_bind_mount_read_only_with_flags(tmp_path: Path, target: Path) -> None:
    source = tmp_path / "subvol"
    source.mkdir()
    (source / "f").write_text("x")
    with loop.mounted(source, target, "subvol", read_only=True, options=["nosuid", "noexec"]):
        assert {"ro", "nosuid", "noexec"} <= mount_options(target)
        assert (target / "f").read_text() == "x"
        assert loop.mount_users(source) == [target]
        assert loop.mount_users(source / "f") == []  # a file inside: not bind-mounted itself
        assert loop.mount_users(tmp_path) == [target]  # mounted below it
    assert loop.mount_users(source) == []
    with pytest.raises(CommandError, match=r"unable to mount volume of format 'qcow2'"):
        loop.mount_volume(source, target, "qcow2")


def test_detach_leaves_a_reused_device_alone(tmp_path: Path) -> None:
    image = ext4_image(tmp_path / "a.raw", 4 * MIB, mmp=False)
    dev = subprocess.run(
        ["losetup", "--find", "--show", str(image)], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        loop.detach(dev, tmp_path / "other.raw")
        assert loop.backing_file(dev) == image
    finally:
        loop.detach(dev, image)
    assert loop.devices_for(image) == []


HOLDER = """
import sys, time
from pathlib import Path
from shared.storage import ext4mmp, loop
with loop.attached(Path(sys.argv[1]), read_only=sys.argv[2] == "ro") as dev:
    print(dev, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("mode", ["rw", "ro"])
def test_a_process_killed_between_attach_and_mount_leaves_no_device(
    tmp_path: Path, mode: str
) -> None:
    """The device is autoclear from its attach on: a pct create killed there had left it
    attached for good, and its volume could never be freed ("in use (/dev/loopN)")."""
    image = ext4_image(tmp_path / "a.raw", 4 * MIB, mmp=False)
    proc, dev = stopped_midway(HOLDER, str(image), mode)
    try:
        assert loop.devices_for(image) == [dev]
        name = Path(dev).name
        assert Path(f"/sys/block/{name}/loop/autoclear").read_text() == "1\n"
        assert Path(f"/sys/block/{name}/ro").read_text() == ("1\n" if mode == "ro" else "0\n")
    finally:
        proc.kill()
        proc.wait()
    assert loop.wait_unused(image, 2.0)  # the kernel frees it at the last close, maybe later
    assert loop.devices_for(image) == []


def test_an_image_that_cannot_be_opened_is_one_error_line(tmp_path: Path, target: Path) -> None:
    image = tmp_path / "missing.raw"
    with pytest.raises(CommandError, match=r"^unable to attach '.*' to a loop device - No such"):
        loop.mount_volume(image, target, "raw")


@pytest.mark.parametrize("read_only", [False, True])
def test_a_fifo_is_refused_without_waiting(tmp_path: Path, target: Path, read_only: bool) -> None:
    """A read-only open of a FIFO waited for a writer that never comes."""
    fifo = tmp_path / "vm-1-disk-0.raw"
    os.mkfifo(fifo)
    with pytest.raises(CommandError, match=r"to a loop device - not a regular file$"):
        loop.mount_volume(fifo, target, "raw", read_only=read_only)
    assert not loop.is_mounted(target)
    assert not ext4mmp.fsck_mark(fifo)


def block_bytes(image: Path) -> int:
    out = subprocess.run(
        ["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True
    ).stdout
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return int(info["Block count"]) * int(info["Block size"])


def test_offline_resize(tmp_path: Path) -> None:
    image = ext4_image(tmp_path / "disk.raw", 8 * MIB, mmp=False)
    with open(image, "r+b") as fh:
        fh.truncate(12 * MIB)
    loop.resize_fs(image)  # not attached anywhere: e2fsck -f -y + resize2fs
    assert block_bytes(image) == 12 * MIB


@pytest.mark.skipif(not has_cap_sys_resource(), reason="online ext4 resize needs CAP_SYS_RESOURCE")
def test_online_resize(tmp_path: Path, target: Path) -> None:
    image = ext4_image(tmp_path / "disk.raw", 8 * MIB)
    with loop.mounted(image, target, "raw"):
        with open(image, "r+b") as fh:
            fh.truncate(12 * MIB)
        assert loop.online_resize(image)
    assert block_bytes(image) == 12 * MIB


def test_online_resize_needs_an_attached_image(tmp_path: Path) -> None:
    image = ext4_image(tmp_path / "disk.raw", 4 * MIB, mmp=False)
    assert loop.online_resize(image) is False


def test_a_private_namespace_copy_is_no_use_of_a_volume(tmp_path: Path, target: Path) -> None:
    """A namespace made while a volume was mounted keeps a copy of that mount (a private one
    even after this one unmounted it): no container uses the volume through it."""
    source = tmp_path / "subvol"
    source.mkdir()
    holder = None
    try:
        with loop.mounted(source, target, "subvol"):
            holder = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sleep", "60"]
            )
            own = os.readlink("/proc/self/ns/mnt")
            deadline = time.monotonic() + 10
            while os.readlink(f"/proc/{holder.pid}/ns/mnt") == own:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        assert str(target) in Path(f"/proc/{holder.pid}/mountinfo").read_text()  # the copy
        assert loop.mount_users(source) == []
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()


def test_a_bind_mount_in_a_containers_namespace_is_a_use(tmp_path: Path) -> None:
    """A process that pivoted into a root of its own (as a container does) and bind-mounted
    the volume there uses it; its namespace's mounts of other file systems are not read as
    uses of it."""
    source, newroot = tmp_path / "subvol", tmp_path / "newroot"
    (source / "inner").mkdir(parents=True)
    for name in ("usr", "vol", "other"):
        (newroot / name).mkdir(parents=True)
    for name in ("bin", "lib", "lib64"):
        (newroot / name).symlink_to(f"usr/{name}")
    script = (
        f"mount --bind {source}/inner {newroot}/vol && mount --bind /usr {newroot}/usr"
        f" && mount -t tmpfs none {newroot}/other && exec chroot {newroot} /usr/bin/sleep 60"
    )
    unshare = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    holder = subprocess.Popen(unshare)
    try:
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{holder.pid}/root") != str(newroot):
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.02)
        assert loop.mount_users(source) == [Path(f"/proc/{holder.pid}/root/vol")]
        assert loop.mount_users(source / "inner") == [Path(f"/proc/{holder.pid}/root/vol")]
        assert loop.mount_users(newroot) == []  # our own directory: the bind is the other's
    finally:
        holder.kill()
        holder.wait()


def test_below_compares_whole_path_components() -> None:
    below = loop._below
    assert below(Path("/a/b"), Path("/a/b"))
    assert below(Path("/a/b/c"), Path("/a/b"))
    assert below(Path("/a/b/c"), Path("/"))
    assert below(Path("/"), Path("/"))
    assert not below(Path("/a/bc"), Path("/a/b"))  # a sibling that shares the prefix
    assert not below(Path("/a"), Path("/a/b"))
    assert not below(Path("/"), Path("/a"))


def test_mount_points_with_odd_characters_are_read_whole(tmp_path: Path) -> None:
    """The kernel escapes a space, tab, newline and backslash in mountinfo, but not a carriage
    return: a mount point holding one is still one line and one path."""
    source = tmp_path / "src"
    source.mkdir()
    points = [tmp_path / "with space", tmp_path / "cr\rhere", tmp_path / "nl\nand\\back"]
    for point in points:
        point.mkdir()
    try:
        for point in points:
            loop.bind_mount(source, point)
        found = loop.mount_points()
        assert all(point in found for point in points)
        assert loop.mounts_under(tmp_path) == sorted(points, key=found.index)
        assert sorted(loop.mount_users(source)) == sorted(points)
    finally:
        for point in points:
            loop.unmount(point, lazy=True)


def test_the_table_of_a_file_system_lists_only_its_mounts(tmp_path: Path, target: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    with loop.mounted(source, target, "subvol"):
        dev = next(e.dev for e in loop.mount_table() if e.point == target)
        assert [e.point for e in loop.mount_table(dev=dev) if e.point == target] == [target]
        assert all(e.dev == dev for e in loop.mount_table(dev=dev))
    assert loop.mount_table(dev="4095:1048575") == []  # no such file system


def test_a_read_only_bind_keeps_the_flags_its_mount_has(tmp_path: Path, target: Path) -> None:
    """As ``mount -o remount,bind,ro``: the remount repeats the flags the new bind mount took
    from the file system it binds (a nosuid, noexec tmpfs stays nosuid, noexec)."""
    fs = tmp_path / "fs"
    fs.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "nosuid,noexec,size=1m", "t", str(fs)], check=True
    )
    (fs / "vol").mkdir()
    with loop.mounted(fs / "vol", target, "subvol", read_only=True, options=["nodev"]):
        assert {"ro", "nosuid", "noexec", "nodev"} <= mount_options(target)
    assert not loop.is_mounted(target)
    with loop.mounted(fs / "vol", target, "subvol"):
        assert {"rw", "nosuid", "noexec"} <= mount_options(target)


def test_mount_and_unmount_failures_are_one_line(tmp_path: Path, target: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(CommandError, match=rf"^unable to bind-mount '{missing}' at '{target}'"):
        loop.bind_mount(missing, target)
    with pytest.raises(CommandError, match=rf"^unable to unmount '{target}' - Invalid argument$"):
        loop.unmount(target)
    source = tmp_path / "src"
    source.mkdir()
    loop.bind_mount(source, target)
    with open(target / "held", "w"):
        with pytest.raises(CommandError, match=r"Device or resource busy$"):
            loop.unmount(target)
        loop.unmount(target, lazy=True)  # detached at once, gone when the file closes
    assert not loop.is_mounted(target)


def test_file_system_type_as_df_names_it(tmp_path: Path, target: Path) -> None:
    """The type of the innermost mount that holds a path (df -T's answer), also for a path
    that does not exist yet and one reached through a symlink."""

    def df_type(path: Path) -> str:
        out = subprocess.run(["df", "-P", "-T", str(path)], capture_output=True, text=True)
        return out.stdout.splitlines()[1].split()[1]

    assert loop.fs_type(tmp_path) == df_type(tmp_path)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "t", str(target)], check=True)
    (target / "d").mkdir()
    (tmp_path / "link").symlink_to(target / "d")
    assert loop.fs_type(target / "d") == "tmpfs" == df_type(target / "d")
    assert loop.fs_type(tmp_path / "link") == "tmpfs"
    assert loop.fs_type(target / "not/yet") == "tmpfs"
    assert loop.fs_type(Path(f"{target}x")) == df_type(tmp_path)  # a name that only begins so


def test_an_image_on_ext4_is_written_directly_and_read_back_whole(
    tmp_path: Path, target: Path
) -> None:
    """A device attached for writing does direct I/O into an image on ext4 (no second copy in
    the page cache); what the ext4 inside wrote that way is what a read-only mount, through the
    page cache, reads back."""
    image = ext4_image(tmp_path / "disk.raw")
    data = os.urandom(3 * MIB + 4097)
    with loop.mounted(image, target, "raw") as handle:
        assert handle.loopdev is not None and loop.direct_io(handle.loopdev)
        (target / "f").write_bytes(data)
    with loop.mounted(image, target, "raw", read_only=True) as handle:
        assert handle.loopdev is not None and not loop.direct_io(handle.loopdev)
        assert (target / "f").read_bytes() == data


def test_an_image_on_btrfs_goes_through_the_page_cache(btrfs_mount: Path, target: Path) -> None:
    # btrfs checksums the pages it is handed: one the ext4 inside changed while it was being
    # written would fail its checksum when read back
    image = ext4_image(btrfs_mount / "disk.raw")
    with loop.mounted(image, target, "raw") as handle:
        assert handle.loopdev is not None and not loop.direct_io(handle.loopdev)
        (target / "f").write_text("data")
    with loop.mounted(image, target, "raw", read_only=True):
        assert (target / "f").read_text() == "data"
