"""shared.toolenv: the tools ctkit reads run in the C locale (end to end in
tests/vzdump/engine/test_roundtrip.py::test_a_user_in_another_language)."""

from __future__ import annotations

import pytest

from shared.toolenv import tool_env


def test_the_c_locale_wins_and_language_goes() -> None:
    base = {"LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8", "LANGUAGE": "de:en", "PATH": "/bin"}
    env = tool_env(base)
    assert env == {"LANG": "de_DE.UTF-8", "LC_ALL": "C", "PATH": "/bin"}
    assert base["LANGUAGE"] == "de:en"  # the caller's mapping is not changed


def test_this_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGUAGE", "fr")
    monkeypatch.setenv("CTKIT_TOOLENV_PROBE", "1")
    env = tool_env()
    assert env["CTKIT_TOOLENV_PROBE"] == "1" and env["LC_ALL"] == "C" and "LANGUAGE" not in env
