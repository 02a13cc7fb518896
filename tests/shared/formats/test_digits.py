"""Decimal numbers from outside text: ASCII digits only, bounded in length."""

from __future__ import annotations

import pytest

from shared.formats.digits import ascii_int


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("007", 7), ("18446744073709551615", (1 << 64) - 1), ("²", None),
     ("١٢", None), ("", None), ("-1", None), (" 1", None), ("1e3", None), ("9" * 21, None),
     ("9" * 5000, None)],
)  # fmt: skip
def test_ascii_int(text: str, value: int | None) -> None:
    assert ascii_int(text) == value
    assert ascii_int("123", 2) is None
