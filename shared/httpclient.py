"""One HTTP exchange on the standard library's ``http.client``: connect (straight, through an
HTTP proxy, or through a ``CONNECT`` tunnel), TLS, the request, the response headers under a
bound, redirects.

ctkit's HTTP needs are small: streaming GETs for templates and indexes, a JSON POST for the
backup webhook, a key upload to a restic REST server. ``requests`` did them, but importing it
(urllib3, charset detection, the cookie jar, importlib.metadata) took 58 ms of a ``pveam
download``'s 0.18 s fixed cost on the reference VM, a third of it, against 12 ms for
``http.client`` (which loads ``ssl`` itself; the TLS context is made for an ``https`` URL only).

What it keeps of requests' behaviour:

- proxies from the environment (:mod:`shared.httpproxy`), or given explicitly;
- TLS verified against the system's trust store, or the bundle named by
  ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` (honoured for the users who set them);
- ``user:password@`` in a URL is sent as Basic authentication, to that URL's host only;
- redirects (301, 302, 303, 307, 308; at most ``MAX_REDIRECTS``): 307/308 repeat the method
  and body, the others turn a POST into a GET, as browsers and requests do;
- one connection for several requests to the same server (and proxy), as a session did.
"""

from __future__ import annotations

import base64
import http.client
import os
import select
import socket
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, quote, unquote, urljoin, urlsplit

from . import stallguard
from .httpproxy import env_proxy
from .printable import printable
from .stallguard import StallGuard, shut_down
from .version import VERSION

if TYPE_CHECKING:
    import ssl

USER_AGENT = f"ctkit/{VERSION}"
MAX_REDIRECTS = 10
REDIRECTS = frozenset({301, 302, 303, 307, 308})
HEADERS_STALLED = "response headers stalled"
CA_BUNDLE_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
Timeout = tuple[float, float]  # (connect, read) seconds; read bounds each wait for data
DEFAULT_TIMEOUT: Timeout = (10.0, 15.0)


class TransportError(Exception):
    """No usable answer: the server was not reached, went silent or broke the exchange.
    ``reason`` is one short line; ``transient`` says whether trying again may help."""

    def __init__(self, reason: str, *, transient: bool = True, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.timed_out = timed_out


def describe_exception(exc: BaseException) -> str:
    """A one-line reason for a connection-level failure (no object reprs)."""
    if isinstance(exc, TransportError):
        return exc.reason
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    verify = getattr(exc, "verify_message", None)  # ssl.SSLCertVerificationError
    if verify:
        return f"certificate verify failed: {verify}"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "connection closed by server"
    if isinstance(exc, http.client.IncompleteRead):
        return "connection broken during transfer"
    if isinstance(exc, http.client.BadStatusLine):
        return "no valid HTTP status line from the server"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)  # may quote what the server sent: never raw onto a terminal
    return printable(text.splitlines()[0][:200]) if text else type(exc).__name__


