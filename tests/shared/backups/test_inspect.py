"""List, extractconfig and browse on real backups (vzdump's ``list``/``extractconfig``/
``browse`` commands, run as the real console script)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.vzdump.engine.conftest import vzdump

from .conftest import SPARSE_SIZE, Made, made

__all__ = ["made"]

pytestmark = pytest.mark.lxc


def test_list_shows_backups_notes_protection(made: Made) -> None:
    made.archive.with_name(made.archive.name + ".notes").write_text("first line\nsecond\n")
    res = vzdump("list", "local", "--output-format", "json")
    assert res.rc == 0, res.err
    rows = json.loads(res.out)
    assert [r["volid"] for r in rows] == [made.volid]
    row = rows[0]
    assert row["vmid"] == made.ct.vmid and row["format"] == "tar.zst"
    assert row["size"] == made.archive.stat().st_size and row["protected"] == 0
    assert "verification" not in row
    text = vzdump("list", "local").out.decode()
    assert made.volid in text and "first line" in text and "second" not in text
    other = vzdump("list", "local", "--vmid", str(made.ct.vmid + 1), "--output-format", "json")
    assert json.loads(other.out) == []


def test_extractconfig_prints_the_backed_up_config(made: Made) -> None:
    res = vzdump("extractconfig", made.volid)
    assert res.rc == 0, res.err
    text = res.out.decode()
    assert "rootfs: " in text and f"hostname: ct{made.ct.vmid % 1000}" in text


def test_browse_lists_members_with_owner_and_types(made: Made) -> None:
    res = vzdump("browse", made.volid, "/srv/kinds", "--output-format", "json")
    assert res.rc == 0, res.err
    entries = {e["path"]: e for e in json.loads(res.out)}
    assert entries["/srv/kinds/regular.txt"]["type"] == "file"
    assert entries["/srv/kinds/sparse.img"]["size"] == SPARSE_SIZE
    assert entries["/srv/kinds/link"] == entries["/srv/kinds/link"] | {
        "type": "symlink",
        "target": "regular.txt",
    }
    assert entries["/srv/kinds/hard"]["type"] == "hardlink"
    assert entries["/srv/kinds/sub/deep.txt"]["uid"] == 33
    assert entries["/srv/kinds/sub"]["type"] == "dir"
    assert all(p.startswith("/srv/kinds") for p in entries)
    text = vzdump("browse", made.volid, "srv/kinds/sub").out.decode()
    assert "/srv/kinds/sub/deep.txt" in text and "regular.txt" not in text


@pytest.mark.parametrize("cut", [4, 1000])
def test_browse_of_an_archive_cut_at_its_end_fails(made: Made, cut: int) -> None:
    """Cut by its zstd checksum alone (4 bytes), every member is still there: browse listed
    them all and exited 0, where verify fails the archive. It lists what it read, then says
    the archive is damaged, with verify's exit code for a bad archive."""
    whole = vzdump("browse", made.volid)
    assert whole.rc == 0 and whole.err == "", whole.err
    os.truncate(made.archive, made.archive.stat().st_size - cut)
    res = vzdump("browse", made.volid)
    assert res.rc == 10 and len(res.lines) == 1, res.err
    assert "Traceback" not in res.err and "archive" in res.err
    if cut == 4:
        assert res.out == whole.out  # every member listed before the error


@pytest.mark.parametrize(
    ("volid", "rc", "message"),
    [
        ("local:backup/vzdump-lxc-900000001-2020_01_01-00_00_00.tar.zst", 3, "can't find file"),
        ("local:vztmpl/debian.tar.zst", 9, "content type needs to be 'backup'"),
        ("nosuch:backup/vzdump-lxc-100-2020_01_01-00_00_00.tar", 3, "does not exist"),
        ("/etc/passwd", 9, "unable to parse volume ID"),
    ],
)
def test_bad_volume_ids(ctroot: object, volid: str, rc: int, message: str) -> None:
    res = vzdump("extractconfig", volid)
    assert res.rc == rc and message in res.err and len(res.lines) <= 2, res.err


def test_not_a_vzdump_archive(ctroot: Path) -> None:
    """A tar named like a backup but without a config: one line, ArchiveError, no full read."""
    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True)
    tree = ctroot / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hosts").write_text("x\n")
    name = "vzdump-lxc-100-2020_01_01-00_00_00.tar"
    subprocess.run(["tar", "-cf", str(dump / name), "-C", str(tree), "."], check=True)
    res = vzdump("extractconfig", f"local:backup/{name}")
    assert res.rc == 10 and "not a vzdump archive" in res.err and len(res.lines) == 1, res.err
    assert res.out == b""


