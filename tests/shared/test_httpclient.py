"""shared.httpclient against real servers and proxies on 127.0.0.1: redirects, authentication
from the URL, the proxy rules, TLS, and what a download imports."""

from __future__ import annotations

import base64
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest

from shared.http import Downloader, HttpError, RetryPolicy
from shared.httpclient import MAX_REDIRECTS, Client, TransportError, _ascii_host
from tests.shared.http_server import ForwardProxy, TestServer, handler_server, make_self_signed


@pytest.fixture
def srv(no_proxy_env: pytest.MonkeyPatch) -> Iterator[TestServer]:
    with TestServer() as server:
        yield server


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- redirects ---------------------------------------------------------------------------------


def test_a_download_follows_redirects_relative_and_absolute(srv: TestServer, tmp_path: Path):
    srv.add("/tpl/real.tar.zst", b"template bytes")
    srv.add("/mirror", redirect="/tpl/real.tar.zst")
    srv.add("/cdn", redirect=srv.url("/mirror"))
    res = Downloader().fetch(srv.url("/cdn"), tmp_path / "t")
    assert (tmp_path / "t").read_bytes() == b"template bytes" and res.status == 200
    assert [len(srv.requests_for(p)) for p in ("/cdn", "/mirror", "/tpl/real.tar.zst")] == [1, 1, 1]


def test_the_range_of_a_resumed_download_goes_along_a_redirect(srv: TestServer, tmp_path: Path):
    srv.add("/tpl/f", b"0123456789")
    srv.add("/moved", redirect="/tpl/f")
    (tmp_path / "f").write_bytes(b"01234")
    Downloader().fetch(srv.url("/moved"), tmp_path / "f", resume=True)
    assert (tmp_path / "f").read_bytes() == b"0123456789"
    assert srv.requests_for("/tpl/f")[0].headers["range"] == "bytes=5-"


def test_a_redirect_loop_ends_as_a_permanent_failure(srv: TestServer, tmp_path: Path) -> None:
    srv.add("/a", redirect="/b")
    srv.add("/b", redirect="/a")
    dl = Downloader(retry=RetryPolicy(retries=3, backoff=0.01), sleep=lambda _s: None)
    with pytest.raises(HttpError, match=rf"too many redirects \(more than {MAX_REDIRECTS}\)") as e:
        dl.fetch(srv.url("/a"), tmp_path / "out")
    assert not e.value.transient
    assert len(srv.requests_for("/a")) + len(srv.requests_for("/b")) == MAX_REDIRECTS + 1


class _Posts(BaseHTTPRequestHandler):
    """Answers POSTs to /old-N with redirect N to /new; records every request and its body."""

    seen: ClassVar[list[tuple[str, str, bytes, str | None]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.path, body, self.headers.get("Authorization")))
        if self.path.startswith("/old-"):
            self.send_response(int(self.path.removeprefix("/old-")))
            self.send_header("Location", "/new")
        else:
            self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _record


@pytest.fixture
def posts(no_proxy_env: pytest.MonkeyPatch) -> Iterator[str]:
    _Posts.seen = []
    with handler_server(_Posts) as hostport:
        yield hostport


@pytest.mark.parametrize(
    ("code", "again"), [(307, ("POST", b"{}")), (308, ("POST", b"{}")), (303, ("GET", b""))]
)
def test_a_redirected_post(posts: str, code: int, again: tuple[str, bytes]) -> None:
    """307 and 308 repeat the method and body; 303 turns the POST into a GET without body."""
    with Client().request("POST", f"http://{posts}/old-{code}", body=b"{}") as resp:
        assert resp.status == 201
    assert [(m, p, b) for m, p, b, _a in _Posts.seen] == [
        ("POST", f"/old-{code}", b"{}"),
        (again[0], "/new", again[1]),
    ]


def test_no_redirect_followed_when_told(posts: str) -> None:
    with Client().request("POST", f"http://{posts}/old-307", follow_redirects=False) as resp:
        assert resp.status == 307 and resp.headers["Location"] == "/new"
    assert len(_Posts.seen) == 1


# --- authentication from the URL ---------------------------------------------------------------


