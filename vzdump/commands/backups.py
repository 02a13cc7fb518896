"""Know your backups: ``vzdump list``, ``extractconfig``, ``browse``, ``extract``, ``verify``.

The names follow Proxmox (``pvesm list <storage> --content backup``, ``pvesm extractconfig``)
and live in vzdump, the app that makes the backups; the work is done in ``shared.backups``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shared.cli import OutputFormat, OutputFormatOption, print_json
from shared.errors import CtkitError, ParamError, VerifyError
from shared.printable import printable
from shared.tasklog import human_bytes

if TYPE_CHECKING:
    from shared.backups.inventory import BackupRow


def register(app: typer.Typer) -> None:
    app.command("list")(list_cmd)
    app.command("extractconfig")(extractconfig_cmd)
    app.command("browse")(browse_cmd)
    app.command("extract")(extract_cmd)
    app.command("verify")(verify_cmd)


def _when(epoch: int | None) -> str:
    if not epoch:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
    except (OverflowError, OSError, ValueError):  # an archive's time beyond any calendar
        return f"@{epoch}"


def _verified(row: BackupRow) -> str:

    v = row.verification
    if v is None:
        return "-"
    kind = "" if v.kind == "verify" else f" ({v.kind})"
    return f"{v.state} {_when(v.time)}{kind}"


def print_json_stream(items: Iterator[dict[str, Any]], fmt: OutputFormat) -> None:
    """A JSON array written item by item: a listing of millions of files never sits in memory."""
    indent = 2 if fmt is OutputFormat.json_pretty else None
    sep = "["
    for item in items:
        sys.stdout.write(sep + json.dumps(item, indent=indent, sort_keys=True))
        sep = ","
    sys.stdout.write("[]\n" if sep == "[" else "]\n")


def list_cmd(
    storage: Annotated[str, typer.Argument(metavar="storage")],
    vmid: Annotated[int | None, typer.Option(help="Only this guest's backups.")] = None,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """List a storage's backups with notes, protection and last verification."""
    from shared.backups.inventory import list_backup_rows

    rows = list_backup_rows(storage, vmid)
    if output_format is not OutputFormat.text:
        print_json([r.as_dict() for r in rows], output_format)
        return
    # a storage's file names are anyone's who writes there: no escape reaches the terminal
    volids = [printable(r.entry.volid) for r in rows]
    width = max([len("Volid")] + [len(v) for v in volids])
    head = f"{'Volid':<{width}} {'Format':<7} {'Size':>12} {'VMID':<9} {'Created':<19} "
    print(head + f"{'Prot':<4} {'Verified':<30} Notes")
    for row, volid in zip(rows, volids, strict=True):
        e = row.entry
        print(
            f"{volid:<{width}} {e.format:<7} {e.size:>12} {e.vmid or '':<9} "
            f"{_when(e.ctime):<19} {'yes' if e.protected else 'no':<4} "
            f"{_verified(row):<30} {row.notes_line}".rstrip()
        )


def extractconfig_cmd(volume: Annotated[str, typer.Argument(metavar="volume")]) -> None:
    """Print the container config stored in a backup (reads only the archive's first members)."""
    from shared.backups.config import extract_config
    from shared.backups.locate import locate

    data = extract_config(locate(volume))
    if sys.stdout.isatty():  # a hostile backup's config must not drive the terminal
        from shared.printable import printable, utf8_text

        lines = data.decode("utf-8", "surrogateescape").split("\n")
        sys.stdout.write("\n".join(utf8_text(printable(line)) for line in lines))
    else:  # into a file or a pipe: the config byte for byte, as Proxmox prints it
        sys.stdout.buffer.write(data)
    sys.stdout.flush()


