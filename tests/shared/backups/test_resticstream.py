"""The header-level rewrite of a restic dump into the vzdump layout (no restic needed: the
input is a tar laid out as ``restic dump <snapshot> /`` writes it)."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from shared.archive.idmap import IdMapEntry
from shared.archive.tarscan import TarScanner
from shared.backups import resticstream
from shared.backups.resticstream import IdShift, Rewriter, Special, SpecialNodes, shift_capability
from shared.errors import ArchiveError
from shared.storage.resticplugin import ResticStorage

SHIFT = IdShift([IdMapEntry("u", 0, 100000, 65536), IdMapEntry("g", 0, 100000, 65536)])
LONG = "rootfs/srv/" + "d" * 120 + "/" + "f" * 150


def acl_xattr(uid: int) -> str:
    """A binary ``system.posix_acl_access`` value (user::rw-, user:<uid>:r--, group::r--,
    mask::r--, other::---) as tarfile carries it in a pax record."""
    entries = [(0x01, 6, 0xFFFFFFFF), (0x02, 4, uid), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF),
               (0x20, 0, 0xFFFFFFFF)]  # fmt: skip
    raw = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    return raw.decode("utf-8", "surrogateescape")


def dump(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None,
           uid: int = 100000, **extra: object) -> tuple[tarfile.TarInfo, bytes | None]:  # fmt: skip
    info = tarfile.TarInfo(name)
    info.type, info.uid, info.gid, info.mode, info.mtime = kind, uid, uid, 0o640, 1700000000
    info.size = len(data) if data is not None else 0
    for key, value in extra.items():
        setattr(info, key, value)
    return info, data


def rewrite(raw: bytes, piece: int = 7000) -> bytes:
    rw = Rewriter(SHIFT, None)
    scanner = TarScanner(rw, forward=False, deliver_data=True)
    for at in range(0, len(raw), piece):  # pieces that cut headers and data anywhere
        scanner.feed(raw[at : at + piece])
    scanner.finish()
    return finished(rw)


def finished(rw: Rewriter, budget: int = 1 << 20) -> bytes:
    """Everything ``rw`` queues once the dump has ended, as a stream hands it out."""
    rw.finish()
    while rw.tail(budget):
        pass
    return b"".join(bytes(p) for p in rw.out)


def test_layout_owners_links_acls_and_long_names() -> None:
    raw = dump([
        member("config/", tarfile.DIRTYPE, uid=0),
        member("config/pct.conf", data=b"arch: amd64\n", uid=0),
        member("config/pct.fw", data=b"", uid=0),
        member("rootfs/", tarfile.DIRTYPE),
        member("rootfs/srv/", tarfile.DIRTYPE, uid=101000),
        member("rootfs/srv/data", data=b"x" * 1000, uid=101000, pax_headers={
            "SCHILY.xattr.user.color": "blue",
            "SCHILY.xattr.system.posix_acl_access": acl_xattr(101234)}),
        member("rootfs/srv/hard", tarfile.LNKTYPE, linkname="rootfs/srv/data"),
        member("rootfs/srv/sym", tarfile.SYMTYPE, linkname="/etc/passwd"),
        member(LONG, data=b"long", uid=7),
    ])  # fmt: skip
    out = rewrite(raw)
    assert len(out) % 10240 == 0
    with tarfile.open(fileobj=io.BytesIO(out), mode="r:") as tar:
        got = {m.name: m for m in tar.getmembers()}
        names = [m.name for m in tar.getmembers()]
        assert names[:3] == ["./etc/vzdump/pct.conf", "./etc/vzdump/pct.fw", "."]
        assert tar.extractfile(got["./etc/vzdump/pct.conf"]).read() == b"arch: amd64\n"  # type: ignore[union-attr]
        conf = got["./etc/vzdump/pct.conf"]
        assert (conf.uid, conf.gid, conf.mode) == (0, 0, 0o644)
        data = got["./srv/data"]
        assert (data.uid, data.gid, data.mode, data.mtime) == (1000, 1000, 0o640, 1700000000)
        assert tar.extractfile(data).read() == b"x" * 1000  # type: ignore[union-attr]
        assert data.pax_headers["SCHILY.xattr.user.color"] == "blue"
        assert "SCHILY.xattr.system.posix_acl_access" not in data.pax_headers
        assert "user:1234:r--" in data.pax_headers["SCHILY.acl.access"]
        assert got["./srv/hard"].linkname == "./srv/data"
        assert got["./srv/sym"].linkname == "/etc/passwd"
        long = got["./" + LONG[len("rootfs/") :]]
        assert long.uid == 65534  # outside the map: nobody, as an id-mapped tar sees it
        assert tar.extractfile(long).read() == b"long"  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["outside/file", "config2", "rootfsx/a"])
def test_members_outside_the_layout_are_refused(name: str) -> None:
    raw = dump([member("config/pct.conf", data=b"arch: amd64\n"), member(name, data=b"x")])
    with pytest.raises(ArchiveError, match="unexpected member"):
        rewrite(raw)


def test_hard_link_to_the_config_is_refused() -> None:
    raw = dump([member("config/pct.conf", data=b"a"),
                member("rootfs/x", tarfile.LNKTYPE, linkname="config/pct.conf")])  # fmt: skip
    with pytest.raises(ArchiveError, match="hard link out of"):
        rewrite(raw)


def test_a_cut_dump_never_ends_cleanly() -> None:
    raw = dump([member("config/pct.conf", data=b"a"), member("rootfs/big", data=b"y" * 5000)])
    rw = Rewriter(SHIFT, None)
    scanner = TarScanner(rw, forward=False, deliver_data=True)
    scanner.feed(raw[:3000])
    with pytest.raises(ArchiveError):
        scanner.finish()


class Listed:
    """What ``restic ls`` found (here: known from the start), finished after ``delay`` asks."""

    def __init__(self, nodes: dict[bytes, Special], delay: int) -> None:
        self.nodes, self.delay = nodes, delay
        self.waited = False  # whether the rewriter has waited for it

    def ready(self) -> bool:
        self.delay -= 1
        return self.delay < 0

    def get(self) -> dict[bytes, Special]:
        self.waited = self.waited or self.delay >= 0
        return self.nodes


def test_empty_files_wait_for_the_listing_and_device_nodes_are_left_out() -> None:
    raw = dump([
        member("config/pct.conf", data=b"arch: amd64\n", uid=0),
        member("config/pct.fw", data=b"", uid=0),
        member("rootfs/", tarfile.DIRTYPE),
        member("rootfs/dev/", tarfile.DIRTYPE),
        member("rootfs/dev/null", data=b""),
        member("rootfs/empty", data=b""),
        member("rootfs/full", data=b"z" * 600),
    ])  # fmt: skip
    nodes = {
        b"rootfs/dev/null": resticstream.special({"type": "chardev"}),
        b"rootfs/pipe": resticstream.special(
            {"type": "fifo", "mode": 0o600, "uid": 100005, "gid": 100005}
        ),
    }
    rw = Rewriter(SHIFT, Listed(nodes, delay=100))  # type: ignore[arg-type]
    scanner = TarScanner(rw, forward=False, deliver_data=True)
    scanner.feed(raw)
    scanner.finish()
    out = finished(rw)
    with tarfile.open(fileobj=io.BytesIO(out), mode="r:") as tar:
        got = [(m.name, m.type) for m in tar.getmembers()]
    assert got == [
        ("./etc/vzdump/pct.conf", tarfile.REGTYPE),
        ("./etc/vzdump/pct.fw", tarfile.REGTYPE),  # config members never wait
        (".", tarfile.DIRTYPE),
        ("./dev", tarfile.DIRTYPE),
        ("./full", tarfile.REGTYPE),
        ("./empty", tarfile.REGTYPE),  # after the listing; /dev/null is not an empty file
        ("./pipe", tarfile.FIFOTYPE),
    ]
    assert rw.members == len(got)


def test_what_is_kept_of_a_listed_fifo() -> None:
    named_pipe = 1 << 25  # Go's os.ModeNamedPipe, as restic ls writes a fifo's mode
    node = resticstream.special({"type": "fifo", "mode": named_pipe | 0o640, "uid": 100005,
                                 "gid": 100006, "mtime": "2026-11-01T01:00:00Z"})  # fmt: skip
    assert node == Special(True, 0o640, 100005, 100006, 1793494800)
    assert resticstream.special({"type": "fifo", "mode": named_pipe}).mode == 0  # kept as is
    assert resticstream.special({"type": "fifo", "mode": "x", "uid": -1}) == Special(True, 0o644)
    assert resticstream.special({"type": "chardev", "mode": 0o666}) is resticstream.NOT_A_FIFO


def test_fifos_after_the_dump_are_handed_out_a_part_at_a_time() -> None:
    """They were queued all at once and joined into one string: a snapshot of a few MB with
    100,000 fifos under long paths took gigabytes."""
    raw = dump([member("config/pct.conf", data=b"arch: amd64\n", uid=0),
                member("rootfs/", tarfile.DIRTYPE)])  # fmt: skip
    long = "d" * 200
    nodes = {
        f"rootfs/{long}{i:05d}".encode(): Special(True, 0o600, 100000 + i % 7, 100000, 1700000000)
        for i in range(3000)
    }
    rw = Rewriter(SHIFT, Listed(nodes, delay=0))  # type: ignore[arg-type]
    scanner = TarScanner(rw, forward=False, deliver_data=True)
    scanner.feed(raw)
    scanner.finish()
    rw.finish()
    parts = []
    while rw.tail(64 << 10):
        parts.append(b"".join(bytes(p) for p in rw.out))
        rw.out.clear()
    assert len(parts) > 10 and max(map(len, parts)) < (64 << 10) + 4096
    with tarfile.open(fileobj=io.BytesIO(b"".join(parts)), mode="r:") as tar:
        fifos = [m for m in tar.getmembers() if m.type == tarfile.FIFOTYPE]
    assert len(fifos) == 3000 == rw.members - 2
    assert (fifos[0].name, fifos[0].mode, fifos[0].uid) == (f"./{long}00000", 0o600, 0)


def test_held_back_empty_files_wait_for_the_listing_once_their_headers_are_large() -> None:
    """Each empty file waits for restic ls with all its attributes; 16 MiB of them make the
    rewriter wait for the listing rather than hold more (1,000 such files took 1.6 GB)."""
    xattrs = {f"SCHILY.xattr.trusted.x{k}": "v" * 60_000 for k in range(16)}  # ~1 MB a file
    files = [member(f"rootfs/e{i:03d}", data=b"", pax_headers=xattrs) for i in range(40)]
    raw = dump([member("config/pct.conf", data=b"arch: amd64\n", uid=0),
                member("rootfs/", tarfile.DIRTYPE), *files])  # fmt: skip
    listed = Listed({}, delay=10**9)  # never done on its own
    rw = Rewriter(SHIFT, listed)  # type: ignore[arg-type]
    scanner = TarScanner(rw, forward=False, deliver_data=True)
    scanner.feed(raw)
    assert listed.waited  # before the end of the dump
    held = sum(len(h) for _path, h in rw._deferred)
    assert held < 16 << 20
    scanner.finish()
    with tarfile.open(fileobj=io.BytesIO(finished(rw)), mode="r:") as tar:
        assert len([m for m in tar.getmembers() if m.name.startswith("./e0")]) == 40


@pytest.mark.parametrize("many", ["count", "bytes"])
def test_a_listing_of_too_many_special_files_is_refused(many: str) -> None:
    nodes = SpecialNodes.__new__(SpecialNodes)  # its collecting half alone: no restic
    nodes.nodes, nodes._bytes = {}, 0
    count, length = (
        (resticstream.MAX_SPECIALS, 20) if many == "count"
        else (resticstream.MAX_SPECIAL_BYTES // 4000, 4000)
    )  # fmt: skip
    for i in range(count):
        nodes._keep(str(i).encode().rjust(length, b"x"), resticstream.NOT_A_FIFO)
    with pytest.raises(ArchiveError, match="more fifos, sockets and device nodes than a restore"):
        nodes._keep(b"y" * length, resticstream.NOT_A_FIFO)


def _restic_children() -> list[int]:
    """This process's restic children (the dump and ls a snapshot stream starts)."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = open(f"/proc/{entry.name}/status").read()  # noqa: SIM115
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("Name") == "restic" and fields.get("PPid", "").strip() == str(os.getpid()):
            out.append(int(entry.name))
    return out


