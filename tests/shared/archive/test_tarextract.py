"""Extraction: fidelity of create → extract, hostile archives, broken archives, options."""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path

import pytest

from shared.archive.codecs import Compression
from shared.archive.idmap import DEFAULT_UNPRIVILEGED
from shared.archive.members import list_members
from shared.archive.tarcreate import CreateSpec, create
from shared.archive.tarextract import extract, tar_extract_command
from shared.archive.tartotals import human_size
from shared.errors import ArchiveError, CommandError
from tests.shared.archive import rawtar
from tests.shared.archive.conftest import make_root
from tests.shared.archive.manifest import Manifest, diff, record, shifted, without
from tests.shared.archive.trees import build_fidelity_tree

GOLDEN = Path(__file__).parent / "golden"
MAP = DEFAULT_UNPRIVILEGED


def _without_root_mtime(manifest: Manifest) -> Manifest:
    # --skip-old-files leaves the existing target directory alone (as in Proxmox).
    out = dict(manifest)
    out[b"."] = {k: v for k, v in manifest[b"."].items() if k != "mtime_ns"}
    return out


def _roundtrip(wtmp: Path, src: Path, archive_map: object, extract_map: object) -> Path:
    cfg = wtmp / "cfg"
    cfg.mkdir(exist_ok=True)
    out = wtmp / "backup.tar.zst"
    spec = CreateSpec(tmpdir=cfg, snapdir=src, config_members=(), idmap=archive_map)  # type: ignore[arg-type]
    create(spec, out, compression=Compression.ZSTD, zstd_threads=2)
    dst = make_root(wtmp / "restored", extract_map)
    logs: list[str] = []
    extract(
        out,
        dst,
        compression=Compression.ZSTD,
        idmap=extract_map,  # type: ignore[arg-type]
        # Only privileged → unprivileged needs it (device nodes are dropped with a warning).
        ignore_unpack_errors=archive_map is None and extract_map is not None,
        log=logs.append,
    )
    assert any(line.startswith("Total bytes read: ") for line in logs)
    return dst


def test_extract_command_matches_golden() -> None:
    argv = tar_extract_command("/var/lib/lxc/100/rootfs", MAP)
    assert "\n".join(argv) + "\n" == (GOLDEN / "tar_extract_argv.txt").read_text()
    assert tar_extract_command("/r", None)[:2] == ["tar", "xpf"]


def test_privileged_roundtrip_is_exact(wtmp: Path) -> None:
    src = wtmp / "src"
    build_fidelity_tree(src)
    dst = _roundtrip(wtmp, src, None, None)
    expected = _without_root_mtime(record(src))
    assert diff(expected, _without_root_mtime(record(dst))) == []
    # Only user.* and security.capability travel; trusted.* stays behind.
    assert os.getxattr(src / "dir/file", "trusted.secret") == b"x"
    assert "trusted.secret" not in os.listxattr(dst / "dir/file")


def test_unprivileged_roundtrip_keeps_host_owners(wtmp: Path) -> None:
    src = wtmp / "src"
    build_fidelity_tree(src, idmap=MAP, devices=False)
    before = record(src)
    assert before[b"dir/file"]["uid"] == 101000
    dst = _roundtrip(wtmp, src, MAP, MAP)
    # The archive holds container ids, not host ids.
    owners = {(m.uid, m.gid) for m in list_members(wtmp / "backup.tar.zst")}
    assert (1000, 1000) in owners and (0, 0) in owners
    assert all(uid < 65536 and gid < 65536 for uid, gid in owners)
    assert diff(_without_root_mtime(before), _without_root_mtime(record(dst))) == []


def test_privileged_archive_extracted_with_map_is_shifted(wtmp: Path) -> None:
    src = wtmp / "src"
    build_fidelity_tree(src)
    dst = _roundtrip(wtmp, src, None, MAP)
    expected = without(shifted(record(src), 100000, 100000), "chr", "blk")
    expected[b"."] = record(dst)[b"."]  # the target root keeps its own attributes
    assert diff(expected, record(dst)) == []
    assert not (dst / "chr").exists() and not (dst / "blk").exists()


