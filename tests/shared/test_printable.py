"""Container text shown on the host: every control and line-break character escaped."""

from __future__ import annotations

from shared.printable import printable


def test_control_characters_are_escaped_and_the_rest_kept() -> None:
    assert printable("x\x1b]0;PWNED\x07\x1b[2Jy") == "x\\x1b]0;PWNED\\x07\\x1b[2Jy"
    assert printable("a\rb\nc\x85d\u2028e\x7f") == "a\\x0db\\x0ac\\x85d\\u2028e\\x7f"
    assert printable("tab\tand ünïcode, 'quotes' ok") == "tab\tand ünïcode, 'quotes' ok"
