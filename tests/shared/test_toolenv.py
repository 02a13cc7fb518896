"""shared.toolenv: the tools ctkit reads run in the C locale (end to end in
tests/vzdump/engine/test_roundtrip.py::test_a_user_in_another_language), and find the system's
tools whatever PATH the command was given (end to end in tests/pct/test_create.py)."""

from __future__ import annotations

import os

import pytest

from shared.toolenv import SYSTEM_PATH, complete_path, tool_env


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


LOCAL = "/usr/local/sbin:/usr/local/bin"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (None, SYSTEM_PATH),  # env -i
        ("/usr/bin:/bin", "/usr/bin:/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin"),  # cron
        (
            "/opt/tools:/usr/sbin:/usr/bin:/sbin:/bin",
            "/opt/tools:/usr/sbin:/usr/bin:/sbin:/bin:" + LOCAL,
        ),
        (SYSTEM_PATH, SYSTEM_PATH),
    ],
)
def test_path_completed_after_what_the_caller_gave(
    monkeypatch: pytest.MonkeyPatch, path: str | None, expected: str
) -> None:
    if path is None:
        monkeypatch.delenv("PATH", raising=False)
    else:
        monkeypatch.setenv("PATH", path)
    complete_path()
    assert os.environ["PATH"] == expected
