"""``pveam index build|verify`` through the console script, with real gpg."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from index.aplinfo import parse_aplinfo
from shared.errors import ParamError, VerifyError
from shared.http import hash_file
from tests.index.test_catalog import ALPINE, make_template
from tests.pveam.conftest import Pveam, Result
from tests.shared.gpg_keys import TestKeys

DEBIAN_NEW = "debian-12-standard_12.12-1_amd64.tar.zst"
DEBIAN_OLD = "debian-12-standard_12.7-1_amd64.tar.zst"
ALPINE_T = "alpine-3.22-default_20250617_amd64.tar.xz"


def make_catalog_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    make_template(path / DEBIAN_NEW, filler=200_000)
    make_template(path / DEBIAN_OLD)
    make_template(path / ALPINE_T, ALPINE, symlink=True)
    return path


def build(pveam: Pveam, directory: Path, keys: TestKeys, url: str, *extra: str) -> str:
    res = pveam(
        "index", "build", str(directory), "--url", url,
        "--key", keys.fprs["trusted"], "--gnupghome", str(keys.ring.home), *extra,
    )  # fmt: skip
    assert (res.code, res.err) == (0, ""), res
    return res.out


def verify(pveam: Pveam, directory: Path, keys: TestKeys, fpr: str) -> Result:
    return pveam(
        "index", "verify", str(directory), "--key", fpr, "--gnupghome", str(keys.ring.home)
    )


def test_verify_straight_after_build_with_gpgs_own_home(
    pveam: Pveam, gpg_keys: TestKeys, tmp_path: Path
) -> None:
    # the README's order: build, then verify, neither naming a keyring - both use gpg's own
    # home ($GNUPGHOME), which holds the signing key; pveam's keyring does not have it yet
    d = make_catalog_dir(tmp_path / "ct")
    fpr = gpg_keys.fprs["trusted"]
    env = {"GNUPGHOME": str(gpg_keys.ring.home)}
    res = pveam("index", "build", str(d), "--url", "http://h.example.org/ct", "--key", fpr, env=env)
    assert (res.code, res.err) == (0, ""), res
    res = pveam("index", "verify", str(d), "--key", fpr, env=env)
    assert res.code == 0, res
    assert res.out.startswith(f"signature: good, by {fpr}, made ")
    assert res.err == (
        f"note: {fpr} is not in pveam's keyring on this host; clients need "
        "'pveam key add <exported public key>' and a source pinning it\n"
    )


def test_build_then_verify(pveam: Pveam, trusted_ring: TestKeys, tmp_path: Path) -> None:
    d = make_catalog_dir(tmp_path / "ct")
    fpr = trusted_ring.fprs["trusted"]
    out = build(pveam, d, trusted_ring, "http://h.example.org/ct", "-section", "custom")
    assert out == (
        f"added {ALPINE_T} (alpine-3.22.1, amd64)\n"
        f"added {DEBIAN_NEW} (debian-12, amd64)\n"
        f"added {DEBIAN_OLD} (debian-12, amd64)\n"
        f"wrote {d / 'aplinfo.dat'}, aplinfo.dat.gz and aplinfo.dat.asc "
        f"(3 templates, signed by {fpr})\n"
    )
    text = (d / "aplinfo.dat").read_text()
    assert gzip.decompress((d / "aplinfo.dat.gz").read_bytes()).decode() == text
    apps = parse_aplinfo(text, "http://h.example.org/ct", strict=True).appliances
    assert {a.section for a in apps} == {"custom"}
    assert apps[1].fields["sha512sum"] == hash_file(d / DEBIAN_NEW, "sha512")
    home = str(trusted_ring.ring.home)
    res = pveam("index", "verify", str(d), "--key", fpr, "--gnupghome", home)
    assert (res.code, res.err) == (0, "")
    lines = res.out.splitlines()
    assert lines[0].startswith(f"signature: good, by {fpr}, made ")
    assert lines[1:] == [f"{ALPINE_T}: ok", f"{DEBIAN_NEW}: ok", f"{DEBIAN_OLD}: ok"]


def test_verify_detects_a_tampered_template(
    pveam: Pveam, trusted_ring: TestKeys, tmp_path: Path
) -> None:
    d = make_catalog_dir(tmp_path / "ct")
    build(pveam, d, trusted_ring, "http://h.example.org/ct")
    victim = d / DEBIAN_OLD
    expect = hash_file(victim, "sha512")
    victim.write_bytes(victim.read_bytes() + b"\0")
    got = hash_file(victim, "sha512")
    res = verify(pveam, d, trusted_ring, trusted_ring.fprs["trusted"])
    mismatch = f"checksum mismatch: got '{got}' != expect '{expect}'"
    assert res.code == VerifyError.exit_code
    assert f"{DEBIAN_OLD}: {mismatch}\n" in res.out and f"{DEBIAN_NEW}: ok\n" in res.out
    assert res.err == f"verification of '{d / 'aplinfo.dat'}' failed (1 problem)\n"


def test_verify_with_another_key_or_a_changed_index(
    pveam: Pveam, trusted_ring: TestKeys, tmp_path: Path
) -> None:
    d = make_catalog_dir(tmp_path / "ct")
    fpr, other = trusted_ring.fprs["trusted"], trusted_ring.fprs["other"]
    build(pveam, d, trusted_ring, "http://h.example.org/ct")
    res = verify(pveam, d, trusted_ring, other)
    assert res.code == VerifyError.exit_code
    assert res.err.startswith(f"error: signed by key {fpr}, not by {other}\n")
    index = d / "aplinfo.dat"
    index.write_text(index.read_text().replace("Section: system", "Section: mail", 1))
    res = verify(pveam, d, trusted_ring, fpr)
    assert res.code == VerifyError.exit_code
    assert res.err.startswith("error: unable to verify signature - ")
    assert "error: 'aplinfo.dat.gz' does not unpack to 'aplinfo.dat'\n" in res.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--url", "ftp://x", "--key", "AB" * 20), "url: invalid URL 'ftp://x'"),
        (("--url", "http://x", "--key", "12"), "key: invalid fingerprint '12'"),
        (("--key", "AB" * 20), "url: property is missing and it is not optional"),
    ],
    ids=["url", "key", "missing-url"],
)
def test_build_parameter_errors(
    pveam: Pveam, tmp_path: Path, argv: tuple[str, ...], message: str
) -> None:
    d = make_catalog_dir(tmp_path / "ct")
    res = pveam("index", "build", str(d), *argv)
    assert res.code == ParamError.exit_code
    assert message in res.err and res.err.endswith("pveam index build <dir> [OPTIONS]\n")
    assert not (d / "aplinfo.dat").exists()
