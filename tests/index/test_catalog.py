"""``index build`` / ``index verify`` and the streaming os-release reader; a built catalog
round-trips through update, available and download."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest
import zstandard

from index import available, keys, sources
from index.aplinfo import parse_aplinfo
from index.catalog import build_catalog, scan_templates, verify_catalog
from index.download import download_template
from index.lookup import find_template
from index.osrelease import find_os_release, parse_os_release
from index.update import update
from shared.errors import ArchiveError, ParamError
from shared.gpg import GpgError
from shared.http import hash_file
from tests.index.conftest import FAST
from tests.shared.gpg_keys import TestKeys
from tests.shared.http_server import TestServer

DEBIAN = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
    'VERSION_ID="12"\nID=debian\n'
)
ALPINE = "NAME='Alpine Linux'\nID=alpine\nVERSION_ID=3.22.1\nPRETTY_NAME=\"Alpine Linux v3.22\"\n"


def _add(
    tar: tarfile.TarFile, name: str, data: bytes | None = None, link: str | None = None
) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 1_700_000_000
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info)
    elif data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def make_template(
    path: Path,
    os_release: str | None = DEBIAN,
    *,
    symlink: bool = False,
    fallback_first: bool = False,
    filler: int = 0,
) -> Path:
    """A small root file system archive; the compression follows the file name."""
    members: list[tuple[str, bytes | None, str | None]] = [
        ("./", None, None),
        ("./etc/", None, None),
    ]
    lib = [("./usr/", None, None), ("./usr/lib/", None, None)]
    if os_release is not None and symlink:
        lib.append(("./usr/lib/os-release", os_release.encode(), None))
        link = [("./etc/os-release", None, "../usr/lib/os-release")]
        members += (lib + link) if fallback_first else (link + lib)
    elif os_release is not None:
        members.append(("./etc/os-release", os_release.encode(), None))
    members.append(("./bin/filler", os.urandom(filler), None))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data, link in members:
            _add(tar, name, data, link)
    blob = raw.getvalue()
    if path.name.endswith(".zst"):
        blob = zstandard.ZstdCompressor().compress(blob)
    elif path.name.endswith(".gz"):
        blob = gzip.compress(blob)
    elif path.name.endswith(".xz"):
        import lzma

        blob = lzma.compress(blob)
    elif path.name.endswith(".bz2"):
        import bz2

        blob = bz2.compress(blob)
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize("ext", ["tar.zst", "tar.gz", "tar.xz", "tar.bz2", "tar"])
def test_os_release_from_every_compression(tmp_path: Path, ext: str) -> None:
    path = make_template(tmp_path / f"t.{ext}")
    assert find_os_release(path) == DEBIAN


@pytest.mark.parametrize("fallback_first", [False, True])
def test_os_release_symlink_in_either_order(tmp_path: Path, fallback_first: bool) -> None:
    path = make_template(
        tmp_path / "t.tar.zst", ALPINE, symlink=True, fallback_first=fallback_first
    )
    assert parse_os_release(find_os_release(path) or "")["VERSION_ID"] == "3.22.1"


def test_reading_stops_at_os_release(tmp_path: Path) -> None:
    # The archive is cut short after os-release: reading further would fail.
    path = make_template(tmp_path / "t.tar.gz", filler=2 << 20)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert find_os_release(path) == DEBIAN
    nothing = make_template(tmp_path / "n.tar.gz", None, filler=2 << 20)
    nothing.write_bytes(nothing.read_bytes()[: nothing.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="unable to read template archive"):
        find_os_release(nothing)
    assert find_os_release(make_template(tmp_path / "e.tar", None)) is None


def test_parse_os_release_quoting() -> None:
    assert parse_os_release(DEBIAN)["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert parse_os_release(ALPINE)["NAME"] == "Alpine Linux"
    assert parse_os_release("# c\nBROKEN='x\nID=ok\n") == {"ID": "ok"}


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    d = tmp_path / "catalog"
    d.mkdir()
    make_template(d / "debian-12-standard_12.12-1_amd64.tar.zst", filler=300_000)
    make_template(d / "debian-12-standard_12.7-1_amd64.tar.zst")
    make_template(d / "alpine-3.22-default_20250617_amd64.tar.xz", ALPINE, symlink=True)
    (d / ".hidden_1_amd64.tar.gz").write_bytes(b"x")
    (d / "notes.txt").write_text("x")
    (d / "sub_1_amd64.tar.gz").mkdir()
    return d


def test_build_writes_a_signed_catalog(catalog_dir: Path, gpg_keys: TestKeys, ctroot: Path) -> None:
    fpr = gpg_keys.fprs["trusted"]
    result = build_catalog(
        catalog_dir, base_url="http://h/ct/", key=fpr, gnupghome=gpg_keys.ring.home
    )
    text = result.index.read_text()
    assert gzip.decompress(result.gz.read_bytes()).decode() == text
    assert result.signature.read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    assert gpg_keys.ring.verify_detached(result.index, result.signature).fingerprint == fpr
    apps = parse_aplinfo(text, "http://h/ct", strict=True).appliances
    assert [a.template for a in apps] == [p.name for p in scan_templates(catalog_dir)]
    alpine, deb_new, _ = apps
    assert (alpine.os, alpine.package, alpine.version) == (
        "alpine-3.22.1",
        "alpine-3.22-default",
        "20250617",
    )
    assert (deb_new.os, deb_new.architecture, deb_new.section) == ("debian-12", "amd64", "system")
    assert deb_new.location == deb_new.template  # relative
    assert deb_new.url == f"http://h/ct/{deb_new.template}"
    assert deb_new.fields["sha512sum"] == hash_file(catalog_dir / deb_new.template, "sha512")
    assert (
        deb_new.headline == "Debian GNU/Linux 12 (bookworm) container template (debian-12-standard)"
    )
    assert deb_new.fields["infopage"] == "http://h/ct/"
    assert not [p for p in catalog_dir.iterdir() if p.name.endswith(".new")]


def test_build_refuses_bad_input(catalog_dir: Path, gpg_keys: TestKeys, ctroot: Path) -> None:
    fpr = gpg_keys.fprs["trusted"]
    with pytest.raises(ParamError):
        build_catalog(catalog_dir, base_url="ftp://x", key=fpr, gnupghome=gpg_keys.ring.home)
    with pytest.raises(ParamError):
        build_catalog(catalog_dir, base_url="http://x", key="12", gnupghome=gpg_keys.ring.home)
    with pytest.raises(GpgError):  # the key is not in that home: nothing is published
        build_catalog(catalog_dir, base_url="http://x", key="AB" * 20, gnupghome=gpg_keys.ring.home)
    assert (
        not (catalog_dir / "aplinfo.dat").exists()
        and not (catalog_dir / "aplinfo.dat.asc").exists()
    )
    make_template(catalog_dir / "oddname.tar.gz")
    with pytest.raises(ArchiveError, match="cannot derive package"):
        build_catalog(catalog_dir, base_url="http://x", key=fpr, gnupghome=gpg_keys.ring.home)
    (catalog_dir / "oddname.tar.gz").unlink()
    make_template(catalog_dir / "bare_1_amd64.tar", None)
    with pytest.raises(ArchiveError, match="no etc/os-release"):
        build_catalog(catalog_dir, base_url="http://x", key=fpr, gnupghome=gpg_keys.ring.home)


def test_verify(catalog_dir: Path, trusted_ring: TestKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    fpr = trusted_ring.fprs["trusted"]
    # one rule for build and verify: the GnuPG home given, else gpg's own ($GNUPGHOME)
    monkeypatch.setenv("GNUPGHOME", str(trusted_ring.ring.home))
    build_catalog(catalog_dir, base_url="http://h", key=fpr)
    report = verify_catalog(catalog_dir, key=fpr)
    assert report.ok and report.fingerprint == fpr and report.in_pveam_keyring
    assert verify_catalog(catalog_dir, key=fpr, gnupghome=trusted_ring.ring.home).ok
    assert [s for _, s in report.templates] == ["ok"] * 3
    wrong = verify_catalog(catalog_dir, key=trusted_ring.fprs["other"])
    assert wrong.problems == [f"signed by key {fpr}, not by {trusted_ring.fprs['other']}"]
    victim = catalog_dir / "debian-12-standard_12.7-1_amd64.tar.zst"
    victim.write_bytes(victim.read_bytes() + b"\0")
    (catalog_dir / "alpine-3.22-default_20250617_amd64.tar.xz").unlink()
    report = verify_catalog(catalog_dir, key=fpr)
    assert not report.ok
    assert report.problems[0] == "alpine-3.22-default_20250617_amd64.tar.xz: missing"
    assert report.problems[1].startswith(f"{victim.name}: checksum mismatch: got '")
    index = catalog_dir / "aplinfo.dat"
    index.write_text(index.read_text().replace("Type: lxc", "Type: lxc ", 1))
    report = verify_catalog(catalog_dir, key=fpr)
    assert report.problems[0].startswith("unable to verify signature - signature bad")
    assert "'aplinfo.dat.gz' does not unpack to 'aplinfo.dat'" in report.problems


def test_built_catalog_round_trips(
    catalog_dir: Path, trusted_ring: TestKeys, srv: TestServer, tmp_path: Path
) -> None:
    fpr = trusted_ring.fprs["trusted"]
    srv.directory = catalog_dir
    build_catalog(catalog_dir, base_url=srv.url("/"), key=fpr, gnupghome=trusted_ring.ring.home)
    sources.add_source(sources.make_source("local", srv.url("/"), "aplinfo.dat", fpr))
    for name in ("proxmox", "turnkey"):  # tests never reach out to the internet
        sources.remove_source(name)
    result = update(retry=FAST)
    assert result.ok and [(s.name, s.status) for s in result.sources] == [("local", "ok")]
    assert keys.list_keys()  # pveam's keyring did the checking
    listed = [a.template for a in available.available("system")]
    assert listed == [p.name for p in scan_templates(catalog_dir)]
    choice = find_template(available.load(), "debian-12-standard", arch="amd64")
    assert choice.appliance.template == "debian-12-standard_12.12-1_amd64.tar.zst"
    got = download_template(choice.appliance, tmp_path / "cache", log=lambda _: None, retry=FAST)
    assert got.downloaded and got.path.read_bytes() == (catalog_dir / got.path.name).read_bytes()
