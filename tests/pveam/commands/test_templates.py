"""``pveam list`` and ``pveam remove`` through the console script (acceptance tests 32-36)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from shared.errors import NotFoundError, StorageError
from tests.pveam.conftest import PVEAM, Pveam, template_cache, write_storage_cfg

HEADER = "NAME" + " " * 56 + " SIZE  \n"


@pytest.fixture
def cache(pveam: Pveam) -> Path:
    """local's template directory with the files of acceptance test 32."""
    d = template_cache()
    d.mkdir(parents=True)
    (d / "B.tar.gz").write_bytes(b"b" * 1000)
    (d / "a.tar.zst").write_bytes(b"")
    for name in ("c.tgz", "d.tar.xz.part", ".hidden.tar.gz", "f.tar.zst.tmp_dwnl"):
        (d / name).write_bytes(b"x")
    (d / "e.tar.gz").mkdir()
    return d


def test_listing(pveam: Pveam, cache: Path) -> None:  # test 32
    res = pveam("list", "local")
    assert (res.code, res.err) == (0, "")
    assert res.out == (
        HEADER
        + f"{'local:vztmpl/a.tar.zst':<60} 0.00MB\n"
        + f"{'local:vztmpl/B.tar.gz':<60} 0.00MB\n"
    )


def test_sizes_and_long_names(pveam: Pveam, cache: Path) -> None:  # test 33
    long = "x" * 60 + ".tar.xz"
    with open(cache / long, "wb") as fh:
        fh.truncate(230637158)  # sparse: the size is what counts
    with open(cache / "big.tar", "wb") as fh:
        fh.truncate(5 << 30)
    lines = pveam("list", "local").out.splitlines()
    assert lines[3] == f"{'local:vztmpl/big.tar':<60} 5120.00MB"
    assert lines[4] == f"local:vztmpl/{long} 219.95MB"  # longer than 60: exactly one space


def test_control_characters_in_a_name_are_shown_escaped(pveam: Pveam, cache: Path) -> None:
    (cache / "x\x1b]0;owned\x07y.tar.gz").write_bytes(b"x")
    out = pveam("list", "local").out
    assert "local:vztmpl/x\\x1b]0;owned\\x07y.tar.gz" in out
    assert "\x1b" not in out and "\x07" not in out


def test_a_name_that_is_not_utf8_is_listed_as_its_bytes(pveam: Pveam, cache: Path) -> None:
    """A template whose name is not UTF-8 (a Latin-1 e-acute): listed as the bytes it is, as
    ls writes it into a pipe. Under a strict UTF-8 stdout (en_US.UTF-8) the listing ended with
    a traceback."""
    with open(os.fsencode(cache) + b"/caf\xe9.tar.zst", "wb"):
        pass
    env = pveam.env({"PYTHONIOENCODING": "utf-8:strict"})
    proc = subprocess.run([str(PVEAM), "list", "local"], env=env, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert b"local:vztmpl/caf\xe9.tar.zst" in proc.stdout


def test_json(pveam: Pveam, cache: Path) -> None:
    rows = json.loads(pveam("list", "local", "--output-format", "json").out)
    assert [(r["volid"], r["size"], r["format"]) for r in rows] == [
        ("local:vztmpl/a.tar.zst", 0, "tzst"),
        ("local:vztmpl/B.tar.gz", 1000, "tgz"),
    ]


def test_empty_and_failing_listings(pveam: Pveam) -> None:  # tests 33, 34
    write_storage_cfg(
        "dir: local\n\tpath /var/lib/vz\n\tcontent vztmpl\n\n"
        "dir: novz\n\tpath /srv/novz\n\tcontent backup\n"
    )
    assert pveam("list", "local").out == HEADER
    res = pveam("list", "x1")
    assert (res.code, res.out, res.err) == (
        NotFoundError.exit_code,
        "",
        "storage 'x1' does not exist\n",
    )
    res = pveam("list", "novz")
    assert (res.code, res.err) == (StorageError.exit_code, "Storage does not support templates!\n")


def test_remove(pveam: Pveam, cache: Path) -> None:  # test 35
    res = pveam("remove", "local:vztmpl/a.tar.zst")
    assert (res.code, res.out, res.err) == (0, "", "")
    assert not (cache / "a.tar.zst").exists() and (cache / "B.tar.gz").exists()
    res = pveam("remove", "local:vztmpl/a.tar.zst")
    assert (res.code, res.out) == (NotFoundError.exit_code, "")
    assert res.err == "can't find file 'local:vztmpl/a.tar.zst'\n"


def test_two_removes_of_one_template_at_once(pveam: Pveam, cache: Path) -> None:
    """Both see the file; the one that unlinks second ended with a FileNotFoundError
    traceback. strace holds the first in its unlink() (after its check) while the second
    removes the template."""
    volid = "local:vztmpl/a.tar.zst"
    argv = [
        "strace",
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=unlink,unlinkat",
        "-e",
        "inject=unlink,unlinkat:delay_enter=3000000",
        str(PVEAM),
        "remove",
        volid,
    ]
    first = subprocess.Popen(argv, env=pveam.env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_in_unlink(first.pid)
        assert pveam("remove", volid).code == 0
        out, err = first.communicate(timeout=60)
    finally:
        first.kill()
        first.wait()
    assert (first.returncode, out, err) == (
        NotFoundError.exit_code, "", f"can't find file '{volid}'\n"
    )  # fmt: skip
    assert not (cache / "a.tar.zst").exists()


def _wait_in_unlink(tracer: int) -> None:
    """Until the child of ``tracer`` (strace) is stopped entering unlink or unlinkat."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{tracer}/task/{tracer}/children").read_text().split()
        for pid in children:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/syscall").read_text().split()[0] in ("87", "263"):
                    return
        time.sleep(0.01)
    raise AssertionError("pveam remove never reached its unlink")


def test_remove_rejects_other_volumes_and_paths(  # test 36
    pveam: Pveam, cache: Path, tmp_path: Path
) -> None:
    res = pveam("remove", "local:iso/x.iso")
    assert res.code == StorageError.exit_code
    assert res.err == "unable to use volume local:iso/x.iso - content type needs to be 'vztmpl'\n"
    res = pveam("remove", "local:vztmpl/x.zip")
    assert res.err == "unable to parse directory volume name 'vztmpl/x.zip'\n"
    assert res.code == StorageError.exit_code
    res = pveam("remove", "local:vztmpl/../../etc/passwd.tar")
    assert res.code != 0
    # longer than a file name can be (in bytes, not characters): refused, not a traceback
    long = "é" * 200 + ".tar.gz"
    res = pveam("remove", f"local:vztmpl/{long}")
    assert res.code == StorageError.exit_code
    assert res.err == f"unable to parse directory volume name 'vztmpl/{long}'\n"
    # a path is never deleted: first a scratch file, and only if it survived the host's file
    victim = tmp_path / "victim.tar.gz"
    victim.write_text("keep me\n")
    res = pveam("remove", str(victim))
    assert res.code == StorageError.exit_code
    assert res.err.startswith(f"unable to parse volume ID '{victim}'\nhint: give a volume ID")
    assert victim.read_text() == "keep me\n"
    before = os.stat("/etc/hostname")
    res = pveam("remove", "/etc/hostname")
    assert (res.code, res.out) == (StorageError.exit_code, "")
    assert os.stat("/etc/hostname").st_ino == before.st_ino
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == [
        "B.tar.gz",
        "a.tar.zst",
        "c.tgz",
        "d.tar.xz.part",
        "e.tar.gz",
        "f.tar.zst.tmp_dwnl",
    ]
