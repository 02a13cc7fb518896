"""Turning a container's volumes into a template's base volumes, resumable after a kill.

Each volume is renamed on its storage (``vm-`` → ``base-``) before the config can name it: a
process killed in between leaves a config naming a volume that no longer exists (the CT does
not start, and destroy leaves the immutable base image behind). ``pct template`` therefore runs
under an owner record (:mod:`shared.owner`, op :data:`OWNER_OP`), and recovery calls
:func:`resume`, which adopts the renamed volumes and finishes the conversion: the user asked
for a template, and every step of it can be taken again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from .. import paths, signals
from ..ctconfig.config import Config
from ..storage.api import volume_exists
from ..storage.volid import base_name
from ..storage.volumes import convert_to_base

OWNER_OP = "template"


def base_twin(volid: str) -> str:
    """The id ``volid`` gets as a base volume (its last name component ``vm-`` → ``base-``)."""
    head, sep, name = volid.rpartition("/")
    if not sep:
        head, sep, name = volid.rpartition(":")
    return f"{head}{sep}{base_name(name)}"


def _is_base(volid: str) -> bool:
    return volid.rpartition("/")[2].startswith("base-")


def adopt_renamed(conf: Config) -> list[str]:
    """Name the base volume in ``conf`` wherever its volume was renamed but the config not saved;
    returns the mount point keys changed."""
    changed = []
    for mp in conf.mountpoints():
        if mp.type != "volume" or _is_base(mp.volume) or volume_exists(mp.volume):
            continue
        twin = base_twin(mp.volume)
        if twin != mp.volume and volume_exists(twin):
            conf.set(mp.key, mp.replace(volume=twin))
            changed.append(mp.key)
    return changed


def convert(
    conf: Config,
    after_each: Callable[[Config], None] | None = None,
    renamed: Callable[[str, str], None] | None = None,
) -> None:
    """Every volume becomes a base volume (one already converted is skipped), ``template: 1``,
    the generated LXC config goes away. ``renamed(old, new)`` is told of each rename;
    ``after_each`` (saving the config) runs after each, so that a failure half-way leaves a
    config that names every volume where it now is."""
    for mp in conf.mountpoints(strict=True):
        if mp.type != "volume" or _is_base(mp.volume):
            continue
        # a rename that its callers were not told of: a signal's cleanup then freed the old
        # name, and the base volume stayed, named by nothing
        with signals.step():
            new = convert_to_base(mp.volume)
            if renamed is not None:
                renamed(mp.volume, new)
            conf.set(mp.key, mp.replace(volume=new))
            if after_each is not None and new != mp.volume:
                after_each(conf)
    conf.set("template", True)
    with contextlib.suppress(FileNotFoundError):
        (paths.lxc_dir(conf.vmid) / "config").unlink()


def resume(conf: Config, save: Callable[[Config], None]) -> None:
    """Finish a conversion a killed ``pct template`` began (the caller holds the config lock)."""
    if adopt_renamed(conf):
        save(conf)
    convert(conf, after_each=save)
    save(conf)
