"""Archive creation: the tar command line, the archive layout, codecs, failures, options."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.archive.codecs import Compression
from shared.archive.decode import open_decoded
from shared.archive.idmap import DEFAULT_UNPRIVILEGED
from shared.archive.members import list_members
from shared.archive.tarcreate import CreateSpec, create, tar_create_command
from shared.errors import CommandError, CtkitError
from tests.shared.archive.trees import write_files

GOLDEN = Path(__file__).parent / "golden"


def _spec(tmp: Path, snap: Path, **kw: object) -> CreateSpec:
    return CreateSpec(tmpdir=tmp, snapdir=snap, **kw)  # type: ignore[arg-type]


@pytest.fixture
def tree(wtmp: Path) -> tuple[Path, Path]:
    cfg = wtmp / "tmpdir"
    write_files(
        cfg, {"etc/vzdump/pct.conf": b"arch: amd64\nhostname: ct\n", "etc/vzdump/pct.fw": b""}
    )
    snap = wtmp / "snap"
    write_files(
        snap,
        {
            "bar": b"1",
            "bar2": b"2",
            "var/bar": b"3",
            "x/y/bar": b"4",
            "tmp/t1": b"5",
            "var/foo1": b"6",
            "var/keep": b"7",
            "lost+found/l": b"8",
            "data/lost+found/m": b"9",
            "etc/hostname": b"ct\n",
        },
    )
    return cfg, snap


def _names(path: Path) -> list[str]:
    return [m.name.decode() for m in list_members(path)]


def test_command_lines_match_golden() -> None:
    spec = CreateSpec(
        tmpdir=Path("/var/lib/vz/dump/vzdump-lxc-100-2024_01_01-02_00_00.tmp"),
        snapdir=Path("/mnt/vzsnap0"),
        sources=["./", "./data"],
        excludes=["/var/foo*", "bar", "dir/", "/tmp/?*", "/var/tmp/?*", "/var/run/?*.pid"],
    )
    priv = tar_create_command(spec)
    assert "\n".join(priv.argv) + "\n" == (GOLDEN / "tar_create_argv.txt").read_text()
    assert priv.warnings == ["tar does not match exclusion with a trailing slash 'dir/'"]
    spec.idmap = DEFAULT_UNPRIVILEGED
    unpriv = tar_create_command(spec)
    expected = (GOLDEN / "tar_create_argv_unprivileged.txt").read_text()
    assert "\n".join(unpriv.argv) + "\n" == expected


def test_layout_exclusions_and_pax_format(wtmp: Path, tree: tuple[Path, Path]) -> None:
    cfg, snap = tree
    out = wtmp / "a.tar"
    stats = create(_spec(cfg, snap, excludes=["bar", "/var/foo*", "/tmp/?*", "keep/"]), out)
    names = _names(out)
    assert names[:3] == ["./etc/vzdump/pct.conf", "./etc/vzdump/pct.fw", "./"]
    for gone in ("./bar", "./var/bar", "./x/y/bar", "./var/foo1", "./tmp/t1"):
        assert gone not in names
    for kept in ("./bar2", "./tmp/", "./var/keep", "./lost+found/l", "./etc/hostname"):
        assert kept in names
    assert stats.warnings == ["tar does not match exclusion with a trailing slash 'keep/'"]
    # POSIX pax: an extended header precedes the first member.
    head = out.read_bytes()[:1024]
    assert head[156:157] == b"x" and head[257:263] == b"ustar\0"


def test_unprivileged_archive_holds_container_ids(wtmp: Path, tree: tuple[Path, Path]) -> None:
    cfg, snap = tree
    for path in [cfg, snap, *cfg.rglob("*"), *snap.rglob("*")]:
        os.lchown(path, 100000, 100000)
    os.lchown(snap / "bar2", 101000, 100033)
    out = wtmp / "u.tar"
    create(_spec(cfg, snap, idmap=DEFAULT_UNPRIVILEGED), out)
    members = {m.name: m for m in list_members(out)}
    assert (members[b"./bar2"].uid, members[b"./bar2"].gid) == (1000, 33)
    assert {(m.uid, m.gid) for n, m in members.items() if n != b"./bar2"} == {(0, 0)}
    assert b"./lost+found/l" not in members and b"./data/lost+found/m" not in members


@pytest.mark.parametrize(
    ("kind", "pigz"),
    [
        (Compression.NONE, 0),
        (Compression.ZSTD, 0),
        (Compression.GZIP, 0),
        (Compression.GZIP, 2),
        (Compression.LZO, 0),
    ],
)
def test_codecs_roundtrip(
    wtmp: Path, tree: tuple[Path, Path], kind: Compression, pigz: int
) -> None:
    cfg, snap = tree
    out = wtmp / f"a.tar{kind.extension}"
    logs: list[str] = []
    stats = create(
        _spec(cfg, snap), out, compression=kind, zstd_threads=2, pigz_threads=pigz, log=logs.append
    )
    totals = [line for line in logs if line.startswith("Total bytes written: ")]
    assert len(totals) == 1 and totals[0].split()[3] == str(stats.bytes_in)
    assert stats.bytes_out == out.stat().st_size
    stream = open_decoded(out)
    size = 0
    while chunk := stream.read():
        size += len(chunk)
    stream.close()
    assert size == stats.bytes_in
    plain = subprocess.run(
        ["tar", "tf", str(out), "-I", {"zstd": "zstd", "gzip": "gzip", "lzo": "lzop"}[kind.value]]
        if kind != Compression.NONE
        else ["tar", "tf", str(out)],
        capture_output=True,
        check=True,
    )
    assert b"./etc/vzdump/pct.conf\n" in plain.stdout


def test_tar_failure_fails_pipeline(wtmp: Path, tree: tuple[Path, Path]) -> None:
    cfg, snap = tree
    spec = _spec(cfg, snap, sources=["./does-not-exist"])
    with pytest.raises(CommandError) as info:
        create(spec, wtmp / "a.tar.zst", compression=Compression.ZSTD)
    message = str(info.value)
    assert message.startswith("command 'tar cpf - --totals --one-file-system")
    assert "| zstd --threads=1 >" in message and message.endswith("failed: exit code 2")


@pytest.mark.parametrize(
    "kind", [Compression.NONE, Compression.ZSTD, Compression.GZIP, Compression.LZO]
)
def test_compressor_failure_fails_pipeline(tree: tuple[Path, Path], kind: Compression) -> None:
    cfg, snap = tree
    logs: list[str] = []
    with open("/dev/full", "wb") as full, pytest.raises(CommandError) as info:
        create(_spec(cfg, snap), full, compression=kind, log=logs.append)
    assert any("No space left on device" in line for line in logs)
    # the error line says why: where this process itself wrote (no stderr carries it), and
    # for zstd (its reason ends its message)
    in_process = {Compression.NONE: "write", Compression.ZSTD: "zstd"}.get(kind)
    if in_process:
        assert re.search(
            rf"failed: exit code \d+ - {in_process}: No space left on device$", str(info.value)
        )
    else:
        assert str(info.value).endswith("failed: exit code 1")


def test_destination_symlink_is_refused(wtmp: Path, tree: tuple[Path, Path]) -> None:
    """A symlink planted under the ``.dat`` name is never written through (issue 19 item 3)."""
    cfg, snap = tree
    victim = wtmp / "host-file"
    victim.write_bytes(b"precious")
    (wtmp / "a.tar.dat").symlink_to(victim)
    with pytest.raises(
        CtkitError, match=r"^refusing to use '.*a\.tar\.dat': it is a symbolic link$"
    ):
        create(_spec(cfg, snap), wtmp / "a.tar.dat")
    fifo = wtmp / "b.dat"
    os.mkfifo(fifo)
    with pytest.raises(CtkitError, match=r"not a regular file|unable to open"):
        create(_spec(cfg, snap), fifo)
    assert victim.read_bytes() == b"precious"


def test_progress_and_stream_destination(wtmp: Path, tree: tuple[Path, Path]) -> None:
    cfg, snap = tree
    seen: list[int] = []
    read_fd, write_fd = os.pipe()
    reader = subprocess.Popen(["wc", "-c"], stdin=read_fd, stdout=subprocess.PIPE)
    os.close(read_fd)
    with os.fdopen(write_fd, "wb") as dest:
        stats = create(_spec(cfg, snap), dest, progress=seen.append)
    out, _ = reader.communicate()
    assert int(out) == stats.bytes_in and stats.bytes_out is None
    assert seen and seen == sorted(seen) and seen[-1] == stats.bytes_in


def test_bandwidth_limit(wtmp: Path, tree: tuple[Path, Path]) -> None:
    cfg, snap = tree
    (snap / "blob").write_bytes(os.urandom(2 << 20))
    start = time.monotonic()
    stats = create(_spec(cfg, snap), wtmp / "a.tar", bwlimit_kib=4096)
    elapsed = time.monotonic() - start
    assert elapsed >= stats.bytes_in / (4096 * 1024) - 0.3
    with pytest.raises(CommandError, match=r"\| cstream -t 1024 \| zstd"):
        create(
            _spec(cfg, snap, sources=["./nope"]),
            wtmp / "b.tar.zst",
            compression=Compression.ZSTD,
            bwlimit_kib=1,
        )


def _big_tree(wtmp: Path) -> tuple[Path, Path]:
    """Config members and a tree that takes tar and zstd a while (hex text, 2:1)."""
    cfg, snap = wtmp / "tmpdir", wtmp / "snap"
    write_files(cfg, {"etc/vzdump/pct.conf": b"arch: amd64\n", "etc/vzdump/pct.fw": b""})
    for n in range(6):
        write_files(snap, {f"data/f{n}": os.urandom(12 << 20).hex().encode()})
    for path in [cfg, snap, *cfg.rglob("*"), *snap.rglob("*")]:
        os.lchown(path, 100000, 100000)
    return cfg, snap


def _children(name: bytes) -> list[int]:
    """The pids of this process's descendants named ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                ancestors = _ancestors(int(entry.name))
            except (OSError, ValueError):
                continue
            if argv[0] == name and os.getpid() in ancestors:
                found.append(int(entry.name))
    return found


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        chain.append(pid)
    return chain