def test_legit_rootfs_with_absolute_symlinks_extracts(wtmp: Path) -> None:
    data = rawtar.archive(
        rawtar.directory(b"./"),
        rawtar.directory(b"./usr/"),
        rawtar.directory(b"./usr/bin/"),
        rawtar.member(b"./usr/bin/sh", b"#!binary", mode=0o755),
        rawtar.symlink(b"./bin", b"usr/bin"),
        rawtar.directory(b"./etc/"),
        rawtar.symlink(b"./etc/mtab", b"/proc/self/mounts"),
        rawtar.directory(b"./lib64/"),
        rawtar.symlink(b"./lib64/ld-linux-x86-64.so.2", b"/lib/x86_64-linux-gnu/ld.so"),
        rawtar.symlink(b"./etc/up", b"../../../.."),
        rawtar.hardlink(b"./usr/bin/dash", b"./usr/bin/sh"),
        rawtar.symlink(b"./etc/mtab", b"/proc/self/mounts"),  # duplicate of a symlink itself
    )
    root = make_root(wtmp / "root")
    extract(io.BytesIO(data), root, compression=Compression.NONE)
    assert os.readlink(root / "etc/mtab") == "/proc/self/mounts"
    assert os.readlink(root / "lib64/ld-linux-x86-64.so.2") == "/lib/x86_64-linux-gnu/ld.so"
    assert os.readlink(root / "etc/up") == "../../../.."
    assert (root / "usr/bin/dash").stat().st_ino == (root / "usr/bin/sh").stat().st_ino


# -- hostile archives --------------------------------------------------------------------------


def _hostile_cases(canary: Path) -> dict[str, tuple[bytes, str]]:
    victim = bytes(canary / "victim")
    absdir = bytes(canary)
    f = rawtar.member
    s = rawtar.symlink
    h = rawtar.hardlink
    return {
        "absolute path": (f(bytes(canary / "new"), b"pwned"), "absolute path"),
        "dotdot": (f(b"./../canary/new", b"pwned"), "path contains '..'"),
        "dotdot deep": (f(b"./a/b/../../../canary/new", b"pwned"), "path contains '..'"),
        "symlink then write": (s(b"./a", absdir) + f(b"./a/victim", b"pwned"), "symlink 'a'"),
        "symlink then write, other spelling": (
            s(b"./a", absdir) + f(b"a//./victim", b"pwned"),
            "symlink 'a'",
        ),
        "relative symlink chain": (
            rawtar.directory(b"./d/") + s(b"./d/l", b"../../canary") + f(b"./d/l/victim", b"pwned"),
            "symlink 'd/l'",
        ),
        "nested symlinks": (
            s(b"./x", b"y") + s(b"./y", b"../canary") + f(b"./x/victim", b"pwned"),
            "symlink 'x'",
        ),
        "symlink dir then hard link through it": (
            s(b"./e", absdir) + h(b"./h", b"./e/victim") + f(b"./h", b"pwned"),
            "hard link target: path passes through symlink 'e'",
        ),
        "hard link to a symlink, then write through it": (
            s(b"./s", absdir) + h(b"./h", b"./s") + f(b"./h/victim", b"pwned"),
            "path passes through symlink 'h'",
        ),
        "hard link to absolute path": (
            h(b"./h", victim) + f(b"./h", b"pwned"),
            "hard link target: absolute path",
        ),
        "hard link with dotdot": (
            h(b"./h", b"../canary/victim") + f(b"./h", b"pwned"),
            "hard link target: path contains '..'",
        ),
        "pax path override": (
            rawtar.pax([(b"path", b"../canary/new")]) + f(b"./benign", b"pwned"),
            "path contains '..'",
        ),
        "pax path absolute": (
            rawtar.pax([(b"path", bytes(canary / "new"))]) + f(b"./benign", b"pwned"),
            "absolute path",
        ),
        "pax linkpath override": (
            f(b"./ok", b"x") + rawtar.pax([(b"linkpath", victim)]) + h(b"./h", b"./ok"),
            "hard link target: absolute path",
        ),
        "gnu long name": (
            rawtar.gnu_long(b"../canary/new") + f(b"./benign", b"pwned"),
            "path contains '..'",
        ),
        "gnu long link": (
            rawtar.gnu_long(victim, b"K") + h(b"./h", b"./ok"),
            "hard link target: absolute path",
        ),
        "sparse name override": (
            rawtar.pax([(b"GNU.sparse.name", b"../canary/new")]) + f(b"./benign", b"pwned"),
            "path contains '..'",
        ),
        "global pax path": (
            rawtar.pax([(b"path", b"../canary/new")], kind=b"g") + f(b"./benign", b"pwned"),
            "global pax header",
        ),
        "ustar prefix": (
            f(b"new", b"pwned", prefix=b"../canary"),
            "path contains '..'",
        ),
        "root replaced by symlink": (s(b"./", absdir), "replace the target directory"),
        "directory over symlink": (
            s(b"./a", absdir) + rawtar.directory(b"./a/", mode=0o700),
            "directory over an earlier symlink",
        ),
    }


