"""Every container option in the help of the commands that take them (create, set, restore).

Those commands read the config keys as extra ``-key value`` arguments, so click does not know
them; this appends the whole option table of the container config to their help. The table is
made when a help is shown, not for every pct command: it needs the whole option schema.
"""

from __future__ import annotations

from typing import Any

import typer

from shared.cli import epilog_command

TAKES_CONFIG_OPTIONS = ("create", "set", "restore")


def _describe(vtype: Any) -> str:
    from shared.formats.propstring import PropSchema

    schema = getattr(vtype, "schema", None)
    if not isinstance(schema, PropSchema):
        return str(vtype.describe())
    first, required, optional = [], [], []
    for name, field in schema.fields.items():
        value = field.type.describe()
        if field.default_key:
            first.append(f"[{name}=]{value}")
        elif not field.optional:
            required.append(f"{name}={value}")
        else:
            optional.append(f"[,{name}={value}]")
    return ",".join(first + required) + "".join(optional)


def options_help(own: frozenset[str] = frozenset()) -> str:
    """The table, without the keys in ``own``: the command's own options, whose help above
    gives the command's default (``create`` makes unprivileged containers, where a config
    without the key means privileged)."""
    from shared.ctconfig.options import FIXED, INDEXED, option_spec

    lines = ["\b", "Container options (any key of the config, as -key value or --key value):"]
    for key, spec in sorted(FIXED.items()):
        if spec.internal or key in own:
            continue
        default = "" if spec.default is None else f"   (default={_default(spec.default)})"
        lines.append(f"  --{key} {_describe(spec.type)}{default}")
    for family, count in sorted(INDEXED.items()):
        member = option_spec(f"{family}0")
        assert member is not None
        lines.append(f"  --{family}[0..{count - 1}] {_describe(member.type)}")
    return "\n".join(lines)


def _default(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


ConfigOptionsCommand = epilog_command(options_help)  # create/set/restore: the container options


def register(app: typer.Typer) -> None:
    """Call after every command is registered."""
    for info in app.registered_commands:
        if info.name in TAKES_CONFIG_OPTIONS:
            info.cls = ConfigOptionsCommand
