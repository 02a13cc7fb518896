"""``pveam download <storage> <template>``: fetch a template into a storage, verified."""

from __future__ import annotations

from index import available as avail
from index.download import download_template
from index.lookup import NoSuchTemplate, find_template
from shared.errors import ParamError
from shared.storage import api as storage_api

from ..output import say, warn
from ..progress import DownloadProgress

MAX_TEMPLATE = 255


def download(storage: str, template: str) -> None:
    """Download a template: its exact file name, or a prefix such as 'debian-12-standard'
    (the newest matching version). The sha512 (or md5) of the signed index is checked."""
    storage_api.check_storage_id(storage)
    if len(template) > MAX_TEMPLATE:
        raise ParamError({"template": f"value may only be {MAX_TEMPLATE} characters long"})
    try:
        choice = find_template(avail.load(warn=warn), template)
    except NoSuchTemplate as err:
        param = ParamError({"template": "no such template"})
        param.hint = err.hint
        raise param from None
    directory = storage_api.template_dir(storage)
    if choice.note:
        say(choice.note)
    with DownloadProgress(choice.appliance.template) as progress:
        download_template(choice.appliance, directory, progress=progress, log=say)
