"""pct resize, df, cpusets, fstrim, push, pull."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from shared.cli import OutputFormat, OutputFormatOption, print_json

from .common import VmidArg, echo, log_line

UserOpt = Annotated[str | None, typer.Option(help="Owner user name or id.")]
GroupOpt = Annotated[str | None, typer.Option(help="Owner group name or id.")]
PermsOpt = Annotated[
    str | None, typer.Option(help="File permissions (octal by default, 0x for hexadecimal).")
]


def register(app: typer.Typer) -> None:
    for name, func in (
        ("resize", resize), ("df", df), ("cpusets", cpusets), ("fstrim", fstrim),
        ("push", push), ("pull", pull),
    ):  # fmt: skip
        app.command(name)(func)


def resize(
    vmid: VmidArg,
    disk_key: Annotated[str, typer.Argument(metavar="disk", help="rootfs or mpN.")],
    size: Annotated[str, typer.Argument(metavar="size", help="New size; +N grows by N.")],
    digest: Annotated[str | None, typer.Option(help="Refuse if the config changed.")] = None,
) -> None:
    """Grow a container volume (never shrinks)."""
    from ..ops import disk

    disk.resize(vmid, disk_key, size, digest=digest, log=log_line)


def df(vmid: VmidArg, output_format: OutputFormatOption = OutputFormat.text) -> None:
    """Show the disk usage of the container's volumes."""
    from ..ops import disk

    rows = disk.df(vmid)
    if output_format is OutputFormat.text:
        echo(disk.render_df(rows))
    else:
        print_json([asdict(r) for r in rows], output_format)


def cpusets(output_format: OutputFormatOption = OutputFormat.text) -> None:
    """Show the CPUs assigned to running containers."""
    from ..ops import disk

    sets = disk.cpusets()
    if output_format is OutputFormat.text:
        echo(disk.render_cpusets(sets))
    else:
        print_json({str(k): sorted(v) for k, v in sets.items()}, output_format)


def fstrim(
    vmid: VmidArg,
    ignore_mountpoints: Annotated[
        bool | None,
        typer.Option(
            "--ignore-mountpoints/--no-ignore-mountpoints", help="Only trim the root file system."
        ),
    ] = None,
) -> None:
    """Discard unused blocks of rootfs and the volume mount points (not bind, not ro)."""
    from ..ops import disk

    disk.fstrim(vmid, ignore_mountpoints=bool(ignore_mountpoints), log=log_line)


def push(
    vmid: VmidArg,
    file: Annotated[Path, typer.Argument(metavar="file", help="A local file.")],
    destination: Annotated[str, typer.Argument(metavar="destination", help="Path in the CT.")],
    user: UserOpt = None,
    group: GroupOpt = None,
    perms: PermsOpt = None,
) -> None:
    """Copy a local file into the running container."""
    from ..ops import disk

    disk.push(vmid, file, destination, disk.Owner(user, group, perms))


def pull(
    vmid: VmidArg,
    path: Annotated[str, typer.Argument(metavar="path", help="A file in the CT.")],
    destination: Annotated[Path, typer.Argument(metavar="destination", help="Local path.")],
    user: UserOpt = None,
    group: GroupOpt = None,
    perms: PermsOpt = None,
) -> None:
    """Copy a file out of the running container."""
    from ..ops import disk

    disk.pull(vmid, path, destination, disk.Owner(user, group, perms))
