"""``pct template``: turn a stopped container into a template (Proxmox's vztemplate task)."""

from __future__ import annotations

from collections.abc import Callable

from shared import owner as owners
from shared.atomic import WriteError
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.ctconfig.mountpoints import volume_owner
from shared.errors import CtkitError, StateError
from shared.locks import config_lock
from shared.runtime import lxcapi, recovery
from shared.runtime import template as cttemplate

from .provision import convert_to_template

Log = Callable[[str], None]


def make_template(vmid: int, log: Log = print) -> None:
    """Volumes become read-only base volumes, ``template: 1``, the LXC config goes away.

    The checks and their order are Proxmox's. The config is saved after every volume rename,
    so a failure half-way leaves a config that names every volume where it now is. A kill
    between a rename and that save is finished by the next command: the conversion runs under
    an owner record (:mod:`shared.runtime.template`).
    """
    # our record must not replace a dead owner's; a dead pct template's is this very request,
    # which its recovery has now finished
    dead = recovery.recover(vmid, log)
    with config_lock(vmid):
        conf = store.load(vmid)
        store.check_lock(conf)
        if conf.snapshots:
            raise StateError("unable to create template, because CT contains snapshots")
        if conf.is_template and dead is not None and dead.op == cttemplate.OWNER_OP:
            return
        if conf.is_template:
            raise StateError("you can't convert a template to a template")
        if lxcapi.is_running(vmid):
            raise StateError("you can't convert a CT to template if the CT is running")
        _check_volumes(conf)
        owner = owners.claim(vmid, cttemplate.OWNER_OP)
        try:
            convert_to_template(conf, after_each=store.save)
            store.save(conf)
        except WriteError:
            # a volume is renamed, and the config that would name it is not written (a full
            # /etc/pve): the record stays, and the next command finishes the conversion as
            # after a kill (released here, nothing did, and the container never started again)
            raise
        except CtkitError:
            owners.release(owner)  # the saved config names every volume where it is
            raise
    owners.release(owner)


def _check_volumes(conf: Config) -> None:
    """Every volume before the first rename: one that another container owns (a config that
    names it by hand) became a base volume too, immutable and renamed under its owner; one
    named twice was renamed once, and the conversion then failed half-way, for good."""
    seen: dict[str, str] = {}
    for mp in conf.mountpoints(strict=True):
        if mp.type != "volume":
            continue
        owner = volume_owner(mp.volume)
        if owner is not None and owner != conf.vmid:
            raise StateError(
                f"can't convert volume '{mp.volume}' owned by another container ({owner})"
            )
        if mp.volume in seen:
            raise StateError(f"volume '{mp.volume}' is used by both {seen[mp.volume]} and {mp.key}")
        seen[mp.volume] = mp.key