CASES = list(_hostile_cases(Path("/c")))


@pytest.mark.parametrize("mapped", [False, True], ids=["privileged", "idmapped"])
@pytest.mark.parametrize("case", CASES)
def test_hostile_archive_changes_nothing_outside(wtmp: Path, case: str, mapped: bool) -> None:
    canary = wtmp / "canary"
    canary.mkdir()
    (canary / "victim").write_text("original")
    os.chmod(canary, 0o777)  # even a writable directory must stay untouched
    os.chmod(canary / "victim", 0o666)
    payload, reason = _hostile_cases(canary)[case]
    data = rawtar.archive(rawtar.directory(b"./"), payload, rawtar.member(b"./later", b"late"))
    root = make_root(wtmp / "root", MAP if mapped else None)
    before = _outside(wtmp)
    with pytest.raises(ArchiveError, match=r"unsafe archive member|global pax header") as info:
        extract(io.BytesIO(data), root, compression=None, idmap=MAP if mapped else None)
    assert reason in str(info.value)
    assert diff(before, _outside(wtmp)) == []
    assert (canary / "victim").read_text() == "original"
    assert not (root / "later").exists()  # tar was stopped at the hostile member


def _outside(wtmp: Path) -> Manifest:
    return {k: v for k, v in record(wtmp).items() if not k.startswith(b"root")}


def test_device_node_in_idmapped_extract(wtmp: Path) -> None:
    dev = rawtar.header(b"./null2", type=b"3", devmajor=1, devminor=3)
    under_dev = rawtar.header(b"./dev/null", type=b"3", devmajor=1, devminor=3)
    data = rawtar.archive(rawtar.directory(b"./"), under_dev, dev, rawtar.member(b"./f", b"x"))
    root = make_root(wtmp / "root", MAP)
    with pytest.raises(ArchiveError, match=r"'\./null2': device node not allowed"):
        extract(io.BytesIO(data), root, compression=None, idmap=MAP)
    assert not os.path.lexists(root / "null2")

    root2 = make_root(wtmp / "root2", MAP)
    logs: list[str] = []
    stats = extract(
        io.BytesIO(data),
        root2,
        compression=None,
        idmap=MAP,
        ignore_unpack_errors=True,
        log=logs.append,
    )
    assert not os.path.lexists(root2 / "null2") and not os.path.lexists(root2 / "dev/null")
    assert (root2 / "f").read_text() == "x"
    assert stats.warnings == [
        "skipping device node './null2' (not allowed in an unprivileged container)"
    ]
    assert stats.warnings[0] in logs


def test_device_node_privileged_is_created(wtmp: Path) -> None:
    data = rawtar.archive(rawtar.header(b"./null2", type=b"3", devmajor=1, devminor=3))
    root = make_root(wtmp / "root")
    extract(io.BytesIO(data), root, compression=None)
    assert os.major(os.lstat(root / "null2").st_rdev) == 1


# -- broken archives ---------------------------------------------------------------------------


@pytest.fixture
def archives(wtmp: Path) -> dict[str, Path]:
    src = wtmp / "tree"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(3 << 20))
    (src / "small").write_text("hello\n")
    cfg = wtmp / "cfg"
    cfg.mkdir()
    out = {}
    for kind in (Compression.NONE, Compression.ZSTD, Compression.GZIP, Compression.LZO):
        path = wtmp / f"a.tar{kind.extension}"
        create(CreateSpec(cfg, src, config_members=()), path, compression=kind)
        out[kind.value] = path
    xz = wtmp / "a.tar.xz"
    subprocess.run(["xz", "-k", "-T1", str(out["none"])], check=True)
    out["xz"] = xz
    return out


@pytest.mark.parametrize("kind", ["none", "zstd", "gzip", "lzo", "xz"])
def test_truncated_archive_fails(wtmp: Path, archives: dict[str, Path], kind: str) -> None:
    data = archives[kind].read_bytes()
    cut = wtmp / f"cut{archives[kind].name[1:]}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError) as info:
        extract(cut, make_root(wtmp / "root"), compression=None)
    # xz's own words and lzop's stale errno ("Inappropriate ioctl for device: <stdin>") too
    assert str(info.value) == "unexpected end of archive"


