"""A controllable HTTP(S) server and a tiny forward proxy on 127.0.0.1, for download tests.

Each path is a :class:`Route` whose behaviour the test sets: serve bytes or a file (streamed in
chunks), fail with a status, fail the first N requests with 503, drop the connection after N
bytes, honour or ignore Range, send ETag/Last-Modified and answer conditional requests.
Every request is recorded (method, path, headers) so tests can count and inspect them.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import select
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHUNK = 1 << 20


@dataclass
class Route:
    data: bytes | Path | None = None
    status: int | None = None  # always answer with this status
    fail_first: int = 0  # answer 503 to the first N requests
    drop_after: int | None = None  # close the connection after this many body bytes...
    drop_times: int = 1  # ...for this many requests
    ignore_range: bool = False
    bad_content_range: bool = False
    chunk_delay: float = 0.0
    endless: bool = False  # 200 without Content-Length, then bytes until the client leaves
    chunked: bool = False  # HTTP/1.1 Transfer-Encoding: chunked, in odd-sized pieces
    stall: float = 0.0  # wait this long before answering at all
    drip: float = 0.0  # after the headers, one body byte every this many seconds
    header_drip: float = 0.0  # the status line, then one header byte every this many seconds
    redirect: str | None = None  # 302 to this Location
    last_modified: str = "Tue, 01 Jul 2025 10:00:00 GMT"
    extra_headers: dict[str, str] = field(default_factory=dict)
    content_length: str | None = None  # sent instead of the true length
    hits: int = 0

    def body_size(self) -> int:
        if isinstance(self.data, Path):
            return self.data.stat().st_size
        return len(self.data or b"")

    def etag(self) -> str:
        if isinstance(self.data, Path):
            st = self.data.stat()
            return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        return '"' + hashlib.sha1(self.data or b"").hexdigest() + '"'

    def chunks(self, start: int) -> Iterator[bytes]:
        if isinstance(self.data, Path):
            with open(self.data, "rb") as fh:
                fh.seek(start)
                while chunk := fh.read(CHUNK):
                    yield chunk
        else:
            data = self.data or b""
            for i in range(start, len(data), CHUNK):
                yield data[i : i + CHUNK]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server.owner
        path = urlsplit(self.path).path
        srv.seen.append(Seen("GET", path, {k.lower(): v for k, v in self.headers.items()}))
        route = srv.route_for(path)
        if route is None:
            self._status(404, "Not Found")
            return
        route.hits += 1
        if route.stall:
            time.sleep(route.stall)
            return
        if route.endless:
            self._endless(route)
            return
        if route.redirect is not None:
            self.send_response(302)
            self.send_header("Location", route.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if route.drip:
            self._drip(route)
            return
        if route.header_drip:
            self._header_drip(route)
            return
        if route.chunked:
            self._chunked(route)
            return
        if route.status is not None:
            self._status(route.status, http.client.responses.get(route.status, "Error"))
            return
        if route.hits <= route.fail_first:
            self._status(503, "Service Unavailable")
            return
        if self.headers.get("If-None-Match") == route.etag():
            self.send_response(304)
            self.end_headers()
            return
        self._body(route)

    def _chunked(self, route: Route) -> None:
        self.protocol_version = "HTTP/1.1"
        self.close_connection = True
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        drop, sent = route.drop_after, 0
        for chunk in route.chunks(0):
            for at in range(0, len(chunk), 100_003):
                piece = chunk[at : at + 100_003]
                if drop is not None and sent + len(piece) > drop:  # cut inside a chunk
                    self.wfile.write(b"%x\r\n%s" % (len(piece), piece[: drop - sent]))
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
        self.wfile.write(b"0\r\n\r\n")

    def _drip(self, route: Route) -> None:
        data = b"".join(route.chunks(0))
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):
            for at in range(len(data)):
                if self.server.owner.closing.is_set():
                    return
                self.wfile.write(data[at : at + 1])
                self.wfile.flush()
                time.sleep(route.drip)

    def _header_drip(self, route: Route) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not self.server.owner.closing.is_set():
                self.wfile.write(b"a")
                self.wfile.flush()
                time.sleep(route.header_drip)

    def _endless(self, route: Route) -> None:
        self.send_response(200)
        self.end_headers()
        chunk = b"\0" * (64 << 10)
        with contextlib.suppress(OSError):
            while not self.server.owner.closing.is_set():
                self.wfile.write(chunk)
                if route.chunk_delay:
                    time.sleep(route.chunk_delay)

    def _status(self, code: int, reason: str) -> None:
        body = f"{code} {reason}\n".encode()
        self.send_response(code, reason)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self, route: Route) -> None:
        size = route.body_size()
        start = 0
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes=") and rng.endswith("-") and not route.ignore_range:
            start = int(rng[6:-1])
            if start >= size:
                self._status(416, "Range Not Satisfiable")
                return
            self.send_response(206)
            first = start + 7 if route.bad_content_range else start
            self.send_header("Content-Range", f"bytes {first}-{size - 1}/{size}")
        else:
            self.send_response(200)
        length = route.content_length
        self.send_header("Content-Length", str(size - start) if length is None else length)
        self.send_header("ETag", route.etag())
        self.send_header("Last-Modified", route.last_modified)
        for key, value in route.extra_headers.items():
            self.send_header(key, value)
        self.end_headers()
        drop = route.drop_after if route.hits <= route.drop_times else None
        sent = 0
        for chunk in route.chunks(start):
            if drop is not None and sent + len(chunk) > drop:
                self.wfile.write(chunk[: max(0, drop - sent)])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(chunk)
            sent += len(chunk)
            if route.chunk_delay:
                time.sleep(route.chunk_delay)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: TestServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # dropped connections are deliberate here


class _Server6(_Server):
    address_family = socket.AF_INET6


class TestServer:
    """``with TestServer() as srv:`` serves ``srv.routes`` (and ``srv.directory``, if set)."""

    __test__ = False

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.directory: Path | None = None
        self.seen: list[Seen] = []
        self.closing = threading.Event()
        self.httpd = (_Server6 if ":" in host else _Server)((host, 0), _Handler)
        self.httpd.owner = self
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        netloc = f"[{host}]" if ":" in host else host
        self.base_url = f"{scheme}://{netloc}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def route_for(self, path: str) -> Route | None:
        if path in self.routes:
            return self.routes[path]
        if self.directory is not None:
            rel = path.lstrip("/")
            candidate = (self.directory / rel).resolve()
            if candidate.is_file() and self.directory.resolve() in candidate.parents:
                route = Route(data=candidate)
                self.routes[path] = route
                return route
        return None

    def add(self, path: str, data: bytes | Path | None = None, **kw: Any) -> Route:
        route = Route(data=data, **kw)
        self.routes[path] = route
        return route

    def url(self, path: str) -> str:
        return self.base_url + path

    def requests_for(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def __enter__(self) -> TestServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_CONNECT(self) -> None:
        self.server.owner.seen.append(("CONNECT", self.path))
        host, port = self.path.rsplit(":", 1)
        upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        _tunnel(self.connection, upstream)
        self.close_connection = True

    def do_GET(self) -> None:
        self.server.owner.seen.append(("GET", self.path))
        url = urlsplit(self.path)
        conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=10)
        headers = {k: v for k, v in self.headers.items() if not k.lower().startswith("proxy-")}
        conn.request("GET", url.path + (f"?{url.query}" if url.query else ""), headers=headers)
        resp = conn.getresponse()
        self.send_response(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in ("connection", "transfer-encoding"):
                self.send_header(key, value)
        self.end_headers()
        while chunk := resp.read(CHUNK):
            self.wfile.write(chunk)
        conn.close()


def _tunnel(a: socket.socket, b: socket.socket) -> None:
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [], 10)
            if not ready:
                return
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)
    except OSError:
        return
    finally:
        b.close()


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: ForwardProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class ForwardProxy:
    """An HTTP proxy (absolute-URI GET and CONNECT) that records what it was asked for."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.httpd = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self.httpd.owner = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> ForwardProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@dataclass
class SelfSigned:
    cert: Path
    key: Path
    context: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.cert, self.key)


def make_self_signed(directory: Path) -> SelfSigned:
    """A certificate for 127.0.0.1 and ::1 made by the openssl command line tool."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,IP:::1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return SelfSigned(cert, key)


@contextlib.contextmanager
def serving(tls: ssl.SSLContext | None = None) -> Iterator[TestServer]:
    with TestServer(tls) as srv:
        yield srv


@contextlib.contextmanager
def handler_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded server on 127.0.0.1 for a request handler of the test's own; yields
    ``127.0.0.1:<port>``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