def test_credentials_in_the_url_go_to_that_host_only(posts: str) -> None:
    """Sent as Basic authentication (percent-escapes decoded) to the URL's host, and along a
    relative redirect on that host; never to the host of a redirect to another server."""
    with TestServer() as other:
        other.add("/x", b"elsewhere")
        other.add("/hop", redirect="/x")
        other.add("/away", redirect=f"http://{posts}/new")
        base = other.base_url.replace("http://", "http://us%40r:p%3Ass@")
        with Client().request("GET", base + "/hop") as resp:
            assert resp.read(100) == b"elsewhere"
        with Client().request("GET", base + "/away") as resp:
            assert resp.status == 201
        auth = basic("us@r", "p:ss")
        assert other.requests_for("/hop")[0].headers["authorization"] == auth
        assert other.requests_for("/x")[0].headers["authorization"] == auth
    assert _Posts.seen == [("GET", "/new", b"", None)]


# --- proxies -----------------------------------------------------------------------------------


def test_a_proxy_given_without_a_scheme_and_with_credentials(srv: TestServer, tmp_path: Path):
    srv.add("/f", b"via proxy")
    with ForwardProxy() as proxy:
        hostport = proxy.url.removeprefix("http://")
        srv_env = pytest.MonkeyPatch()
        try:
            srv_env.setenv("http_proxy", f"user:secret@{hostport}")
            Downloader().fetch(srv.url("/f"), tmp_path / "f")
        finally:
            srv_env.undo()
    assert proxy.seen == [("GET", srv.url("/f"))]
    assert (tmp_path / "f").read_bytes() == b"via proxy"
    # the proxy's credentials go to the proxy, not to the server
    assert "authorization" not in srv.requests_for("/f")[0].headers


def test_all_proxy_and_upper_case_names(srv: TestServer, no_proxy_env: pytest.MonkeyPatch):
    srv.add("/f", b"x")
    with ForwardProxy() as proxy:
        no_proxy_env.setenv("ALL_PROXY", proxy.url)
        with Client().request("GET", srv.url("/f")) as resp:
            assert resp.read(10) == b"x"
        no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
        with Client().request("GET", srv.url("/f")) as resp:
            assert resp.read(10) == b"x"
    assert proxy.seen == [("GET", srv.url("/f"))]


def test_explicit_proxies_replace_the_environment(srv: TestServer, no_proxy_env):
    srv.add("/f", b"x")
    no_proxy_env.setenv("http_proxy", "http://127.0.0.1:9")  # nobody listens there
    with Client(proxies={}).request("GET", srv.url("/f")) as resp:
        assert resp.status == 200
    with pytest.raises(TransportError, match="Connection refused"):
        Client().request("GET", srv.url("/f"))


def test_https_to_an_ipv6_address_through_a_proxy(tmp_path: Path, no_proxy_env) -> None:
    """The tunnel names the target as URLs do, ``[::1]:port`` (Python 3.11's own tunnel wrote
    the address bare); the certificate is checked against the address."""
    tls = make_self_signed(tmp_path)
    no_proxy_env.setenv("REQUESTS_CA_BUNDLE", str(tls.cert))
    with TestServer(tls.context, host="::1") as secure, ForwardProxy() as proxy:
        secure.add("/f", b"over the tunnel")
        no_proxy_env.setenv("https_proxy", f"http://u:pw@{proxy.url.removeprefix('http://')}")
        Downloader().fetch(secure.url("/f"), tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == b"over the tunnel"
    assert proxy.seen == [("CONNECT", secure.base_url.removeprefix("https://"))]
    assert secure.base_url.startswith("https://[::1]:")
    assert "authorization" not in secure.requests_for("/f")[0].headers


def test_a_proxy_that_refuses_the_tunnel(tmp_path: Path, no_proxy_env) -> None:
    with handler_server(_Hostile) as hostport:  # answers CONNECT with 501 (no do_CONNECT)
        no_proxy_env.setenv("https_proxy", f"http://{hostport}")
        with pytest.raises(TransportError, match=r"proxy refused the tunnel: 501"):
            Client().request("GET", "https://198.18.0.1/f")


class _DrippingProxy(BaseHTTPRequestHandler):
    """Answers CONNECT with a status line, then one header byte every 0.02 s."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_CONNECT(self) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\nX-Slow: ")
            for _ in range(1500):
                self.wfile.write(b"a")
                self.wfile.flush()
                time.sleep(0.02)


def test_a_proxy_that_drips_its_answer_to_connect_is_given_up(
    tmp_path: Path, no_proxy_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound on a response's headers holds for the proxy's answer to CONNECT too."""
    # a byte every 0.02 s never hits the 0.25 s timeout (the connect one: the tunnel is part
    # of the connection), also on a loaded host (a 0.1 s drip against 0.2 s can); the bound on
    # the headers (1 s here) ends the wait
    monkeypatch.setattr("shared.stallguard.STALL_LIMIT", 1.0)
    with handler_server(_DrippingProxy) as hostport:
        no_proxy_env.setenv("https_proxy", f"http://{hostport}")
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"response headers stalled \(more than 1 s\)"):
            Client().request("GET", "https://198.18.0.1/f", timeout=(0.25, 2.0))
        assert time.monotonic() - started < 5


