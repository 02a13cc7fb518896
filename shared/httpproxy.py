"""Which proxy a URL goes through, by the environment's rules: ``http_proxy``, ``https_proxy``,
``all_proxy`` and ``no_proxy``, lower case first, upper case too, as Python's ``urllib`` and
curl read them. ``no_proxy`` entries are host names, domain suffixes (``.example.org`` or
``example.org``), ``host:port``, IP networks (``10.0.0.0/8``) or ``*``.
"""

from __future__ import annotations

import os


def env_proxy(scheme: str, host: str, port: int | None) -> str | None:
    """The proxy URL for ``scheme://host:port`` (None: straight)."""
    proxy = env_value(f"{scheme}_proxy") or env_value("all_proxy")
    if proxy is None or bypassed(host, port, env_value("no_proxy") or ""):
        return None
    return proxy


def env_value(name: str) -> str | None:
    """``name`` from the environment, lower case first (as urllib and curl read it)."""
    return os.environ.get(name) or os.environ.get(name.upper()) or None


def bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma or space separated) exempts ``host``."""
    host = host.lower().rstrip(".")
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower().lstrip(".")
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, want_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
        if want_port and str(port or "") != want_port:
            continue
        name = name.strip("[]")
        if host == name or host.endswith("." + name) or _in_network(host, name):
            return True
    return False


def _has_port(entry: str) -> bool:
    head, sep, tail = entry.rpartition(":")
    return bool(sep) and tail.isdigit() and (entry.count(":") == 1 or head.endswith("]"))


def _in_network(host: str, entry: str) -> bool:
    if "/" not in entry:
        return False
    import ipaddress  # only for a no_proxy entry that is a network

    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
