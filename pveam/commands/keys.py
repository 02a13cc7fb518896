"""``pveam key add|list|remove``: the keyring that index signatures are checked against.

A key only counts for a source that pins its fingerprint; ``key list`` shows which ones do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shared.cli import OutputFormat, OutputFormatOption, new_app, print_json
from shared.errors import ParamError

from ..output import say, table, utc_time, warn

if TYPE_CHECKING:
    from index import sources as index_sources
    from shared.gpg import KeyInfo

app = new_app("Manage the OpenPGP keys that may sign index files.")


def pinned_by(key: KeyInfo, sources: Sequence[index_sources.Source]) -> list[str]:
    """The names of the sources that pin this key (its primary key or a subkey)."""
    mine = {key.fingerprint, *key.subkeys}
    return [src.name for src in sources if mine.intersection(src.fingerprints)]


def _first_uid(key: KeyInfo) -> str:
    return key.uids[0] if key.uids else ""


@app.command("add")
def add(
    file: Annotated[Path, typer.Argument(help="An armoured or binary OpenPGP public key file.")],
) -> None:
    """Import the public key(s) of a file into pveam's keyring."""
    from index import keys as index_keys
    from index import sources as index_sources

    sources = index_sources.load_sources()
    now = time.time()
    for key in index_keys.add_key(file):
        say(f"imported key {key.fingerprint} {_first_uid(key)}".rstrip())
        if key.expires is not None and key.expires <= now:
            warn(
                f"note: {key.fingerprint} expired on {utc_time(key.expires)}; "
                "signatures by it are not accepted until it is renewed"
            )
        if not pinned_by(key, sources):
            warn(
                f"note: no source pins {key.fingerprint} yet; name it with "
                "'pveam source add ... --fingerprints <fpr>'"
            )


@app.command("list")
def list_keys(output_format: OutputFormatOption = OutputFormat.text) -> None:
    """List the keys: fingerprint, creation date, the sources pinning it, user id."""
    from index import keys as index_keys
    from index import sources as index_sources

    sources = index_sources.load_sources()
    keys = index_keys.list_keys()
    if output_format is not OutputFormat.text:
        data: list[dict[str, Any]] = [
            {**k.to_dict(), "sources": pinned_by(k, sources)} for k in keys
        ]
        print_json(data, output_format)
        return
    rows = [
        [
            k.fingerprint,
            utc_time(k.created, "%Y-%m-%d"),
            ",".join(pinned_by(k, sources)) or "-",
            _first_uid(k),
        ]
        for k in keys
    ]
    print(table(["FINGERPRINT", "CREATED", "SOURCES", "UID"], rows))


@app.command("remove")
def remove(
    fingerprint: Annotated[str, typer.Argument(help="The key's full fingerprint.")],
) -> None:
    """Remove a key from the keyring."""
    from index import keys as index_keys
    from index import sources as index_sources
    from shared.gpg import normalize_fingerprint

    try:
        fpr = normalize_fingerprint(fingerprint)
    except ValueError as err:
        raise ParamError({"fingerprint": str(err)}) from None
    index_keys.remove_key(fpr)
    users = [s.name for s in index_sources.load_sources() if fpr in s.fingerprints]
    if users:
        warn(f"note: source(s) {', '.join(users)} still pin {fpr}")