def test_uncompressed_archive_without_end_marker_fails(wtmp: Path) -> None:
    data = rawtar.member(b"./a", b"x")  # complete member, but no end-of-archive blocks
    with pytest.raises(ArchiveError, match=r"^unexpected end of archive$"):
        extract(io.BytesIO(data), make_root(wtmp / "root"), compression=None)


def test_corrupt_zstd_fails_with_zstd_error(wtmp: Path, archives: dict[str, Path]) -> None:
    data = bytearray(archives["zstd"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = wtmp / "bad.tar.zst"
    bad.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=r"^zstd: "):
        extract(bad, make_root(wtmp / "root"), compression=None)


def test_corrupt_gzip_fails_with_gzip_error(wtmp: Path, archives: dict[str, Path]) -> None:
    data = bytearray(archives["gzip"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = wtmp / "bad.tar.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=r"^gzip: "):
        extract(bad, make_root(wtmp / "root"), compression=None)


def test_unrecognized_names(wtmp: Path) -> None:
    with pytest.raises(ArchiveError, match=r"^file does not look like a template archive"):
        extract(wtmp / "x.zip", wtmp, compression=None)
    with pytest.raises(ArchiveError, match=r"^unrecognized compression format: \.rar$"):
        extract(wtmp / "x.tar.rar", wtmp, compression=None)


# -- tar failures and options ------------------------------------------------------------------


def test_tar_failure_is_fatal_unless_ignored(wtmp: Path) -> None:
    # ./x is a file, so tar cannot create ./x/y: a per-member unpack error (exit 2).
    data = rawtar.archive(rawtar.member(b"./x", b"1"), rawtar.member(b"./x/y", b"2"))
    root = make_root(wtmp / "root")
    with pytest.raises(CommandError, match=r"^command 'tar xpf - .*' failed: exit code 2$"):
        extract(io.BytesIO(data), root, compression=None)
    logs: list[str] = []
    root2 = make_root(wtmp / "root2")
    extract(io.BytesIO(data), root2, compression=None, ignore_unpack_errors=True, log=logs.append)
    assert (root2 / "x").read_text() == "1"
    assert any("Not a directory" in line for line in logs)
    assert any(line.startswith("ignoring unpack errors: command 'tar") for line in logs)


def test_skip_old_files_and_dev_excluded(wtmp: Path) -> None:
    root = make_root(wtmp / "root")
    (root / "keep").write_text("mine")
    data = rawtar.archive(
        rawtar.member(b"./keep", b"theirs"),
        rawtar.directory(b"./dev/"),
        rawtar.member(b"./dev/ptmx", b"x"),
    )
    extract(io.BytesIO(data), root, compression=None)
    assert (root / "keep").read_text() == "mine"
    assert (root / "dev").is_dir() and not (root / "dev/ptmx").exists()


def test_progress_stats_and_stream_sniffing(wtmp: Path, archives: dict[str, Path]) -> None:
    seen: list[int] = []
    size = archives["zstd"].stat().st_size
    with open(archives["zstd"], "rb") as fh:
        stats = extract(fh, make_root(wtmp / "root"), compression=None, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == size
    assert stats.bytes_in == size
    assert stats.bytes_out is not None and stats.bytes_out % 10240 == 0
    assert (wtmp / "root/small").read_text() == "hello\n"


def test_totals_line_counts_the_archive_not_tars_records(
    wtmp: Path, archives: dict[str, Path]
) -> None:
    """tar reads whole 1 MiB records and would count the last one in full; the line gives the
    archive's own length, as Proxmox's does."""
    size = archives["none"].stat().st_size
    assert size % (1 << 20), "a whole number of MiB would prove nothing"
    logs: list[str] = []
    extract(archives["none"], make_root(wtmp / "root"), compression=None, log=logs.append)
    totals = [line for line in logs if line.startswith("Total bytes read: ")]
    assert len(totals) == 1, logs
    assert totals[0].startswith(f"Total bytes read: {size} ({human_size(size)}, "), totals


def test_bandwidth_limit_slows_reading(wtmp: Path, archives: dict[str, Path]) -> None:
    size = archives["zstd"].stat().st_size  # ~3 MiB of random data
    start = time.monotonic()
    extract(archives["zstd"], make_root(wtmp / "root"), compression=None, bwlimit_kib=6144)
    elapsed = time.monotonic() - start
    assert elapsed >= size / (6144 * 1024) - 0.3