def test_tar_writes_straight_into_zstd(wtmp: Path) -> None:
    """Without a bandwidth limit the stream never passes through this process: tar's stdout
    is zstd's stdin (one pipe between the two children), as in ``tar ... | zstd``."""
    cfg, snap = _big_tree(wtmp)
    seen: list[tuple[str, str]] = []

    def progress(_done: int) -> None:
        if not seen:
            (tar,), (zstd,) = _children(b"tar"), _children(b"zstd")
            seen.append((os.readlink(f"/proc/{tar}/fd/1"), os.readlink(f"/proc/{zstd}/fd/0")))

    out = wtmp / "a.tar.zst"
    stats = create(
        _spec(cfg, snap, idmap=DEFAULT_UNPRIVILEGED), out, compression=Compression.ZSTD,
        progress=progress,
    )  # fmt: skip
    assert seen and seen[0][0].startswith("pipe:") and seen[0][0] == seen[0][1]
    assert stats.bytes_in > 144 << 20 and stats.bytes_out == out.stat().st_size
    assert sum(m.size for m in list_members(out) if b"/data/" in m.name) == 144 << 20


def test_killed_tar_under_usernsexec_fails_the_direct_pipeline(wtmp: Path) -> None:
    """lxc-usernsexec reports a tar killed by a signal as a success: the missing totals line
    (tar prints it after the archive's end) fails the pipeline all the same."""
    cfg, snap = _big_tree(wtmp)

    def progress(_done: int) -> None:
        for pid in _children(b"tar"):
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(CommandError, match=r"failed: tar output ended without end of archive$"):
        create(
            _spec(cfg, snap, idmap=DEFAULT_UNPRIVILEGED), wtmp / "a.tar.zst",
            compression=Compression.ZSTD, progress=progress,
        )  # fmt: skip


