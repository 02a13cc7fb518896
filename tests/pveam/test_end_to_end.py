"""A catalog published with ``pveam index build`` and consumed by another pveam: key add →
source add → update → available → download (by prefix) → list → remove, all through the CLI,
plus the proxy for index and template."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from shared.errors import VerifyError
from tests.pveam.commands.test_catalog import (
    ALPINE_T,
    DEBIAN_NEW,
    DEBIAN_OLD,
    build,
    make_catalog_dir,
)
from tests.pveam.conftest import Pveam, Result, template_cache
from tests.shared.gpg_keys import TestKeys
from tests.shared.http_server import ForwardProxy, TestServer


@pytest.fixture
def published(pveam: Pveam, srv: TestServer, gpg_keys: TestKeys, tmp_path: Path) -> Path:
    """``<tmp>/www/ct`` built with ``index build`` and served at ``/ct``."""
    www = tmp_path / "www"
    catalog = make_catalog_dir(www / "ct")
    build(pveam, catalog, gpg_keys, srv.url("/ct"))
    srv.directory = www
    return catalog


def ok(res: Result, err: str = "") -> str:
    assert (res.code, res.err) == (0, err), res
    return res.out


def note(fpr: str) -> str:
    hint = "name it with 'pveam source add ... --fingerprints <fpr>'"
    return f"note: no source pins {fpr} yet; {hint}\n"


def test_catalog_round_trip(
    pveam: Pveam, srv: TestServer, gpg_keys: TestKeys, published: Path
) -> None:
    fpr = gpg_keys.fprs["trusted"]
    ok(pveam("key", "add", str(gpg_keys.public["trusted"])), note(fpr))
    ok(pveam("source", "remove", "proxmox"))
    ok(pveam("source", "remove", "turnkey"))
    ok(
        pveam(
            "source", "add", "cat", srv.url("/ct"), "--index", "aplinfo.dat", "-fingerprints", fpr
        )
    )
    assert ok(pveam("update")) == "update successful\n"
    rows = {ln.split()[0]: ln.split()[1:3] for ln in ok(pveam("key", "list")).splitlines()}
    assert rows[fpr] == ["2020-01-01", "cat"]  # beside the shipped release keys
    assert [ln.split() for ln in ok(pveam("av")).splitlines()] == [
        ["system", ALPINE_T, "amd64"],
        ["system", DEBIAN_NEW, "amd64"],
        ["system", DEBIAN_OLD, "amd64"],
    ]
    dest = template_cache() / DEBIAN_NEW
    url = srv.url(f"/ct/{DEBIAN_NEW}")
    assert ok(pveam("download", "local", "debian-12-standard")) == (
        f"using '{DEBIAN_NEW}', the newest template matching 'debian-12-standard' (source 'cat')\n"
        f"downloading {url} to {dest}\n"
        "calculating checksum...OK, checksum verified\n"
        f"download of '{url}' to '{dest}' finished\n"
    )
    assert dest.read_bytes() == (published / DEBIAN_NEW).read_bytes()
    size = dest.stat().st_size / 1048576
    assert ok(pveam("list", "local")).splitlines()[1:] == [
        f"{'local:vztmpl/' + DEBIAN_NEW:<60} {size:.2f}MB"
    ]
    assert ok(pveam("remove", f"local:vztmpl/{DEBIAN_NEW}")) == ""
    assert ok(pveam("list", "local")).splitlines()[1:] == []
    source = ok(pveam("source", "list"))
    assert f"fingerprints: {fpr} (in keyring)" in source and f"UTC by {fpr}, updated" in source


def test_a_template_changed_after_publishing_is_refused(
    pveam: Pveam, srv: TestServer, gpg_keys: TestKeys, published: Path, no_sources: Path
) -> None:
    fpr = gpg_keys.fprs["trusted"]
    ok(pveam("key", "add", str(gpg_keys.public["trusted"])), note(fpr))
    ok(
        pveam(
            "source", "add", "cat", srv.url("/ct"), "--index", "aplinfo.dat", "-fingerprints", fpr
        )
    )
    ok(pveam("update"))
    victim = published / DEBIAN_OLD
    expect = hashlib.sha512(victim.read_bytes()).hexdigest()
    victim.write_bytes(victim.read_bytes() + b"evil")
    assert pveam("index", "verify", str(published), "--key", fpr).code == VerifyError.exit_code
    res = pveam("download", "local", DEBIAN_OLD)
    got = hashlib.sha512(victim.read_bytes()).hexdigest()
    assert res.code == VerifyError.exit_code
    assert res.err == f"checksum mismatch: got '{got}' != expect '{expect}'\n"
    assert not (template_cache() / DEBIAN_OLD).exists()


def test_proxy_for_index_and_template(
    pveam: Pveam, srv: TestServer, gpg_keys: TestKeys, published: Path, no_sources: Path
) -> None:
    fpr = gpg_keys.fprs["trusted"]
    ok(pveam("key", "add", str(gpg_keys.public["trusted"])), note(fpr))
    ok(
        pveam(
            "source", "add", "cat", srv.url("/ct"), "--index", "aplinfo.dat", "-fingerprints", fpr
        )
    )
    with ForwardProxy() as proxy:
        env = {"http_proxy": proxy.url, "https_proxy": proxy.url}
        assert ok(pveam("update", env=env)) == "update successful\n"
        ok(pveam("download", "local", ALPINE_T, env=env))
    assert proxy.seen == [
        ("GET", srv.url("/ct/aplinfo.dat.asc")),
        ("GET", srv.url("/ct/aplinfo.dat.gz")),
        ("GET", srv.url(f"/ct/{ALPINE_T}")),
    ]
    assert (template_cache() / ALPINE_T).read_bytes() == (published / ALPINE_T).read_bytes()
