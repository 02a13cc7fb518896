"""``update`` against a real HTTP server and real gpg (acceptance tests 11-19 and ctkit's
additions: per-source pinning, replay protection, conditional GET, retries, mirrors)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from index import sources, store
from index.sources import Source
from index.update import UpdateResult, update
from index.updatelog import UpdateLog
from shared import paths
from tests.index.conftest import FAST, Publisher, index_text, stanza
from tests.shared.http_server import ForwardProxy, TestServer, make_self_signed

GOOD = index_text(stanza("alpha"), stanza("beta", section="mail"))
OLD = "previous index\n"


def run(*srcs: Source) -> UpdateResult:
    return update(list(srcs), retry=FAST)


def log_text() -> str:
    return paths.pveam_log().read_text()


def leftovers() -> list[str]:
    return sorted(p.name for p in paths.aplinfo_dir().iterdir() if "tmp" in p.name)


def keep_previous(name: str) -> Path:
    paths.aplinfo_dir().mkdir(parents=True, exist_ok=True)
    path = store.index_path(name)
    path.write_text(OLD)
    return path


def assert_failed_and_kept(result: UpdateResult, path: Path, log_fragment: str) -> None:
    assert not result.ok
    assert result.message == f"update failed - see {paths.pveam_log()} for details"
    assert result.sources[0].status == "failed"
    assert path.read_text() == OLD
    assert log_fragment in log_text()
    assert leftovers() == []


def test_valid_update_stores_uncompressed_data(publisher: Publisher) -> None:  # test 11
    raw = publisher.publish("/a", GOOD)
    src = publisher.source("a", "/a")
    result = run(src)
    assert result.ok and result.message == "update successful"
    (res,) = result.sources
    assert (res.status, res.templates) == ("ok", 2)
    assert res.fingerprint == publisher.keys.fprs["trusted"]
    assert store.index_path("a").read_bytes() == raw
    assert store.signature_path("a").read_bytes() == publisher.srv.routes["/a/aplinfo.dat.asc"].data
    assert store.read_state("a").sig_timestamp == res.sig_timestamp
    assert leftovers() == []
    lines = log_text().splitlines()
    assert [re.sub(r"^\S+ \S+ ", "", ln) for ln in lines if "download" in ln][:4] == [
        f"start download {src.url}/aplinfo.dat.asc",
        "download finished: 200 OK",
        f"start download {src.url}/aplinfo.dat.gz",
        "download finished: 200 OK",
    ]
    assert lines[-1].endswith(" update successful") and "starting update" in lines[0]


def test_signature_by_unknown_key(publisher: Publisher) -> None:  # test 12
    publisher.publish("/a", GOOD, signer="stranger")
    path = keep_previous("a")
    result = run(publisher.source("a", "/a"))
    assert_failed_and_kept(result, path, "unable to verify signature - no public key")


def test_data_modified_after_signing(publisher: Publisher) -> None:  # test 13
    publisher.publish("/a", GOOD, tamper=True)
    path = keep_previous("a")
    result = run(publisher.source("a", "/a"))
    assert_failed_and_kept(result, path, "unable to verify signature - signature bad")


def test_trusted_but_unpinned_key_is_rejected(publisher: Publisher) -> None:
    publisher.publish("/a", GOOD, signer="other")  # "other" is in the keyring, not pinned
    path = keep_previous("a")
    result = run(publisher.source("a", "/a"))
    other = publisher.keys.fprs["other"]
    assert_failed_and_kept(
        result, path, f"signed by key {other}, which is not pinned for source 'a'"
    )
    # The same key is fine for a source that pins it.
    assert run(publisher.source("a", "/a", fingerprints=(other,))).ok


def test_missing_signature(publisher: Publisher) -> None:  # test 14
    publisher.publish("/a", GOOD)
    del publisher.srv.routes["/a/aplinfo.dat.asc"]
    path = keep_previous("a")
    result = run(publisher.source("a", "/a"))
    assert_failed_and_kept(result, path, "download failed: 404 Not Found")
    assert "update failed - no signature file '" in log_text()
    assert publisher.srv.requests_for("/a/aplinfo.dat.gz") == []


def test_invalid_gzip(publisher: Publisher) -> None:  # test 15
    publisher.publish("/a", GOOD, bad_gzip=True)
    path = keep_previous("a")
    result = run(publisher.source("a", "/a"))
    assert_failed_and_kept(result, path, "update failed: unable to unpack '")


def test_an_index_that_trickles_is_given_up_at_the_fetch_deadline(
    publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index sent just fast enough never stalls: it held the update and its lock for hours
    (14 at 1.3 KiB/s for a 64 MiB index). Each file now has FETCH_DEADLINE (1 s here)."""
    monkeypatch.setattr("index.update.FETCH_DEADLINE", 1.0)
    raw = publisher.publish("/a", GOOD, gz=False)
    publisher.srv.add("/a/aplinfo.dat", raw + b"x" * 20_000, drip=0.0001)  # 2 s at least
    path = keep_previous("a")
    started = time.monotonic()
    result = run(publisher.source("a", "/a"))
    assert time.monotonic() - started < 4
    assert_failed_and_kept(result, path, "transfer too slow: not done by its deadline")


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_a_link_planted_at_the_temp_name_is_never_written_through(
    publisher: Publisher, tmp_path: Path, link: str
) -> None:
    """The unpacked index was written to the process's temp name through whatever was there:
    a planted symlink or hard link had a host file overwritten with the unverified index."""
    publisher.publish("/a", GOOD)
    victim = tmp_path / "victim"
    victim.write_text("host file\n")
    tmp = paths.aplinfo_dir() / f"pveam-a.tmp.{os.getpid()}"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.symlink_to(victim) if link == "symlink" else os.link(victim, tmp)
    result = run(publisher.source("a", "/a"))
    assert result.ok, result.message
    assert victim.read_text() == "host file\n"
    assert leftovers() == []


