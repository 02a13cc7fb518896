"""The README's two entry points and its exit-code table stay true."""

from __future__ import annotations

import re
from pathlib import Path

from shared.errors import exit_code_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_starts_with_the_two_commands() -> None:
    head = README.read_text().split("\n## ", 1)[0]
    assert "make demo" in head and "make test" in head
    first_lines = [ln.strip() for ln in head.splitlines() if ln.strip()][1:3]
    assert first_lines[0].startswith("make demo") and first_lines[1].startswith("make test")


def test_exit_code_table_matches_the_code() -> None:
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| (.+?) \|$", README.read_text(), re.M)
    documented = [(int(code), name, meaning) for code, name, meaning in rows]
    assert documented == exit_code_table()