def test_an_https_proxy_url_is_refused(srv: TestServer) -> None:
    with pytest.raises(TransportError, match=r"unsupported proxy 'https://'") as exc:
        Client(proxies={"http": "https://127.0.0.1:3128"}).request("GET", srv.url("/f"))
    assert not exc.value.transient


# --- TLS and bad URLs --------------------------------------------------------------------------


def test_an_untrusted_certificate_fails_at_once(tmp_path: Path, no_proxy_env) -> None:
    """The system's trust store does not know the test's certificate: not retried."""
    tls = make_self_signed(tmp_path)
    no_proxy_env.delenv("REQUESTS_CA_BUNDLE", raising=False)
    no_proxy_env.delenv("CURL_CA_BUNDLE", raising=False)
    with TestServer(tls.context) as secure:
        secure.add("/f", b"secret")
        dl = Downloader(retry=RetryPolicy(retries=3, backoff=0.01), sleep=lambda _s: None)
        with pytest.raises(HttpError, match="certificate verify failed") as exc:
            dl.fetch(secure.url("/f"), tmp_path / "f")
        assert not exc.value.transient
        no_proxy_env.setenv("CURL_CA_BUNDLE", str(tls.cert))
        Downloader().fetch(secure.url("/f"), tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == b"secret"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "No such file or directory"), (b"not a certificate", "no usable certificate in it")],
)
def test_an_unusable_ca_bundle_is_a_clear_failure(
    tmp_path: Path, no_proxy_env, content: bytes | None, reason: str
) -> None:
    bundle = tmp_path / "bundle.pem"
    if content is not None:
        bundle.write_bytes(content)
    no_proxy_env.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    dl = Downloader(retry=RetryPolicy(retries=3, backoff=0.01), sleep=lambda _s: None)
    with pytest.raises(HttpError) as exc:
        dl.fetch("https://198.18.0.1/f", tmp_path / "f")
    assert exc.value.status_line == f"CA bundle '{bundle}': {reason}" and not exc.value.transient


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://127.0.0.1/x", "invalid URL - unsupported scheme 'ftp'"),
        ("http:///x", "invalid URL - no host"),
        ("http://127.0.0.1:99999/x", "invalid URL - Port out of range"),
        ("http://127.0.0.1/a b", "invalid URL - white space or control characters in it"),
        ("http://127.0.0.1/a\r\nX-Injected: 1", "invalid URL - white space or control"),
    ],
)
def test_bad_urls_are_refused_before_any_connection(url: str, reason: str) -> None:
    with pytest.raises(TransportError) as exc:
        Client().request("GET", url)
    assert exc.value.reason.startswith(reason) and not exc.value.transient


def test_non_ascii_paths_go_out_percent_encoded(srv: TestServer, tmp_path: Path) -> None:
    """Given in the URL, or in a redirect's ``Location`` (which servers send in UTF-8)."""
    srv.add("/tpl/%C3%A4.tar.zst", b"umlaut")
    srv.add("/moved", redirect="/tpl/\u00e4.tar.zst".encode().decode("latin-1"))
    Downloader().fetch(srv.url("/moved"), tmp_path / "f")
    Downloader().fetch(srv.url("/tpl/\u00e4.tar.zst"), tmp_path / "g")
    assert (tmp_path / "f").read_bytes() == (tmp_path / "g").read_bytes() == b"umlaut"