def test_a_snapshot_whose_tags_cannot_be_used_leaves_no_restic_running(
    restic_store: ResticStorage, tmp_path: Path
) -> None:
    from shared.backups.resticstream import open_snapshot
    from shared.errors import CtkitError

    source = tmp_path / "src"
    source.mkdir()
    (source / "big").write_bytes(os.urandom(8 << 20))  # more than a pipe holds: dump waits
    stamp = "2026-11-01T01:00:00Z"
    tags = f"vzdump,type=lxc,vmid=900000123,time={stamp},idmap=u:0:not:a:map"
    subprocess.run(
        ["restic", "--quiet", "backup", "--tag", tags, "--time", "2026-11-01 01:00:00",
         str(source)],
        env={**restic_store.repo.environment(), "TZ": "UTC"}, check=True, capture_output=True,
    )  # fmt: skip
    with pytest.raises(CtkitError) as err:
        open_snapshot(restic_store, f"backup/ct/900000123/{stamp}")
    assert str(err.value) == "restic snapshot has an invalid idmap tag 'u:0:not:a:map'"
    deadline = time.monotonic() + 10
    while _restic_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _restic_children() == []


def test_an_open_stream_keeps_this_hosts_forget_and_prune_waiting(
    restic_store: ResticStorage, tmp_path: Path
) -> None:
    """A verify or restore reading a snapshot failed when this host's retention took the
    repository alone meanwhile: the stream holds the repository's gate shared until closed."""
    from shared.backups.resticstream import open_snapshot
    from shared.errors import LockError
    from shared.resticgate import gate

    source = tmp_path / "src"
    source.mkdir()
    (source / "file").write_bytes(b"data")
    stamp = "2026-11-01T01:00:00Z"
    subprocess.run(
        ["restic", "--quiet", "backup", "--tag",
         f"vzdump,type=lxc,vmid=900000123,time={stamp}", "--time", "2026-11-01 01:00:00",
         str(source)],
        env={**restic_store.repo.environment(), "TZ": "UTC"}, check=True, capture_output=True,
    )  # fmt: skip
    repository = restic_store.repo.repository
    stream = open_snapshot(restic_store, f"backup/ct/900000123/{stamp}")
    try:
        with pytest.raises(LockError), gate("offsite", repository, exclusive=True, wait=0):
            pass
    finally:
        stream.close()
    with gate("offsite", repository, exclusive=True, wait=0):
        pass


def test_a_file_capability_gets_the_containers_root_id() -> None:
    shift = SHIFT
    body = struct.pack("<IIII", 1 << 13, 0, 0, 0)  # cap_net_raw, permitted; effective flag
    v3 = struct.pack("<I", 0x03000001) + body + struct.pack("<I", 100000)
    assert shift_capability(v3, shift) == struct.pack("<I", 0x02000001) + body
    other = v3[:20] + struct.pack("<I", 101000)
    assert shift_capability(other, shift) == v3[:20] + struct.pack("<I", 1000)
    v2 = struct.pack("<I", 0x02000001) + body
    assert shift_capability(v2, shift) == v2  # already the container's
    assert shift_capability(v3, IdShift([])) == v3  # a privileged container's: host ids
    assert shift_capability(b"\x03\x00\x00", shift) == b"\x03\x00\x00"  # no capability at all