def test_symlinked_archive_is_refused(ctroot: Path) -> None:
    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True)
    name = "vzdump-lxc-100-2020_01_01-00_00_00.tar"
    (dump / name).symlink_to("/etc/passwd")
    res = vzdump("browse", f"local:backup/{name}")
    assert res.rc == 10 and "not a regular file" in res.err and res.out == b""


def _crafted(ctroot: Path, pax: dict[str, str], name: str = "./srv/f") -> str:
    """A vzdump-named archive with a config and one member carrying ``pax`` records."""
    import io
    import tarfile

    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True, exist_ok=True)
    archive = "vzdump-lxc-100-2020_01_01-00_00_00.tar"
    conf = b"arch: amd64\nrootfs: local:100/vm-100-disk-0.raw,size=1G\n"
    with tarfile.open(dump / archive, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("./etc/vzdump/pct.conf")
        info.size = len(conf)
        tar.addfile(info, io.BytesIO(conf))
        info = tarfile.TarInfo(name)
        info.size, info.pax_headers = 2, pax
        tar.addfile(info, io.BytesIO(b"ok"))
    return f"local:backup/{archive}"


@pytest.mark.parametrize("mtime", ["nan", "inf", "-inf", "1e300", "99999999999999999999"])
def test_an_archive_time_no_calendar_holds_is_listed(ctroot: Path, mtime: str) -> None:
    """browse ended in a ValueError or OverflowError traceback (exit 1) on these times."""
    volid = _crafted(ctroot, {"mtime": mtime})
    for fmt in ("text", "json"):
        res = vzdump("browse", volid, "--output-format", fmt)
        assert res.rc == 0 and "Traceback" not in res.err, res.err
        assert b"/srv/f" in res.out


@pytest.mark.parametrize("key", ["size", "uid", "GNU.sparse.realsize"])
def test_a_pax_number_of_thousands_of_digits_is_an_archive_error(ctroot: Path, key: str) -> None:
    """int() refuses 4300 digits and more: browse, verify, extractconfig and restore ended in
    a ValueError traceback with exit 1."""
    volid = _crafted(ctroot, {key: "9" * 5000})
    res = vzdump("browse", volid, "--output-format", "json")
    assert "Traceback" not in res.err, res.err
    if key == "GNU.sparse.realsize":  # only a listed size: the stored one is shown
        assert res.rc == 0 and json.loads(res.out)[-1]["size"] == 2
        return
    assert res.rc == 10 and f"invalid pax '{key}'" in res.err, res.err
    res = vzdump("verify", volid)
    assert res.rc == 7 and "Traceback" not in res.err, res.err


def test_extractconfig_escapes_control_characters_for_a_terminal_only(ctroot: Path) -> None:
    """A backup's config printed its escape sequences raw to the terminal (retitling it, or
    worse); redirected, the config is still written byte for byte."""
    from tests.terminal import open_pty, read_all
    from tests.vzdump.engine.conftest import BIN

    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True)
    tree = ctroot / "tree"
    (tree / "etc/vzdump").mkdir(parents=True)
    conf = b"arch: amd64\nhostname: e\x1b[31mred\x1b]0;pwned\x07\nrootfs: local:100/x.raw\n"
    (tree / "etc/vzdump/pct.conf").write_bytes(conf)
    name = "vzdump-lxc-100-2020_01_01-00_00_00.tar"
    subprocess.run(["tar", "-cf", str(dump / name), "-C", str(tree), "./etc/vzdump/pct.conf"],
                   check=True)  # fmt: skip
    volid = f"local:backup/{name}"
    assert vzdump("extractconfig", volid).out == conf
    master, slave = open_pty()
    proc = subprocess.Popen([str(BIN / "vzdump"), "extractconfig", volid], stdout=slave)
    os.close(slave)
    shown = read_all(master)
    os.close(master)
    assert proc.wait() == 0
    assert "\x1b" not in shown and "\x07" not in shown
    assert "hostname: e\\x1b[31mred\\x1b]0;pwned\\x07" in shown
    assert shown.replace("\r\n", "\n").endswith("rootfs: local:100/x.raw\n")
