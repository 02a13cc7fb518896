"""Verifying real backups: good ones pass in every compression, each kind of damage is found
with the member or offset named, and the result is kept beside the archive for ``list``."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from shared.archive.tarformat import BLOCK
from shared.backups.sidecar import sidecar_path
from shared.storage.api import remove_backup
from tests.vzdump.engine.conftest import Host, logfile, vzdump

from .conftest import Made, make_backup

pytestmark = pytest.mark.lxc


@pytest.mark.parametrize("compress", ["zstd", "gzip", "lzo", "0"])
def test_good_backup_verifies_and_list_shows_it(host: Host, compress: str) -> None:
    made = make_backup(host, compress=compress)
    res = vzdump("verify", made.volid, "--output-format", "json")
    assert res.rc == 0, res.err
    (result,) = json.loads(res.out)
    assert result["state"] == "ok" and result["config"] is True and result["members"] > 10
    assert result["logged_tar_bytes"] == result["tar_bytes"]
    side = json.loads(sidecar_path(made.archive).read_text())
    assert side["verify"]["state"] == "ok"
    (row,) = json.loads(vzdump("list", "local", "--output-format", "json").out)
    assert row["verification"]["state"] == "ok" and row["verification"]["kind"] == "verify"


def _fails(made: Made, *needles: str) -> str:
    res = vzdump("verify", made.volid)
    assert res.rc == 7, res.err
    assert len(res.lines) == 1 and all(n in res.err for n in needles), res.err
    side = json.loads(sidecar_path(made.archive).read_text())
    assert side["verify"]["state"] == "failed" and side["verify"]["error"] in res.err
    (row,) = json.loads(vzdump("list", "local", "--output-format", "json").out)
    assert row["verification"]["state"] == "failed"
    return res.err


def test_truncated_zstd_archive(host: Host) -> None:
    made = make_backup(host)
    size = made.archive.stat().st_size
    os.truncate(made.archive, size - 1000)
    _fails(made, "unexpected end of archive", "archive offset")


def test_flipped_bytes_in_a_zstd_frame(host: Host) -> None:
    made = make_backup(host)
    data = bytearray(made.archive.read_bytes())
    mid = len(data) // 2
    for i in range(mid, mid + 16):
        data[i] ^= 0xFF
    made.archive.write_bytes(bytes(data))
    _fails(made, "zstd", "archive offset")


def test_flipped_bytes_in_a_gzip_archive(host: Host) -> None:
    made = make_backup(host, compress="gzip")
    data = bytearray(made.archive.read_bytes())
    data[len(data) // 2] ^= 0x55
    made.archive.write_bytes(bytes(data))
    _fails(made, "archive offset")


def test_cut_tar_header_names_the_offset(host: Host) -> None:
    made = make_backup(host, compress="0")
    data = bytearray(made.archive.read_bytes())
    offset = data.find(b"srv/kinds/regular.txt")
    offset -= offset % BLOCK
    data[offset + 100 : offset + 108] = b"garbage!"  # the mode field: checksum mismatch
    made.archive.write_bytes(bytes(data))
    err = _fails(made, f"invalid tar header at offset {offset}")
    assert "after member" in err


def test_tar_cut_short_is_flagged(host: Host) -> None:
    made = make_backup(host, compress="0")
    os.truncate(made.archive, made.archive.stat().st_size // 2 // BLOCK * BLOCK)
    _fails(made, "unexpected end of archive")


def test_size_differs_from_the_backup_log(host: Host) -> None:
    made = make_backup(host)
    log = logfile(made.archive)
    text = log.read_text()
    logged = int(re.findall(r"Total bytes written: ([0-9]+)", text)[-1])
    log.write_text(
        text.replace(f"Total bytes written: {logged}", f"Total bytes written: {logged + 10240}")
    )
    _fails(made, f"the backup log recorded {logged + 10240}")


def test_sidecar_removed_with_the_backup(host: Host) -> None:
    made = make_backup(host)
    assert vzdump("verify", made.volid).rc == 0
    assert sidecar_path(made.archive).exists()
    remove_backup(made.volid)
    assert not sidecar_path(made.archive).exists()


def test_not_a_vzdump_archive(ctroot: Path) -> None:
    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True)
    (ctroot / "t").mkdir()
    name = "vzdump-lxc-100-2020_01_01-00_00_00.tar.zst"
    subprocess.run(
        ["tar", "--zstd", "-cf", str(dump / name), "-C", str(ctroot / "t"), "."], check=True
    )
    res = vzdump("verify", f"local:backup/{name}")
    assert res.rc == 7 and "no container config" in res.err


@pytest.mark.parametrize("kind", ["firewall only", "symlink", "directory"])
def test_an_archive_without_a_container_config_fails(ctroot: Path, kind: str) -> None:
    """Only a ``pct.fw``, or ``pct.conf`` as a symlink or a directory: verify said ok, and no
    restore takes it ('archive contains no configuration file')."""
    tree = ctroot / "tree"
    (tree / "etc/vzdump").mkdir(parents=True)
    (tree / "etc/vzdump/pct.fw").write_text("[OPTIONS]\nenable: 1\n")
    conf = tree / "etc/vzdump/pct.conf"
    if kind == "symlink":
        conf.symlink_to("/etc/hostname")
    elif kind == "directory":
        conf.mkdir()
    (tree / "hello").write_text("x")
    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True)
    name = "vzdump-lxc-100-2020_01_01-00_00_00.tar.zst"
    subprocess.run(["tar", "--zstd", "-cf", str(dump / name), "-C", str(tree), "."], check=True)
    res = vzdump("verify", f"local:backup/{name}")
    assert res.rc == 7 and "no container config member" in res.err, res.err


def test_verify_a_whole_storage_goes_on_after_a_failure(host: Host) -> None:
    bad = make_backup(host)
    good = make_backup(host)
    os.truncate(bad.archive, bad.archive.stat().st_size // 2)
    res = vzdump("verify", "--storage", "local", "--output-format", "json")
    assert res.rc == 7 and "1 of 2 backups failed verification" in res.err
    states = {r["volid"]: r["state"] for r in json.loads(res.out)}
    assert states == {bad.volid: "failed", good.volid: "ok"}
    res = vzdump("verify", "--storage", "local", "--vmid", str(good.ct.vmid))
    assert res.rc == 0 and good.volid in res.out.decode()
    assert vzdump("verify").rc == 2


def _with_config(ctroot: Path, conf: bytes) -> str:
    """A vzdump-named tar.zst with ``conf`` as its pct.conf and one more member."""
    tree = ctroot / "tree"
    (tree / "etc/vzdump").mkdir(parents=True)
    (tree / "etc/vzdump/pct.conf").write_bytes(conf)
    (tree / "hello").write_text("x")
    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True)
    name = "vzdump-lxc-100-2020_01_01-00_00_00.tar.zst"
    subprocess.run(["tar", "--zstd", "-cf", str(dump / name), "-C", str(tree),
                    "./etc/vzdump/pct.conf", "./hello"], check=True)  # fmt: skip
    return f"local:backup/{name}"


def test_config_from_a_newer_proxmox_still_verifies(ctroot: Path) -> None:
    volid = _with_config(ctroot, b"arch: amd64\nrootfs: local:100/x.raw,size=1G\nfuture: 1\n")
    res = vzdump("verify", volid, "--output-format", "json")
    assert res.rc == 0, res.err
    (row,) = json.loads(res.out)
    assert any("future" in w for w in row["warnings"])


@pytest.mark.parametrize(
    ("conf", "needle"),
    [(b"arch: amd64\n\x00garbage line\n", "does not parse"), (b"arch: amd64\n", "no rootfs")],
)
def test_broken_config_member_fails(ctroot: Path, conf: bytes, needle: str) -> None:
    res = vzdump("verify", _with_config(ctroot, conf))
    assert res.rc == 7 and needle in res.err, res.err


def test_a_listed_backup_that_cannot_be_opened_fails_alone(ctroot: Path) -> None:
    """verify --storage stopped at the first backup it could not locate (a symlink named like
    an archive), with that error's exit code, and never checked the others."""
    good = _with_config(ctroot, b"arch: amd64\nrootfs: local:100/vm-100-disk-0.raw,size=1G\n")
    dump = ctroot / "var/lib/vz/dump"
    (dump / "vzdump-lxc-100-2020_01_01-00_00_01.tar.zst").symlink_to(
        dump / "vzdump-lxc-100-2020_01_01-00_00_00.tar.zst"
    )
    res = vzdump("verify", "--storage", "local", "--output-format", "json")
    assert res.rc == 7 and "1 of 2 backups failed verification" in res.err, res.err
    states = {r["volid"]: r["state"] for r in json.loads(res.out)}
    assert states[good] == "ok" and sorted(states.values()) == ["failed", "ok"]


