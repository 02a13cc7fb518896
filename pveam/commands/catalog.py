"""``pveam index build|verify``: publish a signed catalog of a template directory, check one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shared.cli import new_app
from shared.errors import VerifyError

from ..output import say, utc_time, warn

app = new_app("Build and verify a signed template catalog (aplinfo.dat) of a directory.")

# One rule for build and verify: the same keyring, the one that holds your signing key.
GnupgHome = Annotated[
    Path | None,
    typer.Option(
        "--gnupghome",
        help="GnuPG home holding the key (default: gpg's own, $GNUPGHOME or ~/.gnupg).",
    ),
]


@app.command("build")
def build(
    dir: Annotated[Path, typer.Argument(help="The directory holding the templates.")],
    url: Annotated[str, typer.Option(help="The base URL the directory will be served at.")],
    key: Annotated[str, typer.Option(help="Fingerprint of the secret key that signs.")],
    section: Annotated[str, typer.Option(help="Section of every template.")] = "system",
    gnupghome: GnupgHome = None,
    maintainer: Annotated[str | None, typer.Option(help="Maintainer field.")] = None,
    infopage: Annotated[str | None, typer.Option(help="Infopage URL (default: the URL).")] = None,
) -> None:
    """Write aplinfo.dat, aplinfo.dat.gz and the detached signature aplinfo.dat.asc."""
    from index import catalog

    result = catalog.build_catalog(
        dir,
        base_url=url,
        key=key,
        section=section,
        gnupghome=gnupghome,
        maintainer=maintainer,
        infopage=infopage,
    )
    for app_ in result.appliances:
        say(f"added {app_.template or app_.location} ({app_.os}, {app_.architecture})")
    say(
        f"wrote {result.index}, {result.gz.name} and {result.signature.name} "
        f"({len(result.appliances)} templates, signed by {result.fingerprint})"
    )


@app.command("verify")
def verify(
    dir: Annotated[Path, typer.Argument(help="The directory holding the catalog.")],
    key: Annotated[str, typer.Option(help="Fingerprint of the key that must have signed it.")],
    gnupghome: GnupgHome = None,
) -> None:
    """Check a catalog as update and download would: signature, index, every checksum."""
    from index import catalog

    report = catalog.verify_catalog(dir, key=key, gnupghome=gnupghome)
    if report.fingerprint:
        say(f"signature: good, by {report.fingerprint}, made {utc_time(report.sig_timestamp)} UTC")
    for template, status in report.templates:
        say(f"{template}: {status}")
    if report.fingerprint and not report.in_pveam_keyring:
        warn(
            f"note: {report.fingerprint} is not in pveam's keyring on this host; clients need "
            "'pveam key add <exported public key>' and a source pinning it"
        )
    shown = {f"{template}: {status}" for template, status in report.templates}
    for problem in report.problems:
        if problem not in shown:  # a template's problem is already on its line above
            warn(f"error: {problem}")
    if not report.ok:
        count = len(report.problems)
        raise VerifyError(
            f"verification of '{report.index}' failed ({count} problem{'' if count == 1 else 's'})"
        )
