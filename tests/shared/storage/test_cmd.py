from __future__ import annotations

import pytest

from shared.errors import CommandError
from shared.storage import cmd


def test_run_returns_stdout_in_the_c_locale() -> None:
    assert cmd.run(["sh", "-c", "echo $LC_ALL"]) == "C\n"
    assert cmd.run(["sh", "-c", "exit 3"], ok_codes=(0, 3)) == ""


def test_failure_names_the_command_and_the_last_error_line() -> None:
    with pytest.raises(CommandError) as exc:
        cmd.run(["sh", "-c", "echo one >&2; echo 'two words' >&2; exit 4", "x y"])
    assert str(exc.value) == (
        "command 'sh -c 'echo one >&2; echo '\"'\"'two words'\"'\"' >&2; exit 4' 'x y'' failed: "
        "exit code 4 - two words"
    )
    with pytest.raises(CommandError, match=r"^command 'no-such-tool-x' not found$"):
        cmd.run(["no-such-tool-x"])


def test_succeeds() -> None:
    assert cmd.succeeds(["true"])
    assert not cmd.succeeds(["false"])
    assert not cmd.succeeds(["no-such-tool-x"])
