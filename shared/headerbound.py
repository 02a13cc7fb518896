"""A bound on the wait for a response's headers as a whole.

The read timeout bounds each wait for data, and the body has its stall guard; but a server that
drips the status line and headers a byte at a time, each inside the read timeout, held a request
(and the update or download lock it runs under) without end. The connections of a session with
:func:`bound_headers` read the headers under a :class:`StallGuard` that no read feeds: once
that took ``stallguard.STALL_LIMIT`` seconds (or four read timeouts, if longer), it shuts the
socket down and the request fails as a stalled one.
"""

from __future__ import annotations

import http.client
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from . import stallguard
from .stallguard import StallGuard, shut_down

MARK = "response headers stalled"


class HeadersStalled(urllib3.exceptions.ProtocolError):
    """Reaches the caller as a requests ConnectionError whose text holds :data:`MARK`."""


class _Bounded:
    """Mixed into urllib3's connections: ``getresponse`` reads the headers under a guard."""

    sock: Any
    timeout: Any

    def getresponse(self) -> Any:
        read = self.timeout if isinstance(self.timeout, int | float) else 0
        limit = max(stallguard.STALL_LIMIT, 4 * read)
        guard = StallGuard(shut_down(self.sock), limit)
        with guard:
            try:
                response = super().getresponse()  # type: ignore[misc]
            except (OSError, http.client.HTTPException) as err:
                if guard.fired:
                    raise HeadersStalled(f"{MARK} (more than {limit:.0f} s)") from err
                raise
        if guard.fired:  # the shutdown read as the end of the headers: never a response
            response.close()
            raise HeadersStalled(f"{MARK} (more than {limit:.0f} s)")
        return response


class _HTTP(_Bounded, HTTPConnection):
    pass


class _HTTPS(_Bounded, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTP


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPS


POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = POOLS
        return manager


def bound_headers(session: requests.Session) -> requests.Session:
    """Make ``session``'s HTTP and HTTPS connections bound the wait for the headers."""
    for prefix in ("http://", "https://"):
        session.mount(prefix, _Adapter())
    return session
