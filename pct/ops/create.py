"""``pct create``: a new container from a template (spec pct.md §4.1–4.2).

Volumes are allocated and the config written with ``lock: create`` first; on any failure the
new volumes are freed and no config is left behind. A create killed before it could do that is
undone by the next command (:mod:`shared.runtime.unfinished`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared import owner as owners
from shared import preload
from shared.archive.codecs import Compression, compression_from_name
from shared.archive.tarextract import extract
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.ctconfig.pending import parse_values
from shared.errors import AlreadyExistsError, CtkitError, ParamError
from shared.runtime import unfinished
from shared.runtime.guestview import config_idmap, config_root_ids
from shared.runtime.idcheck import check_subids
from shared.runtime.namespace import private_mounts
from shared.runtime.traverse import check_traversable
from shared.storage.api import resolve_template

from .provision import (
    GUEST_MODULES,
    Allocation,
    allocate,
    apply_defaults,
    check_given_volumes,
    check_rootdir_storages,
    complete_given_nets,
    convert_to_template,
    create_locked_config,
    detect_guest,
    exists_message,
    normalize_disk_params,
    prefixed,
    remove_config,
    remove_staging_dirs,
    staged,
    staging_dir,
    take_template_flag,
)
from .valuecheck import value_check

Log = Callable[[str], None]
DEFAULT_ROOTFS_GIB = 4


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass
class CreateRequest:
    vmid: int
    ostemplate: str
    params: dict[str, str] = field(default_factory=dict)  # config options, raw CLI text
    storage: str = "local"
    password: str | None = None
    ssh_keys: str | None = None
    unprivileged: bool = True
    ignore_unpack_errors: bool = False
    bwlimit: int | None = None
    start: bool = False


def new_config(req: CreateRequest, log: Log) -> Config:
    """The validated config before allocation (disk values still ``STORAGE:SIZE``)."""
    params = dict(req.params)
    normalize_disk_params(params, req.storage, log)
    params.setdefault("rootfs", f"{req.storage}:{DEFAULT_ROOTFS_GIB}")
    parsed = parse_values(params)
    conf = Config(req.vmid)
    for key, (value, text) in parsed.items():
        value_check(key, value)
        conf.values[key] = text
    if req.unprivileged:
        conf.set("unprivileged", True)
    complete_given_nets(conf, params)
    check_rootdir_storages(conf)
    return conf


def create(req: CreateRequest, log: Log = _stderr) -> Config:
    if owners.read(req.vmid) is not None:  # a killed create of this id: undone, not in the way
        from shared.runtime import recovery  # the start machinery: only when there is a record

        recovery.recover(req.vmid, log)
    if store.exists(req.vmid):
        raise AlreadyExistsError(exists_message(req.vmid))
    if req.ssh_keys:
        from shared.guest.sshkeys import check_public_keys

        check_public_keys(req.ssh_keys)
    template = resolve_template(req.ostemplate)
    compression = compression_from_name(template.name)
    conf = new_config(req, log)
    as_template = take_template_flag(conf)
    if as_template and req.start:
        raise ParamError({"start": "a template cannot be started (template is set)"})
    check_subids(req.vmid, config_idmap(conf))
    check_traversable(staging_dir(req.vmid), *config_root_ids(conf))
    owner = create_locked_config(conf, owner_op=unfinished.CREATE)
    # the staging mount lives in a mount namespace of this process's own: a create killed at
    # any instant leaves no mount on the host that keeps the new volumes busy
    private_mounts()
    alloc = Allocation(req.vmid, owner=owner)
    try:
        check_given_volumes(conf, skip=req.vmid)
        allocate(conf, alloc, req.storage)
        store.save(conf)
        _fill_rootfs(conf, req, template, compression, log)
        apply_defaults(conf)
        if as_template:
            log("Convert new container to template...")
            convert_to_template(conf, alloc)
        conf.delete("lock")
        store.save(conf)
    except BaseException as err:
        alloc.free_all(log)
        if not alloc.keep_for_recovery(log):
            remove_config(req.vmid, log)
            remove_staging_dirs(req.vmid)  # an empty <lxcpath>/<vmid>/rootfs stayed behind
        if isinstance(err, CtkitError):
            raise prefixed(err, f"unable to create CT {req.vmid} - ") from err
        raise
    finally:
        if alloc.owner is not None:
            owners.release(alloc.owner)
    if req.start:
        from shared.runtime import lifecycle  # the start machinery: only for --start

        lifecycle.start(req.vmid, log=log)
    return conf


def _fill_rootfs(
    conf: Config, req: CreateRequest, template: Path, compression: Compression, log: Log
) -> None:
    with staged(conf) as tree:
        log(f"extracting archive '{template}'")
        with preload.loading(*GUEST_MODULES):  # over before the guest setup forks
            extract(
                template,
                tree.target,
                compression=compression,
                idmap=config_idmap(conf) or None,
                ignore_unpack_errors=req.ignore_unpack_errors,
                bwlimit_kib=req.bwlimit,
                log=log,
            )
        _setup_guest(conf, req, tree.target, log)


def _setup_guest(conf: Config, req: CreateRequest, rootdir: Path, log: Log) -> None:
    setup = detect_guest(conf, rootdir, log)
    setup.post_create(password=req.password, ssh_keys=req.ssh_keys)
    setup.regenerate_ssh_host_keys()
    setup.check_systemd_nesting()
