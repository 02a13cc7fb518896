"""``pct template``: turn a stopped container into a template (Proxmox's vztemplate task)."""

from __future__ import annotations

from shared.ctconfig import store
from shared.errors import StateError
from shared.locks import config_lock
from shared.runtime import lxcapi

from .provision import convert_to_template


def make_template(vmid: int) -> None:
    """Volumes become read-only base volumes, ``template: 1``, the LXC config goes away.

    The checks and their order are Proxmox's. The config is saved after every volume rename,
    so a failure half-way leaves a config that names every volume where it now is.
    """
    with config_lock(vmid):
        conf = store.load(vmid)
        store.check_lock(conf)
        if conf.snapshots:
            raise StateError("unable to create template, because CT contains snapshots")
        if conf.is_template:
            raise StateError("you can't convert a template to a template")
        if lxcapi.is_running(vmid):
            raise StateError("you can't convert a CT to template if the CT is running")
        convert_to_template(conf, after_each=store.save)
        store.save(conf)
