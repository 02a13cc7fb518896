"""``pveam source add|list|remove`` through the console script."""

from __future__ import annotations

import json
from pathlib import Path

from index import sources, store
from shared import paths
from shared.errors import AlreadyExistsError, NotFoundError, ParamError
from tests.pveam.conftest import Pveam, store_index
from tests.shared.gpg_keys import TestKeys

FPR = "AB" * 20


def test_add_list_remove(pveam: Pveam, gpg_keys: TestKeys) -> None:
    trusted = gpg_keys.fprs["trusted"]
    assert pveam("key", "add", str(gpg_keys.public["trusted"])).code == 0
    res = pveam(
        "source", "add", "mine", "https://templates.example.org/ct/",
        "-index", "catalog.dat",
        "--fingerprints", f"{trusted.lower()},{FPR}",
        "-mirrors", "http://m1.example.org/ct,http://m2.example.org/ct",
        "--enabled", "0",
    )  # fmt: skip
    assert (res.code, res.out, res.err) == (0, "", "")
    (mine,) = [s for s in sources.load_sources() if s.name == "mine"]
    assert mine == sources.Source(
        "mine",
        "https://templates.example.org/ct",
        "catalog.dat",
        (trusted, FPR),
        ("http://m1.example.org/ct", "http://m2.example.org/ct"),
        enabled=False,
    )
    # the defaults were written out beside it
    assert [s.name for s in sources.load_sources()] == ["proxmox", "turnkey", "mine"]
    text = pveam("source", "list").out
    assert text.endswith(
        "mine (disabled)\n"
        "  url:          https://templates.example.org/ct\n"
        "  mirror:       http://m1.example.org/ct\n"
        "  mirror:       http://m2.example.org/ct\n"
        "  index:        catalog.dat\n"
        f"  fingerprints: {trusted} (in keyring)\n"
        f"                {FPR} (not in keyring)\n"
        "  stored:       no index yet (run 'pveam update')\n"
    )
    data = json.loads(pveam("source", "list", "--output-format", "json").out)
    assert [d["name"] for d in data] == ["proxmox", "turnkey", "mine"]
    assert data[2]["enabled"] is False and data[2]["fingerprints"] == [trusted, FPR]
    assert data[2]["stored"] is False
    store_index("mine", "stored\n")
    assert json.loads(pveam("source", "list", "--output-format", "json").out)[2]["stored"]
    res = pveam("source", "remove", "mine")
    assert (res.code, res.out, res.err) == (0, "", "")
    assert not store.index_path("mine").exists()
    assert [s.name for s in sources.load_sources()] == ["proxmox", "turnkey"]


def test_add_refusals(pveam: Pveam, no_sources: Path) -> None:
    res = pveam("source", "add", "x", "http://a.example.org", "--index", "a.dat")
    assert res.code == ParamError.exit_code
    assert "fingerprints: property is missing and it is not optional" in res.err
    res = pveam("source", "add", "../x", "ftp://a", "--index", "a.dat.gz", "--fingerprints", "12,")
    assert res.code == ParamError.exit_code
    lines = res.err.splitlines()
    assert lines[:2] == ["", "400 Parameter verification failed."]
    assert [ln.split(":")[0] for ln in lines[2:6]] == ["name", "url", "index", "fingerprints"]
    assert lines[6] == "pveam source add <name> <url> [OPTIONS]"
    assert paths.sources_cfg().read_text() == ""
    argv = (
        "source",
        "add",
        "s1",
        "http://a.example.org",
        "--index",
        "a.dat",
        "--fingerprints",
        FPR,
    )
    res = pveam(*argv)
    assert res.code == 0
    assert res.err.startswith("note: none of the pinned keys is in the keyring yet")
    res = pveam(*argv)
    assert (res.code, res.err) == (AlreadyExistsError.exit_code, "source 's1' already exists\n")
    res = pveam("source", "remove", "nope")
    assert (res.code, res.err) == (NotFoundError.exit_code, "source 'nope' does not exist\n")


def test_add_with_transfer_limits(pveam: Pveam, no_sources: Path) -> None:
    res = pveam(
        "source", "add", "slow", "http://198.18.0.1/ct", "--index", "aplinfo.dat",
        "--fingerprints", FPR, "--read-timeout", "5", "-retries", "1", "--max-size", "2G",
    )  # fmt: skip
    assert res.code == 0, res
    (src,) = sources.load_sources()
    assert src.transfer == sources.Transfer(read_timeout=5.0, retries=1, max_size=2 << 30)
    text = paths.sources_cfg().read_text()
    assert "\tread-timeout 5\n\tretries 1\n\tmax-size 2G\n" in text
    listed = pveam("source", "list").out
    assert (
        "  limits:       connect-timeout 10, read-timeout 5, retries 1, max-size 2G, "
        "max-index-size 64M\n"
    ) in listed
    data = json.loads(pveam("source", "list", "--output-format", "json").out)
    assert (data[0]["read-timeout"], data[0]["retries"]) == (5.0, 1)
    res = pveam(
        "source", "add", "bad", "http://198.18.0.1/x", "--index", "aplinfo.dat",
        "--fingerprints", FPR, "--retries", "-3", "--read-timeout", "never",
    )  # fmt: skip
    assert res.code == ParamError.exit_code
    assert "retries: value must have a minimum value of 0\n" in res.err
    assert "read-timeout: type check ('number') failed - got 'never'\n" in res.err
    assert [s.name for s in sources.load_sources()] == ["slow"]