class Response:
    """A response whose body is still to be read (``readinto``, ``read``); close it (or use it
    as a context manager) to let go of the connection."""

    def __init__(
        self,
        conn: http.client.HTTPConnection,
        raw: http.client.HTTPResponse,
        sock: socket.socket | None,
        keep: Callable[[http.client.HTTPConnection], None],
    ) -> None:
        self.status = raw.status
        self.reason = printable(raw.reason or "")  # the server's words, shown in error lines
        self.headers = raw.headers
        self._conn, self._raw = conn, raw
        # kept here: http.client lets go of it once the headers say the server closes after
        # the body (HTTP/1.0, ``Connection: close``), while the body still comes from it
        self.socket = sock
        self._keep = keep

    def readinto(self, buf: memoryview) -> int:
        """Read body bytes straight into ``buf`` (0 at the end of the body)."""
        return self._raw.readinto(buf)

    def read(self, limit: int) -> bytes:
        return self._raw.read(limit)

    def close(self) -> None:
        """Let go of the connection: back to the client for the next request to the same
        server when the body was read to its end and the server keeps the connection open."""
        raw = self._raw
        if not raw.isclosed() and raw.length == 0:
            raw.read()  # no body (a 304, an empty file): the exchange is complete
        reusable = raw.isclosed() and not raw.will_close and self._conn.sock is not None
        raw.close()
        if reusable:
            self._keep(self._conn)
        else:
            self._conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """Makes requests with one set of default headers and one proxy policy: ``proxies``
    (scheme -> proxy URL; ``{}``: none) replaces the environment's when given."""

    def __init__(
        self, *, user_agent: str = USER_AGENT, proxies: Mapping[str, str] | None = None
    ) -> None:
        self.headers = {"User-Agent": user_agent, "Accept": "*/*", "Accept-Encoding": "identity"}
        self.proxies = dict(proxies) if proxies is not None else None
        self._tls: ssl.SSLContext | None = None
        # one idle connection per server (and proxy), as requests' session kept them: an
        # index update fetches the signature and the index over one connection and one TLS
        # handshake. Not for use from several threads at once.
        self._idle: dict[tuple[str, ...], http.client.HTTPConnection] = {}

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        follow_redirects: bool = True,
    ) -> Response:
        """Send the request; return the final response with its headers read."""
        redirected = False
        for _hop in range(MAX_REDIRECTS + 1):
            parts = _split(url, redirected)
            resp = self._exchange(method, parts, headers or {}, body, timeout)
            location = _utf8(resp.headers.get("Location"))
            if not follow_redirects or resp.status not in REDIRECTS or location is None:
                return resp
            resp.close()
            url, redirected = _follow(parts, location), True
            if resp.status == 303 or (resp.status in (301, 302) and method not in ("GET", "HEAD")):
                method, body = "GET", None
        raise TransportError(f"too many redirects (more than {MAX_REDIRECTS})", transient=False)

    def _exchange(
        self,
        method: str,
        parts: SplitResult,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: Timeout,
    ) -> Response:
        opener, target, extra, key = self._route(parts, timeout[0])
        conn = self._idle.pop(key, None)
        if conn is not None and not _still_open(conn):
            conn.close()  # the server closed it meanwhile
            conn = None
        conn = conn or opener()
        sock: socket.socket | None = None
        try:
            if conn.sock is None:
                conn.connect()
            sock = conn.sock
            sock.settimeout(timeout[1])
            conn.request(method, target, body=body, headers={**self.headers, **extra, **headers})
            raw = _headers_bounded(sock, timeout[1], conn.getresponse)
        except BaseException as err:
            conn.close()
            if isinstance(err, http.client.InvalidURL | UnicodeError):
                raise TransportError(f"invalid URL - {err}", transient=False) from err
            if isinstance(err, OSError | http.client.HTTPException):
                transient = getattr(err, "verify_message", None) is None
                raise TransportError(
                    describe_exception(err), transient=transient,
                    timed_out=isinstance(err, TimeoutError),
                ) from err  # fmt: skip
            raise
        return Response(conn, raw, sock, keep=lambda c: self._park(key, c))

    def _park(self, key: tuple[str, ...], conn: http.client.HTTPConnection) -> None:
        old = self._idle.pop(key, None)
        if old is not None:
            old.close()
        self._idle[key] = conn

    def close(self) -> None:
        """Close the idle connections."""
        while self._idle:
            self._idle.popitem()[1].close()

    def _route(
        self, parts: SplitResult, connect_timeout: float
    ) -> tuple[Callable[[], http.client.HTTPConnection], str, dict[str, str], tuple[str, ...]]:
        """How to make a connection for ``parts`` (not opened yet), the request target, the
        headers this URL adds, and the key under which an idle connection to the same place
        is kept."""
        host, port = _ascii_host(parts.hostname or ""), parts.port
        extra = _basic_auth(parts.username, parts.password, "Authorization")
        path = _ascii((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        proxy = self._proxy_for(parts.scheme, host, port)
        key = (parts.scheme, host, str(port), proxy or "")
        if proxy is None:
            return partial(self._open, parts.scheme, host, port, connect_timeout), path, extra, key
        via = _split(proxy if "://" in proxy else f"http://{proxy}", False, what="proxy URL")
        if via.scheme != "http":
            reason = f"unsupported proxy '{via.scheme}://' (http:// only)"
            raise TransportError(reason, transient=False)
        auth = _basic_auth(via.username, via.password, "Proxy-Authorization")
        proxy_host = _ascii_host(via.hostname or "")
        if parts.scheme == "https":
            tunnel = partial(
                _Tunnelled, (proxy_host, via.port or 80), (host, port or 443), auth,
                timeout=connect_timeout, context=self._tls_context(),
            )  # fmt: skip
            return tunnel, path, extra, key
        opener = partial(self._open, "http", proxy_host, via.port, connect_timeout)
        absolute = f"http://{netloc(host, port)}{path}"
        return opener, absolute, {**extra, **auth}, key

    def _open(
        self, scheme: str, host: str, port: int | None, connect_timeout: float
    ) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(
                host, port, timeout=connect_timeout, context=self._tls_context()
            )
        return http.client.HTTPConnection(host, port, timeout=connect_timeout)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            import ssl

            bundle = next((os.environ[v] for v in CA_BUNDLE_VARS if os.environ.get(v)), None)
            try:
                if bundle is not None and os.path.isdir(bundle):
                    self._tls = ssl.create_default_context(capath=bundle)
                else:
                    self._tls = ssl.create_default_context(cafile=bundle)
            except OSError as err:  # a missing or unreadable bundle (ssl.SSLError too)
                ssl_error = isinstance(err, ssl.SSLError)
                reason = "no usable certificate in it" if ssl_error else err.strerror or str(err)
                raise TransportError(f"CA bundle '{bundle}': {reason}", transient=False) from None
        return self._tls

    def _proxy_for(self, scheme: str, host: str, port: int | None) -> str | None:
        if self.proxies is not None:
            return self.proxies.get(scheme) or None
        return env_proxy(scheme, host, port)


class _Tunnelled(http.client.HTTPSConnection):
    """HTTPS through a proxy's ``CONNECT`` tunnel. Made here rather than by ``set_tunnel``:
    Python 3.11's tunnel writes an IPv6 address without its brackets (``CONNECT 2001:db8::1:443``),
    which no proxy can read."""

    def __init__(
        self,
        proxy: tuple[str, int],
        target: tuple[str, int],
        headers: Mapping[str, str],
        *,
        timeout: float,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(target[0], target[1], timeout=timeout, context=context)
        self._proxy, self._connect_headers = proxy, dict(headers)

    def connect(self) -> None:
        host = self.host
        authority = netloc(host, self.port)
        sock = socket.create_connection(self._proxy, self.timeout)
        try:
            lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
            lines += [f"{key}: {value}" for key, value in self._connect_headers.items()]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            # the proxy's answer is headers only; nothing follows it until the TLS handshake
            answer = http.client.HTTPResponse(sock, method="CONNECT")

            def answer_headers() -> http.client.HTTPResponse:
                answer.begin()
                return answer

            _headers_bounded(sock, self.timeout or 0.0, answer_headers)
            if answer.status != 200:
                reason = printable(answer.reason or "")
                raise OSError(f"proxy refused the tunnel: {answer.status} {reason}".strip())
            self.sock = self._context.wrap_socket(sock, server_hostname=host)  # type: ignore[attr-defined]
        except BaseException:
            sock.close()
            raise


def netloc(host: str, port: int | None) -> str:
    """``host[:port]`` as a URL or ``CONNECT`` writes it: an IPv6 address in brackets."""
    name = f"[{host}]" if ":" in host else host
    return f"{name}:{port}" if port else name


def _split(url: str, redirected: bool, what: str = "URL") -> SplitResult:
    """Parse and check a URL: http or https, a host, a valid port."""
    label = f"invalid {what} from the server" if redirected else f"invalid {what}"
    if any(c <= " " or c == "\x7f" for c in url):  # http.client would refuse it once connected
        raise TransportError(f"{label} - white space or control characters in it", transient=False)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError as err:
        raise TransportError(f"{label} - {err}", transient=False) from None
    if parts.scheme not in ("http", "https"):
        raise TransportError(f"{label} - unsupported scheme '{parts.scheme}'", transient=False)
    if not parts.hostname:
        raise TransportError(f"{label} - no host", transient=False)
    return parts


def _utf8(header: str | None) -> str | None:
    """A header value as UTF-8: http.client decodes headers as Latin-1, while servers send a
    ``Location`` with non-ASCII characters in UTF-8."""
    if header is None or header.isascii():
        return header
    try:
        return header.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return header


def _ascii_host(host: str) -> str:
    """A host name as it goes on the wire: an internationalised one in its IDNA form."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as err:
        raise TransportError(f"invalid URL - host name: {err}", transient=False) from None


def _ascii(target: str) -> str:
    """Path and query with their non-ASCII characters percent-encoded (as UTF-8), as a browser
    sends them; what is escaped already stays as it is."""
    if target.isascii():
        return target
    return "".join(c if c.isascii() else quote(c, safe="") for c in target)


def _follow(parts: SplitResult, location: str) -> str:
    """Where a redirect's ``Location`` points, relative to the URL that answered."""
    try:
        return urljoin(parts.geturl(), location)
    except ValueError as err:
        raise TransportError(f"invalid URL from the server - {err}", transient=False) from None


def _basic_auth(user: str | None, password: str | None, header: str) -> dict[str, str]:
    if user is None:
        return {}
    pair = f"{unquote(user)}:{unquote(password or '')}".encode()
    return {header: "Basic " + base64.b64encode(pair).decode("ascii")}


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection can carry another request: a socket that reads as ready
    while no request is out has been closed by the server (or holds data nobody asked for)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not ready


def _headers_bounded(
    sock: socket.socket, read_timeout: float, read_headers: Callable[[], http.client.HTTPResponse]
) -> http.client.HTTPResponse:
    """``read_headers`` (a server's response, a proxy's answer to CONNECT) under a guard that no
    read feeds: a peer that drips the status line and headers a byte at a time, each inside the
    read timeout, would otherwise hold the request (and the lock it runs under) without end.
    The caller closes the connection when this raises."""
    limit = max(stallguard.STALL_LIMIT, 4 * read_timeout)
    guard = StallGuard(shut_down(sock), limit)
    stalled = f"{HEADERS_STALLED} (more than {limit:.0f} s)"
    with guard:
        try:
            answer = read_headers()
        except (OSError, http.client.HTTPException) as err:
            if guard.fired:
                raise TransportError(stalled) from err
            raise
    if guard.fired:  # the shutdown read as the end of the headers: never an answer
        raise TransportError(stalled)
    return answer
