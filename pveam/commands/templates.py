"""``pveam list <storage>`` and ``pveam remove <volid>``: the templates on a storage."""

from __future__ import annotations

from typing import Annotated

import typer

from shared.cli import OutputFormat, OutputFormatOption, print_json
from shared.errors import ParamError
from shared.printable import printable

MAX_VOLID = 255
MIB = 1048576


def list_templates(
    storage: str,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """List the templates stored on a storage (NAME, SIZE in MiB)."""
    from shared.storage import api as storage_api

    entries = storage_api.list_templates(storage)
    if output_format is not OutputFormat.text:
        rows = [
            {"volid": e.volid, "size": e.size, "format": e.format, "ctime": e.ctime}
            for e in entries
        ]
        print_json(rows, output_format)
        return
    lines = [f"{'NAME':<60} {'SIZE':<6}"]
    lines += [f"{printable(e.volid):<60} {e.size / MIB:.2f}MB" for e in entries]
    print("\n".join(lines))


def remove(
    template_path: Annotated[
        str, typer.Argument(help="The template's volume ID, e.g. local:vztmpl/<file>.")
    ],
) -> None:
    """Remove a template. Only volume IDs are accepted, never file-system paths."""
    from shared.storage import api as storage_api

    if len(template_path) > MAX_VOLID:
        raise ParamError({"template_path": f"value may only be {MAX_VOLID} characters long"})
    storage_api.remove_template(template_path)
