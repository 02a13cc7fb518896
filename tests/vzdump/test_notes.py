"""Notes templates (vzdump §2.2.5, acceptance case 28)."""

from __future__ import annotations

import pytest

from shared import paths
from shared.errors import ParamError
from shared.formats.types import FormatError
from vzdump import notes, options


def test_two_line_notes_from_guestname_and_vmid() -> None:
    template = r"{{guestname}}\n{{vmid}}"
    notes.check_template(template)
    assert notes.render(template, 100, guestname="web") == "web\n100"


def test_all_variables_and_escapes() -> None:
    text = notes.render(r"{{cluster}} on {{node}}: \\{{vmid}}\\", 123, "db", node="pve1")
    assert text == "standalone node on pve1: \\123\\"


def test_defaults_guestname_and_node() -> None:
    assert notes.render("{{guestname}}@{{node}}", 4242) == f"CT4242@{paths.node_name()}"


def test_values_are_not_rescanned() -> None:
    assert notes.render("{{guestname}}", 100, guestname="{{vmid}}") == "{{vmid}}"


def test_spaced_braces_are_not_variables() -> None:
    notes.check_template("{{ vmid }}")
    assert notes.render("{{ vmid }}", 100) == "{{ vmid }}"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{foo}}", "found unknown: variable 'foo' at char 4"),
        ("a {{vmid}} {{Vmid}}", "found unknown: variable 'Vmid' at char 15"),
        (r"x\ty", "found unknown: escape sequence '\\t' at char 1"),
        (
            r"a\x {{foo}} \\ {{vmid}} \q",
            "found unknown: escape sequence '\\x' at char 1, escape sequence '\\q' at char 24, "
            "variable 'foo' at char 8",
        ),
        ("two\nlines", "contains a line feed"),
    ],
)
def test_invalid_templates(template: str, message: str) -> None:
    with pytest.raises(FormatError) as info:
        notes.check_template(template)
    assert str(info.value) == message
    with pytest.raises(FormatError):
        notes.render(template, 100)


def test_escaped_backslash_is_not_an_escape_start() -> None:
    notes.check_template(r"\\x")  # "\\" then a plain "x"
    assert notes.render(r"\\x", 100) == "\\x"


def test_invalid_template_is_a_parameter_error() -> None:
    with pytest.raises(ParamError) as info:
        options.parse_params({"vmid": "100", "notes-template": "{{foo}}"})
    assert info.value.errors == {"notes-template": "found unknown: variable 'foo' at char 4"}


def test_template_length_limit() -> None:
    options.parse_params({"notes-template": "x" * 1024})
    with pytest.raises(ParamError) as info:
        options.parse_params({"notes-template": "x" * 1025})
    assert info.value.errors == {"notes-template": "value may only be 1024 characters long"}
