"""``pveam source add|list|remove``: the index sources in ``etc/pveam/sources.cfg``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from shared.cli import OutputFormat, OutputFormatOption, new_app, print_json
from shared.errors import ParamError
from shared.formats.types import FormatError

from ..output import utc_time, warn

if TYPE_CHECKING:
    from index import sources as index_sources

app = new_app("Manage the index sources (sources.cfg).")


def _check(errors: dict[str, str], param: str, check: Callable[[str], str], value: str) -> None:
    try:
        check(value)
    except FormatError as err:
        errors.setdefault(param, str(err))


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Source name (also its stored index's name).")],
    url: Annotated[str, typer.Argument(help="Base URL (http:// or https://).")],
    index: Annotated[str, typer.Option(help="Index file name below the URL, e.g. aplinfo.dat.")],
    fingerprints: Annotated[
        str, typer.Option(help="Comma-separated fingerprints of the keys that may sign it.")
    ],
    mirrors: Annotated[
        str | None, typer.Option(help="Comma-separated further base URLs, tried in order.")
    ] = None,
    enabled: Annotated[bool, typer.Option("--enabled/--no-enabled", help="0 or 1.")] = True,
    connect_timeout: Annotated[
        str | None, typer.Option(help="Seconds to wait for a connection (default 10).")
    ] = None,
    read_timeout: Annotated[
        str | None, typer.Option(help="Seconds to wait for data (default 15).")
    ] = None,
    retries: Annotated[
        str | None, typer.Option(help="Further attempts per file (default 2).")
    ] = None,
    max_size: Annotated[
        str | None, typer.Option(help="Largest template without Content-Length (default 16G).")
    ] = None,
    max_index_size: Annotated[
        str | None, typer.Option(help="Largest index or signature (default 64M).")
    ] = None,
) -> None:
    """Add an index source with the fingerprints it accepts signatures from."""
    from index import keys as index_keys
    from index import sources as index_sources

    errors: dict[str, str] = {}
    _check(errors, "name", index_sources.check_name, name)
    _check(errors, "url", index_sources.check_url, url)
    _check(errors, "index", index_sources.check_index, index)
    fprs = _split(fingerprints)
    if not fprs:
        errors["fingerprints"] = "at least one fingerprint is required"
    for fpr in fprs:
        _check(errors, "fingerprints", index_sources.check_fingerprint, fpr)
    for mirror in _split(mirrors):
        _check(errors, "mirrors", index_sources.check_url, mirror)
    given = {
        "connect-timeout": connect_timeout,
        "read-timeout": read_timeout,
        "retries": retries,
        "max-size": max_size,
        "max-index-size": max_index_size,
    }
    limits = {key: value for key, value in given.items() if value is not None}
    for key, value in limits.items():
        try:
            index_sources.check_limit(key, value)
        except FormatError as err:
            errors[key] = str(err)
    if errors:
        raise ParamError(errors)
    src = index_sources.make_source(name, url, index, fprs, _split(mirrors), enabled, limits)
    index_sources.add_source(src)
    ring = {k.fingerprint for k in index_keys.list_keys()}
    missing = [f for f in src.fingerprints if f not in ring]
    if len(missing) == len(src.fingerprints):
        warn(
            "note: none of the pinned keys is in the keyring yet; import one with "
            "'pveam key add <file>' before 'pveam update'"
        )


def _describe(src: index_sources.Source, ring: set[str]) -> list[str]:
    from index import sources as index_sources
    from index import store

    stored = store.stored_summary(src.name)
    lines = [f"{src.name} ({'enabled' if src.enabled else 'disabled'})"]
    lines.append(f"  url:          {src.url}")
    for mirror in src.mirrors:
        lines.append(f"  mirror:       {mirror}")
    lines.append(f"  index:        {src.index}")
    if src.transfer != index_sources.Transfer():
        lines.append(f"  limits:       {index_sources.describe_transfer(src.transfer)}")
    for i, fpr in enumerate(src.fingerprints):
        label = "  fingerprints: " if i == 0 else " " * 16
        lines.append(f"{label}{fpr} ({'in keyring' if fpr in ring else 'not in keyring'})")
    if stored["stored"]:
        signed = utc_time(stored["sig_timestamp"])
        lines.append(
            f"  stored:       signed {signed} UTC by {stored['fingerprint'] or '-'}, "
            f"updated {utc_time(stored['updated'])} UTC"
        )
    else:
        lines.append("  stored:       no index yet (run 'pveam update')")
    return lines


@app.command("list")
def list_sources(output_format: OutputFormatOption = OutputFormat.text) -> None:
    """List the sources, their pinned keys and what is stored for each."""
    from index import keys as index_keys
    from index import sources as index_sources
    from index import store

    sources = index_sources.load_sources()
    if output_format is not OutputFormat.text:
        print_json(
            [{**s.to_dict(), **store.stored_summary(s.name)} for s in sources], output_format
        )
        return
    ring: set[str] = set()
    for key in index_keys.list_keys():
        ring.update((key.fingerprint, *key.subkeys))
    for src in sources:
        print("\n".join(_describe(src, ring)))


@app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="The source's name.")]) -> None:
    """Remove a source and its stored index."""
    from index import sources as index_sources

    index_sources.remove_source(name)