def test_file_names_reach_the_terminal_escaped(ctroot: Path) -> None:
    """A storage's file names are anyone's who writes there: an escape sequence in one was
    printed raw by vzdump list and verify."""
    _with_config(ctroot, b"arch: amd64\nrootfs: local:100/vm-100-disk-0.raw,size=1G\n")
    dump = ctroot / "var/lib/vz/dump"
    odd = "vzdump-lxc-100-2020_01_02-00_00_00\x1b]0;owned\x07.tar.zst"
    os.link(dump / "vzdump-lxc-100-2020_01_01-00_00_00.tar.zst", dump / odd)
    for args in (("list", "local"), ("verify", "--storage", "local")):
        res = vzdump(*args)
        assert "\x1b" not in res.out.decode() + res.err and "\\x1b]0;owned" in res.out.decode()


def test_a_backup_that_restore_would_refuse_fails_verification(ctroot: Path) -> None:
    """verify passed archives that extract and restore refuse (a member out of the tree, one
    written through a symlink): a backup no restore accepts is no good backup."""
    tree = ctroot / "tree"
    (tree / "etc/vzdump").mkdir(parents=True)
    (tree / "etc/vzdump/pct.conf").write_bytes(b"arch: amd64\nrootfs: local:100/x.raw,size=1G\n")
    (tree / "srv").mkdir()
    (tree / "srv/escape").symlink_to("/tmp")
    (tree / "srv/escape.d").mkdir()
    (tree / "srv/escape.d/owned").write_text("x")
    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True)
    name = "vzdump-lxc-100-2020_01_01-00_00_00.tar.zst"
    subprocess.run(["tar", "--zstd", "-cf", str(dump / name), "-C", str(tree),
                    "--transform", "s,^\\./srv/escape\\.d,./srv/escape,",
                    "./etc/vzdump/pct.conf", "./srv/escape", "./srv/escape.d"],
                   check=True)  # fmt: skip
    res = vzdump("verify", f"local:backup/{name}")
    assert res.rc == 7 and "unsafe archive member" in res.err, res.err


