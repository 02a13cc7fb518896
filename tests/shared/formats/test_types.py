from __future__ import annotations

import pytest

from shared.formats import types as t


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", True),
        ("yes", True),
        ("On", True),
        ("true", True),
        ("0", False),
        ("no", False),
        ("off", False),
        ("FALSE", False),
    ],
)
def test_bool_words(raw: str, value: bool) -> None:
    assert t.Bool().parse(raw) is value


@pytest.mark.parametrize(
    ("vtype", "raw", "message"),
    [
        (t.Bool(), "maybe", "type check ('boolean') failed - got 'maybe'"),
        (t.Int(), "x", "type check ('integer') failed - got 'x'"),
        (t.Int(minimum=16), "8", "value must have a minimum value of 16"),
        (t.Int(maximum=6), "7", "value must have a maximum value of 6"),
        (t.Number(maximum=8192), "9000.5", "value must have a maximum value of 8192"),
        (t.Number(), "1.2.3", "type check ('number') failed - got '1.2.3'"),
        (
            t.Enum("system", "mail", "turnkeylinux"),
            "foo",
            "value 'foo' does not have a value in the enumeration 'system, mail, turnkeylinux'",
        ),
        (t.Str(max_length=3), "abcd", "value may only be 3 characters long"),
        (t.StorageId, "x", "invalid format - storage ID 'x' cannot be shorter than 2 characters"),
        (t.DnsName, "bad_name!", "invalid format - value does not look like a valid DNS name"),
    ],
)
def test_messages(vtype: t.ValueType, raw: str, message: str) -> None:
    with pytest.raises(t.FormatError) as info:
        vtype.parse(raw)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [
        (0, "0T"),
        (4 << 30, "4G"),
        (512 << 20, "512M"),
        (1 << 40, "1T"),
        (1537, "1537"),
        (3 << 10, "3K"),
        (1000, "1000"),
    ],
)
def test_format_size(nbytes: int, text: str) -> None:
    assert t.format_size(nbytes) == text


def test_parse_size_units() -> None:
    assert t.parse_size("4G") == 4 << 30
    assert t.parse_size("0.5G") == 512 << 20
    assert t.parse_size("8", default_unit="G") == 8 << 30
    with pytest.raises(t.FormatError):
        t.parse_size("4X")
    with pytest.raises(t.FormatError):  # a float of infinity: int() raised OverflowError
        t.parse_size("1" * 400)


def test_number_render_like_perl() -> None:
    assert t.Number().render(0.5) == "0.5"
    assert t.Number().render(2.0) == "2"


@pytest.mark.parametrize("text", ["２", "١٢", "1٢", "٣.5", "1e٣"])
def test_numbers_are_ascii_digits_only(text: str) -> None:
    """int() and float() read other scripts' digits: '--parallel ２' ran two workers."""
    with pytest.raises(t.FormatError, match=r"type check \(.(integer|number).\) failed"):
        (t.Number() if "." in text or "e" in text else t.Int()).parse(text)
    assert t.Int().parse("+2") == 2 and t.Number().parse("2.5") == 2.5  # as Proxmox's check


@pytest.mark.parametrize("value", ["ſtore", "İmages", "loca\u212a"])
def test_ids_are_ascii_whatever_unicode_case_folding_says(value: str) -> None:
    """Under Unicode case folding ``ſ``, ``İ`` and the Kelvin sign pass for ``s``, ``i``, ``k``."""
    with pytest.raises(t.FormatError):
        t.check_storage_id(value)
    with pytest.raises(t.FormatError):
        t.check_configid(value)
