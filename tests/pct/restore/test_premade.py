"""The directories that exist before extraction: which ones get their archive entry applied,
which entry is picked, and that re-applying never goes through a symlink."""

from __future__ import annotations

from pathlib import Path

from pct.ops.restore_tree import PremadeEntries, apply_premade_entries, premade_dirs
from shared.archive.tarformat import Member
from shared.archive.tarscan import ScanSink, TarScanner
from shared.ctconfig.config import Config
from tests.shared.archive import rawtar


def _members(data: bytes) -> list[Member]:
    found: list[Member] = []

    class Sink(ScanSink):
        def member(self, member: Member) -> bool:
            found.append(member)
            return True

    scanner = TarScanner(Sink(), forward=False)
    scanner.feed(data + bytes(1024))
    scanner.finish()
    return found


def _conf(**values: str) -> Config:
    conf = Config(900000001)
    for key, text in values.items():
        conf.set_raw(key, text)
    return conf


def test_root_volume_roots_and_their_parents_but_nothing_of_the_host() -> None:
    conf = _conf(
        rootfs="local:1/vm-1-disk-0.raw,size=1G",
        mp0="local:1/vm-1-disk-1.raw,mp=/srv/data,size=1G",
        mp1="/srv/host,mp=/srv/share",  # a host directory: neither it nor what is below
        mp2="local:1/vm-1-disk-2.raw,mp=/srv/share/inner/vol,size=1G",
        mp3="/dev/sdz1,mp=/mnt/dev/",
        mp4="local:1/vm-1-disk-3.raw,mp=/opt/x/,size=1G",
    )
    assert premade_dirs(conf) == {
        (),
        (b"srv",),
        (b"srv", b"data"),
        (b"srv", b"share", b"inner", b"vol"),
        (b"mnt",),
        (b"opt",),
        (b"opt", b"x"),
    }


def test_root_of_a_bind_mounted_rootfs_is_still_the_containers() -> None:
    conf = _conf(rootfs="/srv/ct-root", mp0="local:1/vm-1-disk-1.raw,mp=/a/b,size=1G")
    assert premade_dirs(conf) == {(), (b"a",), (b"a", b"b")}


def test_first_directory_entry_of_each_name_is_picked() -> None:
    keep = PremadeEntries({(), (b"data",)})
    members = _members(
        rawtar.directory(b"./")
        + rawtar.member(b"./file")
        + rawtar.member(b"./data")  # a file where a directory is wanted
        + rawtar.directory(b"data/", mode=0o700)
        + rawtar.directory(b"./data/sub/")
        + rawtar.directory(b".//data/.", mode=0o750)  # the same name again: too late
        + rawtar.directory(b"./")
    )
    picked = [m for m in members if keep(m)]
    assert [(m.name, m.mode) for m in picked] == [(b"./", 0o755), (b"data/", 0o700)]


def test_directory_behind_a_symlink_is_left_alone(ctroot: Path) -> None:
    root = ctroot.parent / "target"
    victim = ctroot.parent / "victim"
    (victim / "data").mkdir(parents=True, mode=0o755)
    root.mkdir(mode=0o755)
    (root / "srv").symlink_to(victim)
    kept = _members(
        rawtar.header(b"./", type=b"5", mode=0o711)
        + rawtar.header(b"./srv/data/", type=b"5", mode=0o700, uid=4321)
    )
    logs: list[str] = []
    apply_premade_entries(root, kept, _conf(rootfs="local:1/vm-1-disk-0.raw"), logs.append)
    assert (victim / "data").stat().st_mode & 0o7777 == 0o755
    assert (victim / "data").stat().st_uid == 0
    assert root.stat().st_mode & 0o7777 == 0o711  # the others are applied all the same
    assert len(logs) == 1 and logs[0].startswith("WARN: not restoring the attributes of '/srv/")