def test_malformed_record_rejects_the_index(publisher: Publisher) -> None:  # test 16
    publisher.publish("/a", GOOD + "\n" + stanza("gamma").replace("Type: lxc", "Type: qemu"))
    path = keep_previous("a")
    result = run(publisher.source("a", "/a"))
    assert_failed_and_kept(
        result, path, "update failed: unable to parse appliance record: unknown type 'qemu'"
    )
    assert result.sources[0].error is not None and "unknown type" in result.sources[0].error


def test_one_source_fails_the_other_succeeds(publisher: Publisher) -> None:  # test 17
    raw = publisher.publish("/good", GOOD)
    publisher.publish("/bad", GOOD, signer="stranger")
    bad_path = keep_previous("bad")
    result = run(publisher.source("bad", "/bad"), publisher.source("good", "/good"))
    assert not result.ok
    assert [s.status for s in result.sources] == ["failed", "ok"]
    assert store.index_path("good").read_bytes() == raw
    assert bad_path.read_text() == OLD


def test_log_format_and_rotation(publisher: Publisher) -> None:  # test 18
    publisher.publish("/a", GOOD)
    log = paths.pveam_log()
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("x" * (256 * 1024 + 1))
    run(publisher.source("a", "/a"))
    assert Path(str(log) + ".0").stat().st_size == 256 * 1024 + 1
    lines = log.read_text().splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S", ln) for ln in lines)
    size = log.stat().st_size
    run(publisher.source("a", "/a"))  # small log: appended, not rotated
    assert log.stat().st_size > size
    with UpdateLog(log) as ul:
        ul.write("two\nlines\n")
    assert re.search(r"\d\d:\d\d:\d\d two\n\S+ \S+ lines\n$", log.read_text())


def test_proxy_used_for_http_and_https_index(publisher: Publisher, tmp_path: Path) -> None:  # 19
    tls = make_self_signed(tmp_path)
    env = pytest.MonkeyPatch()
    try:
        env.setenv("REQUESTS_CA_BUNDLE", str(tls.cert))
        with TestServer(tls.context) as secure, ForwardProxy() as proxy:
            publisher.publish("/a", GOOD)
            for path, route in list(publisher.srv.routes.items()):
                secure.routes[path] = route
            env.setenv("http_proxy", proxy.url)
            env.setenv("https_proxy", proxy.url)
            plain_src = publisher.source("plain", "/a")
            tls_src = Source("tls", secure.url("/a"), "aplinfo.dat", plain_src.fingerprints)
            result = run(plain_src, tls_src)
            assert result.ok, result.sources
            assert ("GET", f"{plain_src.url}/aplinfo.dat.asc") in proxy.seen
            assert ("GET", f"{plain_src.url}/aplinfo.dat.gz") in proxy.seen
            assert ("CONNECT", secure.base_url.removeprefix("https://")) in proxy.seen
    finally:
        env.undo()


def test_replay_of_an_older_index_is_refused(publisher: Publisher) -> None:
    now = int(time.time())
    newer = publisher.publish("/a", GOOD, when=now - 100)
    assert run(publisher.source("a", "/a")).ok
    publisher.publish("/a", stanza("old-only"), when=now - 100_000)
    result = run(publisher.source("a", "/a"))
    assert not result.ok
    assert "older than the stored index" in (result.sources[0].error or "")
    assert "refusing a possible replay" in log_text()
    assert store.index_path("a").read_bytes() == newer
    assert store.read_state("a").sig_timestamp == now - 100
    # A newer signature is accepted again.
    fresh = publisher.publish("/a", stanza("fresh"), when=now - 10)
    assert run(publisher.source("a", "/a")).ok
    assert store.index_path("a").read_bytes() == fresh


