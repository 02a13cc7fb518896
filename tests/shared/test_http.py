"""shared.http against a real HTTP server (and proxy) on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.http import (
    Downloader,
    HttpError,
    RetryPolicy,
    Validators,
    hash_file,
)
from shared.httpclient import USER_AGENT, Client
from tests.shared.http_server import ForwardProxy, TestServer, make_self_signed

DATA = os.urandom(3 * (1 << 20) + 12345)
SHA = hashlib.sha512(DATA).hexdigest()


@pytest.fixture
def srv() -> Iterator[TestServer]:
    with TestServer() as server:
        yield server


def fast(retries: int = 3, **kw: object) -> Downloader:
    sleeps: list[float] = []
    dl = Downloader(retry=RetryPolicy(retries=retries, backoff=0.01), sleep=sleeps.append, **kw)  # type: ignore[arg-type]
    dl.sleeps = sleeps  # type: ignore[attr-defined]
    return dl


def sha512() -> hashlib._Hash:
    return hashlib.sha512()


def test_plain_fetch_headers_and_digest(srv: TestServer, tmp_path: Path, no_proxy_env) -> None:
    srv.add("/f", DATA)
    seen: list[tuple[int, int | None]] = []
    res = fast().fetch(
        srv.url("/f"),
        tmp_path / "f",
        hasher_factory=sha512,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert (tmp_path / "f").read_bytes() == DATA
    assert res.status_line == "200 OK" and res.size == len(DATA) and res.digest == SHA
    assert res.validators.etag and res.validators.last_modified
    req = srv.requests_for("/f")[0]
    assert req.headers["user-agent"] == USER_AGENT and USER_AGENT.startswith("ctkit/")
    assert req.headers["accept-encoding"] == "identity" and req.headers["accept"] == "*/*"
    assert seen[-1] == (len(DATA), len(DATA))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_404_is_not_retried(srv: TestServer, tmp_path: Path, no_proxy_env) -> None:
    dl = fast()
    with pytest.raises(HttpError) as exc:
        dl.fetch(srv.url("/missing"), tmp_path / "x")
    assert exc.value.status == 404 and exc.value.status_line == "404 Not Found"
    assert not exc.value.transient
    assert len(srv.requests_for("/missing")) == 1


def test_5xx_retried_with_backoff(srv: TestServer, tmp_path: Path, no_proxy_env) -> None:
    srv.add("/f", DATA, fail_first=2)
    retried: list[str] = []
    dl = fast(on_retry=lambda url, err, delay: retried.append(err.status_line))
    res = dl.fetch(srv.url("/f"), tmp_path / "f", hasher_factory=sha512)
    assert res.digest == SHA
    assert retried == ["503 Service Unavailable"] * 2
    assert dl.sleeps == [0.01, 0.02]  # type: ignore[attr-defined]
    assert len(srv.requests_for("/f")) == 3


def test_5xx_gives_up_after_the_retries(srv: TestServer, tmp_path: Path, no_proxy_env) -> None:
    srv.add("/f", DATA, status=502)
    with pytest.raises(HttpError, match="502 Bad Gateway") as exc:
        fast(retries=2).fetch(srv.url("/f"), tmp_path / "f")
    assert exc.value.transient
    assert len(srv.requests_for("/f")) == 3


def test_connection_refused_is_transient(tmp_path: Path, no_proxy_env) -> None:
    with socket.socket() as sock:  # bound, never listening: refused, and nobody else's port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        dl = fast(retries=1)
        with pytest.raises(HttpError, match="Connection refused") as exc:
            dl.fetch(f"http://127.0.0.1:{port}/x", tmp_path / "x")
    assert exc.value.status_line == "Connection refused"  # no quote of the repr around it
    assert exc.value.transient and exc.value.status is None
    assert dl.sleeps == [0.01]  # type: ignore[attr-defined]


def test_conditional_get(srv: TestServer, tmp_path: Path, no_proxy_env) -> None:
    srv.add("/f", b"payload")
    dest = tmp_path / "f"
    first = fast().fetch(srv.url("/f"), dest)
    dest.write_bytes(b"local copy")
    again = fast().fetch(srv.url("/f"), dest, validators=first.validators)
    assert again.not_modified and again.status == 304
    assert dest.read_bytes() == b"local copy"
    sent = srv.requests_for("/f")[1].headers
    assert sent["if-none-match"] == first.validators.etag
    assert sent["if-modified-since"] == first.validators.last_modified
    assert Validators().headers() == {} and not Validators()


def test_range_resume_of_an_existing_partial_file(srv: TestServer, tmp_path: Path, no_proxy_env):
    srv.add("/f", DATA)
    dest = tmp_path / "f"
    dest.write_bytes(DATA[:1_000_000])
    res = fast().fetch(srv.url("/f"), dest, resume=True, hasher_factory=sha512)
    assert res.status == 206 and res.resumed_from == 1_000_000
    assert dest.read_bytes() == DATA and res.digest == SHA
    assert srv.requests_for("/f")[0].headers["range"] == "bytes=1000000-"


@pytest.mark.parametrize("how", ["ignore_range", "bad_content_range"])
def test_range_not_honoured_restarts_from_zero(
    srv: TestServer, tmp_path: Path, how: str, no_proxy_env
) -> None:
    srv.add("/f", DATA, **{how: True})
    dest = tmp_path / "f"
    dest.write_bytes(b"x" * 5000)  # not even a prefix of DATA: must be discarded
    res = fast().fetch(srv.url("/f"), dest, resume=True, hasher_factory=sha512)
    assert res.resumed_from == 0
    assert dest.read_bytes() == DATA and res.digest == SHA


def test_range_not_satisfiable_restarts(srv: TestServer, tmp_path: Path, no_proxy_env) -> None:
    srv.add("/f", b"short")
    dest = tmp_path / "f"
    dest.write_bytes(b"a much longer stale partial file")
    res = fast().fetch(srv.url("/f"), dest, resume=True)
    assert dest.read_bytes() == b"short" and res.status == 200
    assert [r.headers.get("range") for r in srv.requests_for("/f")] == ["bytes=32-", None]


def test_dropped_connection_resumes_within_the_call(srv: TestServer, tmp_path: Path, no_proxy_env):
    srv.add("/f", DATA, drop_after=1_500_000)
    dest = tmp_path / "f"
    res = fast().fetch(srv.url("/f"), dest, resume=True, hasher_factory=sha512)
    assert dest.read_bytes() == DATA and res.digest == SHA
    reqs = srv.requests_for("/f")
    assert len(reqs) == 2 and "range" not in reqs[0].headers
    assert reqs[1].headers["range"] == "bytes=1500000-"


def test_dropped_connection_without_resume_starts_over(
    srv: TestServer, tmp_path: Path, no_proxy_env
):
    srv.add("/f", DATA, drop_after=100_000)
    res = fast().fetch(srv.url("/f"), tmp_path / "f", hasher_factory=sha512)
    assert res.digest == SHA and res.resumed_from == 0
    assert all("range" not in r.headers for r in srv.requests_for("/f"))


def test_dropped_connection_keeps_the_partial_file(srv: TestServer, tmp_path: Path, no_proxy_env):
    srv.add("/f", DATA, drop_after=2_000_000)
    dest = tmp_path / "f"
    with pytest.raises(HttpError) as exc:
        fast(retries=0).fetch(srv.url("/f"), dest, resume=True)
    assert exc.value.transient
    assert DATA.startswith(dest.read_bytes()) and 0 < dest.stat().st_size <= 2_000_000


def test_size_limit(srv: TestServer, tmp_path: Path, no_proxy_env) -> None:
    srv.add("/f", DATA)
    with pytest.raises(HttpError, match="too large"):
        fast().fetch(srv.url("/f"), tmp_path / "f", max_size=1000)
    assert len(srv.requests_for("/f")) == 1


def test_compressed_files_arrive_as_stored(srv: TestServer, tmp_path: Path, no_proxy_env) -> None:
    packed = gzip.compress(b"Package: x\n")
    srv.add("/a.gz", packed, extra_headers={"Content-Encoding": "gzip"})
    fast().fetch(srv.url("/a.gz"), tmp_path / "a.gz")
    assert (tmp_path / "a.gz").read_bytes() == packed


def test_memory_stays_flat(srv: TestServer, tmp_path: Path, no_proxy_env) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as fh:
        for _ in range(48):
            fh.write(os.urandom(1 << 20))
    srv.add("/big", big)
    tracemalloc.start()
    try:
        res = fast().fetch(srv.url("/big"), tmp_path / "copy", hasher_factory=sha512)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.digest == hash_file(big, "sha512")
    print("PEAK", peak)
    assert peak < 12 << 20, f"peak {peak} bytes for a 48 MiB file"


def test_http_proxy_from_environment(srv: TestServer, tmp_path: Path, no_proxy_env) -> None:
    srv.add("/f", b"via proxy")
    with ForwardProxy() as proxy:
        no_proxy_env.setenv("http_proxy", proxy.url)
        Downloader(Client()).fetch(srv.url("/f"), tmp_path / "f")
        assert proxy.seen == [("GET", srv.url("/f"))]
        no_proxy_env.setenv("no_proxy", "127.0.0.1")
        Downloader(Client()).fetch(srv.url("/f"), tmp_path / "g")
        assert len(proxy.seen) == 1
    assert (tmp_path / "f").read_bytes() == (tmp_path / "g").read_bytes() == b"via proxy"


def test_https_proxy_uses_connect(tmp_path: Path, no_proxy_env) -> None:
    tls = make_self_signed(tmp_path)
    no_proxy_env.setenv("REQUESTS_CA_BUNDLE", str(tls.cert))
    with TestServer(tls.context) as srv, ForwardProxy() as proxy:
        srv.add("/f", DATA)
        no_proxy_env.setenv("https_proxy", proxy.url)
        res = fast().fetch(srv.url("/f"), tmp_path / "f", hasher_factory=sha512)
        assert res.digest == SHA
        assert proxy.seen == [("CONNECT", srv.base_url.removeprefix("https://"))]


def test_chunked_body(srv: TestServer, tmp_path: Path, no_proxy_env) -> None:
    srv.add("/f", DATA, chunked=True)
    res = fast().fetch(srv.url("/f"), tmp_path / "f", hasher_factory=sha512)
    assert (tmp_path / "f").read_bytes() == DATA and res.digest == SHA and res.size == len(DATA)


def test_chunked_body_cut_short_is_transient(srv: TestServer, tmp_path: Path, no_proxy_env):
    srv.add("/f", DATA, chunked=True, drop_after=1_234_567)
    with pytest.raises(HttpError, match="connection broken during transfer") as exc:
        fast(retries=0).fetch(srv.url("/f"), tmp_path / "f", resume=True, hasher_factory=sha512)
    assert exc.value.transient
    assert DATA.startswith((tmp_path / "f").read_bytes())


def test_a_failing_hasher_is_reported_and_the_next_call_rehashes(
    srv: TestServer, tmp_path: Path, no_proxy_env
) -> None:
    """The digest worker's error reaches the caller; the next call hashes again the bytes
    already on disk, then continues with a Range request."""
    srv.add("/f", DATA, drop_after=1_500_000)
    made: list[object] = []

    class BreaksOnce:
        def __init__(self) -> None:
            self.inner, self.first = hashlib.sha512(), not made
            made.append(self)

        def update(self, data: bytes) -> None:
            if self.first:
                raise OSError("hasher broke")
            self.inner.update(data)

        def hexdigest(self) -> str:
            return self.inner.hexdigest()

    dest = tmp_path / "f"
    with pytest.raises(OSError, match="hasher broke"):
        fast().fetch(srv.url("/f"), dest, resume=True, hasher_factory=BreaksOnce)
    res = fast().fetch(srv.url("/f"), dest, resume=True, hasher_factory=BreaksOnce)
    assert res.digest == SHA and res.resumed_from > 0 and len(made) == 2


def test_the_body_is_read_straight_into_our_buffers(srv: TestServer, no_proxy_env) -> None:
    """http.client's readinto fills the caller's buffer: no copy per chunk."""
    srv.add("/f", b"x" * 100)
    with Client().request("GET", srv.url("/f")) as resp:
        buf = bytearray(1000)
        assert resp.readinto(memoryview(buf)[:500]) == 100 and buf[:100] == b"x" * 100
        assert resp.readinto(memoryview(buf)) == 0
