"""The container's ``hookscript`` (a snippets volume): ``<script> <vmid> <phase>``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

from .. import userscript
from ..ctconfig.config import Config
from ..errors import CommandError, ConfigError
from ..storage.api import resolve_volume, volume_path


def script_path(volid: str) -> str:
    """The path of an executable hook script; the volume id must name a snippet, so it can
    never point outside the storage's snippets directory."""
    _store, vol = resolve_volume(volid)
    if vol.vtype != "snippets":
        raise ConfigError(f"'{volid}' is not in the snippets directory")
    path = str(volume_path(volid))
    if not os.path.isfile(path):
        raise ConfigError(f"hookscript '{volid}' does not exist")
    if not os.access(path, os.X_OK):
        raise ConfigError(f"hookscript '{volid}' is not executable")
    return path


def run(conf: Config, phase: str, *, fatal: bool, warn: Callable[[str], None] = print) -> None:
    """Run the hook script for ``phase``; a failure raises when ``fatal`` else warns. Its
    stdin is empty, as under Proxmox: a ``read`` in it took what the user typed, or waited."""
    volid = conf.get("hookscript")
    if not volid:
        return
    what = f"hookscript error for {conf.vmid} on {phase}"
    try:
        argv = [script_path(str(volid)), str(conf.vmid), phase]
        try:
            proc = userscript.popen(argv, stdin=subprocess.DEVNULL)
        except OSError as err:
            raise CommandError(f"{what}: {userscript.not_started(argv, err)}") from None
        try:
            proc.wait()
        except BaseException:  # interrupted: the hook ends with the command, as subprocess.run
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0:
            raise CommandError(f"{what}: {userscript.failure(argv, proc.returncode)}")
    except (CommandError, ConfigError) as err:
        if fatal:
            raise
        warn(str(err))