def test_international_host_names_go_out_in_their_idna_form() -> None:
    assert _ascii_host("b\u00fccher.example") == "xn--bcher-kva.example"
    with pytest.raises(TransportError, match="invalid URL - host name") as exc:
        Client().request("GET", "http://" + "a" * 64 + "\u00fc.example/")  # a label too long
    assert not exc.value.transient


class _Hostile(BaseHTTPRequestHandler):
    """/reason: a 404 whose reason phrase retitles a terminal; else no status line at all."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/reason":
            self.send_response(404, "Not Found\x1b]0;owned\x07")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.wfile.write(b"\x1b[2J\x1b]0;owned\x07 garbage\r\n\r\n")


def test_what_a_server_says_reaches_no_terminal_raw(tmp_path: Path, no_proxy_env) -> None:
    dl = Downloader(retry=RetryPolicy(retries=0))
    with handler_server(_Hostile) as hostport:
        with pytest.raises(HttpError) as reason:
            dl.fetch(f"http://{hostport}/reason", tmp_path / "f")
        with pytest.raises(HttpError) as garbage:
            dl.fetch(f"http://{hostport}/garbage", tmp_path / "f")
    assert reason.value.status_line == "404 Not Found\\x1b]0;owned\\x07"
    assert garbage.value.status_line == "no valid HTTP status line from the server"


# --- connections ------------------------------------------------------------------------------


class _KeepAlive(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; records the client's port of each request. /close closes the
    connection after answering (the server's idle timeout, on purpose)."""

    protocol_version = "HTTP/1.1"
    ports: ClassVar[list[int]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.ports.append(self.client_address[1])
        status, body = (
            (304, b"") if self.path == "/same" else (200, b"body of " + self.path.encode())
        )
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/close":
            self.close_connection = True


def test_requests_to_one_server_share_a_connection(no_proxy_env, tmp_path: Path) -> None:
    """As requests' session did: an index update's signature and index, one connection (and
    one TLS handshake); a body not read to its end, or a connection the server closed while
    idle, is not used again."""
    _KeepAlive.ports = []
    client = Client()
    with handler_server(_KeepAlive) as hostport:
        dl = Downloader(client)
        dl.fetch(f"http://{hostport}/a.asc", tmp_path / "a")
        dl.fetch(f"http://{hostport}/a.gz", tmp_path / "b")
        with client.request("GET", f"http://{hostport}/same") as resp:  # a 304: no body
            assert resp.status == 304
        with client.request("GET", f"http://{hostport}/close") as resp:
            assert resp.read(100) == b"body of /close"
        dl.fetch(f"http://{hostport}/after-close", tmp_path / "c")
        with client.request("GET", f"http://{hostport}/unread"):
            pass  # the body is left unread
        dl.fetch(f"http://{hostport}/after-unread", tmp_path / "d")
        client.close()
    first, second, third = _KeepAlive.ports[0], _KeepAlive.ports[4], _KeepAlive.ports[6]
    assert _KeepAlive.ports == [first] * 4 + [second] * 2 + [third]
    assert len({first, second, third}) == 3
    assert (tmp_path / "b").read_bytes() == b"body of /a.gz"


# --- what a download loads ---------------------------------------------------------------------


def test_a_download_loads_neither_requests_nor_gnupg(srv: TestServer, tmp_path: Path) -> None:
    """``requests`` (with urllib3) cost a third of a ``pveam download``'s start-up; python-gnupg
    is for verifying an index, not for reading the fingerprints in sources.cfg."""
    srv.add("/f", b"data")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from index.download import download_template\n"
        "from index.sources import enabled_sources\n"
        "from shared.http import Downloader\n"
        "import vzdump.notify\n"
        f"Downloader().fetch({srv.url('/f')!r}, Path({str(tmp_path / 'f')!r}))\n"
        "print(sorted(m for m in ('requests', 'urllib3', 'gnupg') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert (tmp_path / "f").read_bytes() == b"data"
