"""``pveam available``: the templates of the stored indexes (no network)."""

from __future__ import annotations

from typing import Annotated

import typer

from shared.cli import OutputFormat, OutputFormatOption, print_json
from shared.errors import NotFoundError

from ..output import warn


def available(
    section: Annotated[
        str | None,
        typer.Option(help="Only this section (system, mail, turnkeylinux, or a source's own)."),
    ] = None,
    os: Annotated[
        str | None, typer.Option(help="Only templates of this OS, e.g. debian-12.")
    ] = None,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """List the templates of the stored indexes: section, template, architecture.

    Fails (exit 3) after the listing when an enabled source has no stored index yet."""
    from index import available as avail

    index = avail.load()  # warnings are printed after the parameters are checked
    apps = avail.available(section, os, index=index)
    for message in index.warnings:
        warn(message)
    if output_format is OutputFormat.text:
        print(avail.format_lines(apps), end="")
    else:
        print_json(avail.to_json(apps), output_format)
    missing = avail.missing_indexes()
    if missing:
        names = ", ".join(missing)
        raise NotFoundError(
            f"no stored index for source{'s' if len(missing) > 1 else ''} {names}",
            hint="run 'pveam update' first",
        )
