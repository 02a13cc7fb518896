"""sources.cfg: defaults, add/list/remove with validation, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from index import sources, store
from index.sources import DEFAULT_SOURCES, SourceError, make_source
from shared import paths
from shared.errors import AlreadyExistsError, ConfigError, NotFoundError

FPR = "AB" * 20
GOLDEN = Path(__file__).parent / "golden"


def test_defaults_without_a_file(ctroot: Path) -> None:
    assert not paths.sources_cfg().exists()
    got = sources.load_sources()
    assert got == list(DEFAULT_SOURCES)
    proxmox, turnkey = got
    assert (proxmox.name, proxmox.url, proxmox.index) == (
        "proxmox",
        "http://download.proxmox.com/images",
        "aplinfo-pve-9.dat",
    )
    assert proxmox.fingerprints == (
        "F4E136C67CDCE41AE6DE6FC81140AF8F639E0C39",
        "24B30F06ECC1836A4E5EFECBA7BCD1420BFE778E",
    )
    assert turnkey.fingerprints == ("694CFF26795A29BAE07B4EB585C25E95A16EB94D",)
    assert turnkey.url == "https://releases.turnkeylinux.org/pve" and turnkey.enabled


def test_add_writes_defaults_and_new_source(ctroot: Path) -> None:
    src = make_source(
        "mine",
        "https://example.org/ct/",
        "aplinfo.dat",
        f"{FPR.lower()}, {'CD' * 20}",
        mirrors="http://m1.example.org/ct,http://m2.example.org/ct",
    )
    sources.add_source(src)
    assert paths.sources_cfg().read_text() == (GOLDEN / "sources.cfg").read_text()
    *_, mine = sources.load_sources()
    assert [s.name for s in sources.load_sources()] == ["proxmox", "turnkey", "mine"]
    assert mine.url == "https://example.org/ct" and mine.fingerprints == (FPR, "CD" * 20)
    assert mine.bases == (
        "https://example.org/ct",
        "http://m1.example.org/ct",
        "http://m2.example.org/ct",
    )
    with pytest.raises(AlreadyExistsError, match=r"^source 'mine' already exists$"):
        sources.add_source(src)
    assert not [p for p in paths.pveam_etc().iterdir() if p.name != "sources.cfg"]


def test_file_as_in_the_issue_parses(ctroot: Path) -> None:
    paths.pveam_etc().mkdir(parents=True)
    paths.sources_cfg().write_text(
        "source: proxmox\n"
        "\turl http://download.proxmox.com/images\n"
        "\tindex aplinfo-pve-9.dat\n"
        "\tfingerprints F4E136C67CDCE41AE6DE6FC81140AF8F639E0C39,"
        "24B30F06ECC1836A4E5EFECBA7BCD1420BFE778E\n"
        "\n"
        "source: off\n"
        "\turl http://x.example.org\n"
        "\tindex aplinfo.dat\n"
        f"\tfingerprints {FPR}\n"
        "\tenabled 0\n"
    )
    got = sources.load_sources()
    assert got[0] == DEFAULT_SOURCES[0]
    assert [s.name for s in sources.enabled_sources()] == ["proxmox"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-bad", "http://x", "a.dat", FPR), "invalid source name '-bad'"),
        (("a/b", "http://x", "a.dat", FPR), "invalid source name 'a/b'"),
        (("ok", "ftp://x", "a.dat", FPR), "invalid URL 'ftp://x'"),
        (("ok", "http://", "a.dat", FPR), "invalid URL 'http://'"),
        (("ok", "http://127.0.0.1:99999", "a.dat", FPR), "invalid URL 'http://127.0.0.1:99999'"),
        (("ok", "http://[::1/x", "a.dat", FPR), "invalid URL 'http://[::1/x'"),
        (("ok", "http://h:0/x", "a.dat", FPR), "invalid URL 'http://h:0/x'"),
        (("ok", "http://x", "../a.dat", FPR), "invalid index file name '../a.dat'"),
        (("ok", "http://x", "a.dat.gz", FPR), "invalid index file name 'a.dat.gz'"),
        (("ok", "http://x", "a.dat", "1234"), "invalid fingerprint '1234'"),
        (("ok", "http://x", "a.dat", ""), "at least one fingerprint is required"),
    ],
)
def test_validation_messages(ctroot: Path, args: tuple[str, ...], message: str) -> None:
    with pytest.raises(SourceError) as exc:
        make_source(*args)
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
    with pytest.raises(SourceError, match="invalid URL 'nope'"):
        make_source("ok", "http://x", "a.dat", FPR, mirrors=["nope"])


def test_remove_source_and_its_stored_index(ctroot: Path) -> None:
    paths.aplinfo_dir().mkdir(parents=True)
    for path in (store.index_path("turnkey"), store.signature_path("turnkey")):
        path.write_text("x")
    store.write_state("turnkey", store.SourceState(sig_timestamp=1, fingerprint=FPR))
    summary = store.stored_summary("turnkey")
    assert summary["stored"] and (summary["sig_timestamp"], summary["fingerprint"]) == (1, FPR)
    removed = sources.remove_source("turnkey")
    assert removed.name == "turnkey"
    assert [s.name for s in sources.load_sources()] == ["proxmox"]
    assert list(paths.aplinfo_dir().iterdir()) == []
    with pytest.raises(NotFoundError, match=r"^source 'turnkey' does not exist$"):
        sources.remove_source("turnkey")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("source: a\n\turl http://x\n\tindex a.dat\n", "missing value for required option"),
        ("source: a\n\turl gopher://x\n\tindex a.dat\n\tfingerprints " + FPR + "\n", "invalid URL"),
        (
            "source: a\n\turl http://x\n\tindex a.dat\n\tfingerprints " + FPR + "\n\tcolour red\n",
            "colour",
        ),
        ("remote: a\n\turl http://x\n", "unknown type"),
    ],
)
def test_bad_config_file_is_one_clear_error(ctroot: Path, text: str, message: str) -> None:
    paths.pveam_etc().mkdir(parents=True)
    paths.sources_cfg().write_text(text)
    with pytest.raises(ConfigError) as exc:
        sources.load_sources()
    assert str(paths.sources_cfg()) in str(exc.value) and message in str(exc.value)


def test_unreadable_state_counts_as_none(ctroot: Path) -> None:
    paths.aplinfo_dir().mkdir(parents=True)
    store.state_path("a").write_text("{not json")
    assert store.read_state("a") == store.SourceState()
    store.state_path("a").write_text('{"sig_timestamp": 5, "unknown": 1}')
    assert store.read_state("a").sig_timestamp == 5
    assert store.stored_summary("a")["stored"] is False


def test_transfer_limits_per_source(ctroot: Path) -> None:
    paths.sources_cfg().parent.mkdir(parents=True, exist_ok=True)
    paths.sources_cfg().write_text(
        "source: slow\n\turl http://198.18.0.1/ct\n\tindex aplinfo.dat\n"
        f"\tfingerprints {FPR}\n\tconnect-timeout 2\n\tread-timeout 0.5\n\tretries 0\n"
        "\tmax-size 2G\n\tmax-index-size 1M\n\n"
        f"source: plain\n\turl http://198.18.0.1/x\n\tindex aplinfo.dat\n\tfingerprints {FPR}\n"
    )
    slow, plain = sources.load_sources()
    assert slow.transfer == sources.Transfer(2.0, 0.5, 0, 2 << 30, 1 << 20)
    assert slow.transfer.timeout == (2.0, 0.5)
    http = slow.transfer.downloader()
    assert (http.timeout, http.retry.retries) == ((2.0, 0.5), 0)
    # the defaults give up on a stalled server within about a minute
    default = plain.transfer
    assert default == sources.Transfer()
    worst = (default.retries + 1) * default.read_timeout + sum(
        http.retry.delay(n) for n in range(default.retries)
    )
    assert worst <= 60 and default.max_size == 16 << 30 and default.max_index_size == 64 << 20
    # written back unchanged; defaults are not spelled out
    sources.add_source(make_source("c", "http://198.18.0.1/c", "aplinfo.dat", FPR))
    text = paths.sources_cfg().read_text()
    assert "\tread-timeout 0.5\n" in text and "\tmax-size 2G\n" in text
    assert text.count("timeout") == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [("retries -1", "minimum"), ("read-timeout soon", "number"), ("max-size lots", "size")],
)
def test_transfer_limits_are_validated(ctroot: Path, line: str, message: str) -> None:
    paths.sources_cfg().parent.mkdir(parents=True, exist_ok=True)
    paths.sources_cfg().write_text(
        f"source: a\n\turl http://198.18.0.1/a\n\tindex aplinfo.dat\n\tfingerprints {FPR}\n"
        f"\t{line}\n"
    )
    with pytest.raises(ConfigError, match=message):
        sources.load_sources()