def browse_cmd(
    volume: Annotated[str, typer.Argument(metavar="volume")],
    path: Annotated[str | None, typer.Argument(metavar="path", help="Only at or below")] = None,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """List the files in a backup (path, type, size, owner in the container's ids, mtime)."""
    from shared.backups import browse as browsing
    from shared.backups.locate import locate

    backup = locate(volume)
    entries = browsing.browse(backup, path)
    if output_format is not OutputFormat.text:
        print_json_stream((e.as_dict() for e in entries), output_format)
        return
    for e in entries:
        link = f" -> {e.target}" if e.target is not None else ""
        print(
            f"{e.type:<8} {e.mode:04o} {e.uid:>6}/{e.gid:<6} {e.size:>12} {_when(e.mtime)} "
            f"{e.path}{link}"
        )


def extract_cmd(
    volume: Annotated[str, typer.Argument(metavar="volume")],
    paths: Annotated[list[str], typer.Argument(metavar="path", help="Files or directories.")],
    target: Annotated[
        Path | None,
        typer.Option("--target", help="Host directory to extract into (made if missing)."),
    ] = None,
    vmid: Annotated[int | None, typer.Option(help="Extract into this container ...")] = None,
    dest: Annotated[
        str | None, typer.Option(help="... below this new directory inside it (e.g. /restored).")
    ] = None,
) -> None:
    """Extract files or directories of a backup into a host directory (existing files are
    kept, never replaced), or into a new directory of a container (owners mapped)."""
    from shared.backups import extract as extracting
    from shared.backups.intoct import extract_into_ct
    from shared.backups.locate import locate
    from shared.signals import interruptible

    if (target is None) == (vmid is None) or (vmid is None) != (dest is None):
        raise ParamError(message="give either --target <dir>, or --vmid <ct> with --dest <dir>")
    backup = locate(volume)
    with interruptible():
        if vmid is not None and dest is not None:
            out = extract_into_ct(backup, paths, vmid, dest)
            where = f"CT {vmid} at '{dest}'"
        else:
            assert target is not None
            out = extracting.extract_to_dir(backup, paths, target)
            where = f"'{target}'"
    for warning in out.warnings:
        print(f"WARN: {warning}", file=sys.stderr)
    print(f"extracted {out.count} member(s) into {where}")


def verify_cmd(
    volumes: Annotated[list[str] | None, typer.Argument(metavar="volume")] = None,
    storage: Annotated[
        str | None, typer.Option(help="Verify every backup of this storage ...")
    ] = None,
    vmid: Annotated[int | None, typer.Option(help="... of this guest only.")] = None,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Verify backups end to end: decompress, walk every tar header, parse the config, compare
    with the backup log. Each result is kept beside the archive and shown by ``vzdump list``;
    every backup is checked, the exit status is 7 when any failed."""
    from shared.backups.inventory import list_backup_rows
    from shared.backups.locate import locate
    from shared.backups.verify import verify

    names = list(volumes or [])
    if storage is not None:
        names += [row.entry.volid for row in list_backup_rows(storage, vmid)]
    elif vmid is not None or not names:
        raise ParamError(message="give volume ids, or --storage <id> [--vmid <vmid>]")
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for volume in names:
        try:
            report = verify(locate(volume))
        except CtkitError as err:
            if len(names) == 1 and not isinstance(err, VerifyError):
                raise  # the one volume asked for cannot be read: its own error and exit code
            failed.append(volume)  # one a listing named but locate refuses is a failure too
            results.append({"volid": volume, "state": "failed", "error": str(err)})
            if output_format is OutputFormat.text:
                print(printable(str(err)), file=sys.stderr)
            continue
        results.append({"volid": volume, "state": "ok", **report.as_dict()})
        if output_format is OutputFormat.text:
            print(
                f"{printable(volume)}: ok ({report.members} members, "
                f"{human_bytes(report.tar_bytes)} of tar data, {report.seconds:.1f}s)"
            )
    if output_format is not OutputFormat.text:
        print_json(results, output_format)
    if len(failed) > 1 or (failed and len(names) > 1):
        raise VerifyError(f"{len(failed)} of {len(names)} backups failed verification")
    if failed and output_format is OutputFormat.text:
        raise typer.Exit(VerifyError.exit_code)  # its one line is printed above
    if failed:
        raise VerifyError(str(results[-1]["error"]))