def test_children_die_with_the_writer(wtmp: Path) -> None:
    """A writer killed with SIGKILL (no cleanup runs) takes zstd along, and tar with it: they
    do not go on writing the ``.dat`` behind the recovery's back."""
    cfg, snap = _big_tree(wtmp)
    code = (
        "import sys; from pathlib import Path; from shared.archive.codecs import Compression; "
        "from shared.archive.tarcreate import CreateSpec, create; "
        "from shared.archive.idmap import DEFAULT_UNPRIVILEGED as M; "
        f"create(CreateSpec(tmpdir=Path('{cfg}'), snapdir=Path('{snap}'), idmap=M), "
        f"'{wtmp}/a.tar.dat', compression=Compression.ZSTD)"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[3])
    try:
        deadline = time.monotonic() + 30
        # both running (zstd under its own name: past setpriv's prctl)
        while len(_orphans(wtmp)) < 2:
            assert writer.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        writer.kill()
        writer.wait()
    # without the compressor tar fails on its next write; left alone they would need seconds
    deadline = time.monotonic() + 1.0
    while _orphans(wtmp) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _orphans(wtmp)


def _orphans(wtmp: Path) -> list[int]:
    """tar and zstd processes working on this test's files (no longer our descendants)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            out = os.readlink(entry / "fd/1") if argv[0] == b"zstd" else ""
        except OSError:
            continue
        if (argv[0] == b"tar" and any(os.fsencode(wtmp) in a for a in argv)) or out.startswith(
            str(wtmp)
        ):
            found.append(int(entry.name))
    return found


def test_archive_writeback_starts_while_it_grows(wtmp: Path) -> None:
    """The archive's writeback is started while the compressor writes it (strace of a writer
    process), so the fsync before the rename does not find the whole archive dirty."""
    cfg, snap = _big_tree(wtmp)
    code = (
        "from pathlib import Path; from shared.archive.codecs import Compression; "
        "from shared.archive.tarcreate import CreateSpec, create; "
        f"create(CreateSpec(tmpdir=Path('{cfg}'), snapdir=Path('{snap}')), "
        f"'{wtmp}/a.tar.dat', compression=Compression.ZSTD)"
    )
    trace = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=sync_file_range,fsync", sys.executable, "-c", code],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[3],
    )  # fmt: skip
    calls = [ln for ln in trace.stderr.splitlines() if "sync" in ln]
    started = [i for i, ln in enumerate(calls) if "SYNC_FILE_RANGE_WRITE" in ln]
    synced = [i for i, ln in enumerate(calls) if "fsync(" in ln]
    assert started and synced and started[0] < synced[0], calls