def test_the_containers_own_pct_conf_in_the_tree_is_data(ctroot: Path) -> None:
    """A container's own /etc/vzdump/pct.conf (any text) comes again inside the tree: verify
    failed the backup on it, and a --verify job skipped its retention, while every restore
    reads the first member as the config."""
    tree = ctroot / "tree"
    (tree / "etc/vzdump").mkdir(parents=True)
    (tree / "etc/vzdump/pct.conf").write_bytes(b"arch: amd64\nrootfs: local:100/x.raw,size=1G\n")
    own = ctroot / "own"
    (own / "etc/vzdump").mkdir(parents=True)
    (own / "etc/vzdump/pct.conf").write_text("my app notes\n")
    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True)
    name = "vzdump-lxc-100-2020_01_01-00_00_00.tar"
    subprocess.run(["tar", "-cf", str(dump / name), "-C", str(tree), "./etc/vzdump/pct.conf"],
                   check=True)  # fmt: skip
    subprocess.run(["tar", "-rf", str(dump / name), "-C", str(own), "./etc"], check=True)
    res = vzdump("verify", f"local:backup/{name}")
    assert res.rc == 0, res.err


@pytest.mark.parametrize("comment", [2 << 20, 16 << 20])
def test_a_large_config_is_judged_as_the_restore_judges_it(ctroot: Path, comment: int) -> None:
    """verify took a config over 1 MiB (a long description) for none at all, 'not a vzdump
    archive', while restore and extractconfig read it (their bound is 16 MiB)."""
    base = b"arch: amd64\nrootfs: local:100/vm-100-disk-0.raw,size=1G\n"
    res = vzdump("verify", _with_config(ctroot, b"#" + b"x" * comment + b"\n" + base))
    if comment < 16 << 20:
        assert res.rc == 0, res.err
    else:
        assert res.rc == 7 and "config member './etc/vzdump/pct.conf' is too large" in res.err
