"""Container text shown on the host: every control and line-break character escaped."""

from __future__ import annotations

from shared.printable import printable


def test_control_characters_are_escaped_and_the_rest_kept() -> None:
    assert printable("x\x1b]0;PWNED\x07\x1b[2Jy") == "x\\x1b]0;PWNED\\x07\\x1b[2Jy"
    assert printable("a\rb\nc\x85d\u2028e\x7f") == "a\\x0db\\x0ac\\x85d\\u2028e\\x7f"
    assert printable("tab\tand ünïcode, 'quotes' ok") == "tab\tand ünïcode, 'quotes' ok"


def test_every_character_is_escaped_exactly_when_it_is_a_control_or_line_break() -> None:
    for code in range(0x3000):
        char = chr(code)
        control = (code < 0x20 and char != "\t") or 0x7F <= code <= 0x9F or code in (0x2028, 0x2029)
        expected = (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}") if control else char
        assert printable(f"a{char}b") == f"a{expected}b", hex(code)