def test_an_index_signed_in_the_future_is_refused_and_never_becomes_the_floor(
    publisher: Publisher,
) -> None:
    # kept, its time would be the replay floor: every honestly signed index refused until then
    now = int(time.time())
    publisher.publish("/a", GOOD, when=now + 5 * 365 * 86400)
    result = run(publisher.source("a", "/a"))
    assert not result.ok
    assert "in the future" in (result.sources[0].error or "")
    assert not store.index_path("a").exists()
    # a floor stored in the future before this check existed holds nothing back either
    store.write_state("a", store.SourceState(sig_timestamp=now + 5 * 365 * 86400))
    fresh = publisher.publish("/a", stanza("fresh"), when=now - 10)
    assert run(publisher.source("a", "/a")).ok
    assert store.index_path("a").read_bytes() == fresh
    assert "the stored index was signed in the future" in log_text()


def test_conditional_get_skips_an_unchanged_index(publisher: Publisher) -> None:
    publisher.publish("/a", GOOD)
    src = publisher.source("a", "/a")
    assert run(src).sources[0].status == "ok"
    result = run(src)
    assert result.ok and result.sources[0].status == "unchanged"
    sig_requests = publisher.srv.requests_for("/a/aplinfo.dat.asc")
    assert len(sig_requests) == 2 and "if-none-match" in sig_requests[1].headers
    assert len(publisher.srv.requests_for("/a/aplinfo.dat.gz")) == 1
    # Without the stored index the validators are not sent: the index is fetched again.
    store.index_path("a").unlink()
    assert run(src).sources[0].status == "ok"
    assert "if-none-match" not in publisher.srv.requests_for("/a/aplinfo.dat.asc")[2].headers


def test_transient_errors_are_retried(publisher: Publisher) -> None:
    publisher.publish("/a", GOOD)
    publisher.srv.routes["/a/aplinfo.dat.gz"].fail_first = 2
    result = run(publisher.source("a", "/a"))
    assert result.ok
    assert len(publisher.srv.requests_for("/a/aplinfo.dat.gz")) == 3
    assert "download failed: 503 Service Unavailable - retrying in" in log_text()


def test_mirror_used_when_the_main_url_fails(publisher: Publisher) -> None:
    raw = publisher.publish("/mirror", GOOD)
    publisher.srv.add("/main/aplinfo.dat.asc", status=500)
    src = publisher.source("a", "/main", mirrors=(publisher.srv.url("/mirror"),))
    result = run(src)
    assert result.ok and result.sources[0].base_url == publisher.srv.url("/mirror")
    assert store.index_path("a").read_bytes() == raw
    assert f"trying mirror {publisher.srv.url('/mirror')}" in log_text()
    # Templates with relative Locations are also offered on the mirror.
    from index.available import load

    app = load([src]).all["alpha_1.0-1_amd64.tar.zst"]
    assert app.urls[1] == publisher.srv.url("/mirror/system/alpha_1.0-1_amd64.tar.zst")


def test_plain_index_when_there_is_no_gz(publisher: Publisher) -> None:
    raw = publisher.publish("/a", GOOD, gz=False, plain=True)
    assert run(publisher.source("a", "/a")).ok
    assert store.index_path("a").read_bytes() == raw
    assert "download failed: 404 Not Found" in log_text()


def test_empty_signed_index_empties_the_source(publisher: Publisher) -> None:
    publisher.publish("/a", "")
    keep_previous("a")
    assert run(publisher.source("a", "/a")).ok
    assert store.index_path("a").read_bytes() == b""


def test_sources_come_from_the_config(publisher: Publisher) -> None:
    publisher.publish("/a", GOOD)
    fpr = publisher.keys.fprs["trusted"]
    paths.pveam_etc().mkdir(parents=True, exist_ok=True)
    paths.sources_cfg().write_text(
        f"source: a\n\turl {publisher.srv.url('/a')}\n\tindex aplinfo.dat\n\tfingerprints {fpr}\n\n"
        f"source: off\n\turl {publisher.srv.url('/off')}\n\tindex aplinfo.dat\n"
        f"\tfingerprints {fpr}\n\tenabled 0\n"
    )
    result = update(retry=FAST)
    assert result.ok and [s.name for s in result.sources] == ["a"]
    assert publisher.srv.requests_for("/off/aplinfo.dat.asc") == []
    assert [s.enabled for s in sources.load_sources() if s.name == "off"] == [False]


def test_unreachable_server_fails_cleanly(ctroot: Path, no_proxy_env: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # bound, never listening: refused, and nobody else's port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        src = Source("gone", f"http://127.0.0.1:{port}/x", "aplinfo.dat", ("AB" * 20,))
        result = run(src)
    assert not result.ok and result.sources[0].status == "failed"
    assert "download failed: Connection refused" in log_text()
    assert leftovers() == []
    assert os.listdir(paths.aplinfo_dir()) == [".update.lock"]
