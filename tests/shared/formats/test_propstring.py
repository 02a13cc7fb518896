from __future__ import annotations

import pytest

from shared.formats.propstring import Field, PropertyStringError, PropSchema, split_list
from shared.formats.types import Bool, FormatError, ListOf, Size, Str

MP = PropSchema(
    {
        "volume": Field(Str(), default_key=True, optional=False),
        "mp": Field(Str(), optional=False),
        "backup": Field(Bool()),
        "size": Field(Size()),
        "mountoptions": Field(ListOf(Str(enum=("noatime", "nodev")), split=";", join=";")),
    }
)


def test_canonical_order_default_required_rest() -> None:
    data = MP.parse("size=10G,mp=/srv,local:100/vm-100-disk-1.raw,backup=yes")
    assert data == {
        "volume": "local:100/vm-100-disk-1.raw",
        "mp": "/srv",
        "size": 10 << 30,
        "backup": True,
    }
    assert MP.render(data) == "local:100/vm-100-disk-1.raw,mp=/srv,backup=1,size=10G"


def test_explicit_default_key_and_lists() -> None:
    data = MP.parse("volume=local:4,mp=/a,mountoptions=noatime;nodev")
    assert data["mountoptions"] == ["noatime", "nodev"]
    assert MP.render(data) == "local:4,mp=/a,mountoptions=noatime;nodev"


def test_errors_name_the_subkey() -> None:
    with pytest.raises(PropertyStringError) as info:
        MP.parse("local:4,mp=/a,foo=bar,backup=maybe")
    assert str(info.value) == "invalid format - format error"
    assert info.value.details == {
        "foo": "property is not defined in schema and the schema does not allow additional "
        "properties",
        "backup": "type check ('boolean') failed - got 'maybe'",
    }


def test_missing_required() -> None:
    with pytest.raises(PropertyStringError) as info:
        MP.parse("local:4")
    assert info.value.details == {"mp": "property is missing and it is not optional"}


def test_duplicate_key() -> None:
    with pytest.raises(FormatError, match="duplicate key"):
        MP.parse("local:4,mp=/a,mp=/b")


def test_lenient_keeps_unknown() -> None:
    assert MP.parse("local:4,mp=/a,foo=bar", lenient=True)["foo"] == "bar"


def test_quoted_value_with_comma() -> None:
    schema = PropSchema({"name": Field(Str()), "desc": Field(Str())})
    assert schema.parse('name=a,desc="x,y"') == {"name": "a", "desc": "x,y"}
    # written back quoted: unquoted, the rest of the value read back as keys of their own
    data = MP.parse('/srv/b,mp="/mnt/a,backup=1"')
    assert data == {"volume": "/srv/b", "mp": "/mnt/a,backup=1"}
    assert MP.render(data) == '/srv/b,mp="/mnt/a,backup=1"'
    assert MP.parse(MP.render(data)) == data
    assert MP.render({"volume": "/srv/a,b", "mp": "/x"}) == '"/srv/a,b",mp=/x'
    with pytest.raises(FormatError, match="value of 'mp' may not contain"):
        MP.render({"volume": "v", "mp": '/x"y'})


def test_split_list() -> None:
    assert split_list(" a, b;c  d ") == ["a", "b", "c", "d"]
    assert split_list("") == []
    assert split_list("a b\0c") == ["a b", "c"]  # NUL-separated lists keep their blanks
