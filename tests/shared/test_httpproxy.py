"""shared.httpproxy: the environment's proxy rules."""

from __future__ import annotations

import pytest

from shared.httpproxy import bypassed, env_proxy


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypass"),
    [
        ("mirror.example.org", 80, "example.org", True),
        ("mirror.example.org", 80, ".example.org", True),
        ("example.org", 80, "example.org", True),
        ("badexample.org", 80, "example.org", False),
        ("example.org", 8080, "example.org:8080", True),
        ("example.org", 80, "example.org:8080", False),
        ("10.1.2.3", 80, "10.0.0.0/8", True),
        ("11.1.2.3", 80, "10.0.0.0/8", False),
        ("2001:db8::5", 80, "2001:db8::/32", True),
        ("::1", 80, "::1", True),
        ("::1", 3128, "[::1]:3128", True),
        ("anything", 80, "*", True),
        ("Mirror.Example.ORG.", 80, " foo , EXAMPLE.org", True),
        ("mirror.example.org", 80, "", False),
    ],
)
def test_no_proxy_rules(host: str, port: int, no_proxy: str, bypass: bool) -> None:
    assert bypassed(host, port, no_proxy) is bypass


def test_the_proxy_of_a_scheme_then_all_proxy_and_no_proxy(monkeypatch: pytest.MonkeyPatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    assert env_proxy("http", "mirror.example.org", None) is None
    monkeypatch.setenv("ALL_PROXY", "http://198.18.0.9:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://198.18.0.8:3128")
    monkeypatch.setenv("https_proxy", "http://198.18.0.7:3128")  # lower case wins
    assert env_proxy("https", "mirror.example.org", 443) == "http://198.18.0.7:3128"
    assert env_proxy("http", "mirror.example.org", 80) == "http://198.18.0.9:3128"
    monkeypatch.setenv("no_proxy", "example.org")
    assert env_proxy("https", "mirror.example.org", 443) is None
