"""``pveam download <storage> <template>``: fetch a template into a storage, verified."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.errors import NotFoundError, ParamError

from ..output import say, warn

if TYPE_CHECKING:
    from index.sources import Transfer

MAX_TEMPLATE = 255


class TemplateNotFound(ParamError):
    """Proxmox's ``template: no such template`` lines, with the not-found exit code (the
    README's table: a template that does not exist is 3)."""

    exit_code = NotFoundError.exit_code


def _transfer(source_name: str) -> Transfer:
    from index.sources import Transfer, load_sources

    for src in load_sources():
        if src.name == source_name:
            return src.transfer
    return Transfer()


def download(storage: str, template: str) -> None:
    """Download a template: its exact file name, or a prefix such as 'debian-12-standard'
    (the newest matching version). The sha512 (or md5) of the signed index is checked."""
    from index import available as avail
    from index.download import download_template, sweep_stale_partials
    from index.lookup import NoSuchTemplate, find_template
    from shared.signals import interruptible
    from shared.storage import api as storage_api

    from ..progress import DownloadProgress

    storage_api.check_storage_id(storage)
    if len(template) > MAX_TEMPLATE:
        raise ParamError({"template": f"value may only be {MAX_TEMPLATE} characters long"})
    offered = avail.load(warn=warn)
    try:
        choice = find_template(offered, template)
    except NoSuchTemplate as err:
        kind = ParamError if err.ambiguous else TemplateNotFound
        missing = kind({"template": "no such template"})
        missing.hint = err.hint
        raise missing from None
    directory = storage_api.template_dir(storage)
    if choice.note:
        say(choice.note)
    app = choice.appliance
    sweep_stale_partials(directory, offered.all, say)
    with interruptible(), DownloadProgress(app.template) as progress:
        download_template(
            app, directory, progress=progress, log=say, transfer=_transfer(app.source_name)
        )
