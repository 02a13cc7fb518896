"""The backed-up config is checked as ``pct create`` checks its options before a restore uses it.

An archive's ``pct.conf`` is read leniently, as any stored config is: a bad value is kept with
a warning. A restore that stored it would exit 0 with a container that ``pct start`` rejects
(a 5,000-character hostname, a memory size that overflows the cgroup limit, a malformed
``net0``). So every value taken from the backup goes through the same strict option check as
a ``pct create`` parameter (:func:`~shared.ctconfig.pending.parse_values` and
:func:`~pct.ops.valuecheck.value_check`); a value that fails is left out with one line, and the
default applies (a bad ``netN`` leaves the container without that interface; a bad ``mpN``
leaves its files in the root file system). Keys the schema does not know are kept verbatim, as
in Proxmox. Before the config is written, the merged result is checked once more as a whole;
anything still invalid fails the restore, which then cleans up as after any failure.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.ctconfig.options import is_settable
from shared.ctconfig.pending import parse_values
from shared.errors import ConfigError, CtkitError, ParamError

from .restore_trust import shown
from .valuecheck import value_check

Log = Callable[[str], None]


def problem(key: str, text: str) -> str | None:
    """Why ``key: text`` would be refused by ``pct create`` (None: it would not, or the key is
    not one a user sets: unknown or internal). Two things a stored config holds are not a new
    value's faults: a ``firewall=1`` interface (kept, and warned about at start, as Proxmox
    keeps it), and the newline a description read back from its ``#`` lines ends with (one at
    the 8192 characters ``pct set`` allows is 8193 then, and was dropped)."""
    if not is_settable(key):
        return None
    if key == "description":
        text = text.removesuffix("\n")
    try:
        for value, _text in parse_values({key: text}).values():
            value_check(key, value, new=False)
    except ParamError as err:
        return "; ".join(err.errors.values()) or err.message
    except CtkitError as err:
        return err.message
    return None


def drop_invalid(backup: Config, log: Log) -> list[str]:
    """Remove from ``backup`` every value ``pct create`` would refuse; one line each."""
    dropped: list[str] = []
    for key in list(backup.values):
        text = backup.values[key]
        why = problem(key, text)
        if why is None:
            continue
        log(f"WARN: not restoring '{shown(f'{key}: {text}')}' from the archive - {shown(why)}")
        backup.delete(key)
        dropped.append(key)
    return dropped


def check_merged(conf: Config) -> None:
    """Refuse a merged config that ``pct create`` would not accept, or that is too large to
    be read back (nothing is stored)."""
    found = [(key, why) for key in conf.values if (why := problem(key, conf.values[key]))]
    if found:
        details = "; ".join(f"{key}: {shown(why)}" for key, why in found)
        raise ConfigError(f"invalid configuration after merge - {details}")
    try:
        store.check_size(conf.to_bytes())
    except ConfigError as err:
        raise ConfigError(f"invalid configuration after merge - {err}") from None


def check_backup_size(backup: Config) -> None:
    """Refuse, before anything is allocated or extracted, a backed-up config that could never
    be stored (the merge only adds to it)."""
    try:
        store.check_size(backup.to_bytes())
    except ConfigError as err:
        raise ConfigError(f"invalid configuration in the archive - {err}") from None
