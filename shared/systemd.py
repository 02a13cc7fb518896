"""systemd timers for ctkit's periodic work: the backup-job scheduler and the pveam index update.

The unit texts are constants below. :func:`install_units` writes them atomically to
``<root>/etc/systemd/system`` and, when systemd is PID 1 (``/run/systemd/system`` exists) and
the root is ``/``, runs ``systemctl daemon-reload`` and ``systemctl enable --now`` for the
timers. Otherwise (a container without systemd, or a scratch CTKIT_ROOT) it only writes them
and logs the commands that enable them.

* ``ctkit-scheduler.service`` / ``.timer``: ``<vzdump> scheduler run-due`` every minute
  (``Persistent=true`` catches up once after downtime; the scheduler decides what was missed).
* ``ctkit-guests.service``: ``<pct> startall`` at boot and ``<pct> stopall`` at shutdown
  (Proxmox's pve-guests.service); it is enabled, not started, when installed.
* ``pveam-update.service`` / ``.timer``: ``<pveam> update`` daily after the network is online,
  spread over five hours like Proxmox's daily update.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from . import atomic, paths
from .errors import CommandError, CtkitError, ParamError

SYSTEMCTL = "systemctl"

SCHEDULER_SERVICE = """\
[Unit]
Description=ctkit: run due vzdump backup jobs (/etc/pve/jobs.cfg)
After=local-fs.target

[Service]
Type=oneshot
ExecStart={exec_start} scheduler run-due
TimeoutStartSec=infinity
"""

SCHEDULER_TIMER = """\
[Unit]
Description=ctkit: check for due vzdump backup jobs every minute

[Timer]
OnCalendar=minutely
AccuracySec=1s
Persistent=true

[Install]
WantedBy=timers.target
"""

PVEAM_SERVICE = """\
[Unit]
Description=ctkit: update the pveam appliance index
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={exec_start} update
"""

PVEAM_TIMER = """\
[Unit]
Description=ctkit: daily pveam appliance index update

[Timer]
OnCalendar=daily
RandomizedDelaySec=5h
Persistent=true

[Install]
WantedBy=timers.target
"""

# Before= the scheduler: at shutdown systemd stops units in reverse, so a backup the scheduler
# runs is ended (and cleans up: a frozen CT thawed, a stopped one started, locks dropped) before
# stopall, which refused a container locked by it; a backup started by hand or by cron is ended
# by `vzdump --stop` first, as Proxmox's unit does. Both are ExecStopPost= (not ExecStop=, as in
# Proxmox's unit): systemd runs those also when it cancels a start still under way, so a
# shutdown soon after boot (startall in a long `up` delay, which systemd then ends with TERM)
# stops what startall had started, in order, instead of leaving it to the final kill. The unit
# is not started or stopped by hand (as Proxmox's): a `systemctl restart` would stop every
# container.
GUESTS_SERVICE = """\
[Unit]
Description=ctkit: start containers with onboot at boot, stop all at shutdown
Wants=network-online.target
After=network-online.target local-fs.target remote-fs.target lxc.service lxc-net.service
Before=ctkit-scheduler.service
RefuseManualStart=yes
RefuseManualStop=yes

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=-{exec_start} startall
ExecStopPost=-{vzdump} --stop
ExecStopPost={exec_start} stopall
TimeoutSec=infinity

[Install]
WantedBy=multi-user.target
"""

GUESTS_UNIT = "ctkit-guests.service"

UNITS: dict[str, str] = {
    "ctkit-scheduler.service": SCHEDULER_SERVICE,
    "ctkit-scheduler.timer": SCHEDULER_TIMER,
    "pveam-update.service": PVEAM_SERVICE,
    "pveam-update.timer": PVEAM_TIMER,
    "ctkit-guests.service": GUESTS_SERVICE,
}

Log = Callable[[str], None]


def _stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def unit_dir() -> Path:
    return paths.under("etc/systemd/system")


def systemd_running() -> bool:
    """Is systemd PID 1 on this host? (what sd_booted() checks)"""
    return Path("/run/systemd/system").is_dir()


def can_manage() -> bool:
    """Call systemctl only for the live system: systemd is PID 1 and the root is ``/``."""
    return systemd_running() and paths.root().resolve() == Path("/")


def quote_exec(path: str, what: str = "exec-path") -> str:
    """An absolute path as ExecStart= (its program) and Environment= want it: ``%`` doubled
    (specifiers are expanded in both), quoted when it has white space. A ``$`` stays as it is:
    neither expands variables there, and a doubled one named another path."""
    if not os.path.isabs(path) or any(c in path for c in "\n\r\"'\\"):
        raise ParamError({what: f"unusable path '{path}'"})
    text = path.replace("%", "%%")
    return f'"{text}"' if any(c.isspace() for c in text) else text


def render_unit(name: str, *, exec_path: str | None = None) -> str:
    """The text of unit ``name``; services need the absolute path of the program they run."""
    template = UNITS.get(name)
    if template is None:
        raise ParamError({"unit": f"unknown unit '{name}'"})
    if "{exec_start}" not in template:
        return template
    if exec_path is None:
        raise ParamError({"exec-path": f"unit '{name}' needs the program's absolute path"})
    # the guests' unit also runs vzdump, which is installed beside pct
    vzdump = quote_exec(str(Path(exec_path).with_name("vzdump")))
    return template.format(exec_start=quote_exec(exec_path), vzdump=vzdump)


def find_program(name: str) -> str:
    """The absolute path of a ctkit entry point (``vzdump``, ``pveam``): beside the running
    Python (a venv's bin directory) first, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise CommandError(f"unable to find command '{name}'")
    return os.path.abspath(found)


def with_root_environment(text: str) -> str:
    """A service's text with ``Environment=CTKIT_ROOT=...`` when ctkit runs below another root:
    systemd starts services with a clean environment, so without it a timer installed for
    ``/srv/ct`` would act on the host's ``/etc/pve``."""
    root = paths.root()
    if root == Path("/") or "\n[Service]\n" not in text:
        return text
    value = quote_exec(str(root), "CTKIT_ROOT").strip('"')
    line = f'Environment="CTKIT_ROOT={value}"'
    return text.replace("\n[Service]\n", f"\n[Service]\n{line}\n", 1)


def development_checkout() -> str | None:
    """The source tree ctkit runs from when it is not an installed copy (a developer's editable
    ``.venv``): units that run from there break when the checkout moves or is deleted."""
    package = Path(__file__).resolve().parent
    if {"site-packages", "dist-packages"} & set(package.parts):
        return None
    return str(package.parent)


def _systemctl(*args: str) -> None:
    proc = subprocess.run([SYSTEMCTL, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = proc.stderr.strip() or f"exit code {proc.returncode}"
        raise CommandError(f"systemctl {' '.join(args)} failed - {detail}")


def _timers(names: Iterable[str]) -> list[str]:
    return [n for n in names if n.endswith(".timer")]


def install_units(
    names: Sequence[str],
    *,
    exec_path: str | None = None,
    enable: bool = True,
    verify: bool = False,
    log: Log = _stderr_log,
) -> list[Path]:
    """Write the named units (atomically, mode 0644), check them (``verify``: before anything
    is enabled) and enable their timers when possible.

    Returns the written paths. Without systemd as PID 1 (or below a scratch root) nothing is
    enabled; the commands that would do it are logged instead.
    """
    texts = {name: with_root_environment(render_unit(name, exec_path=exec_path)) for name in names}
    from_this_venv = exec_path is not None and Path(exec_path).parent == Path(sys.executable).parent
    checkout = development_checkout() if from_this_venv else None
    if checkout is not None:
        log(
            f"warning: the units run {exec_path} from the development checkout {checkout}; "
            "for real use run 'make install' there and install the units again"
        )
    directory = unit_dir()
    written = []
    for name, text in texts.items():
        path = directory / name
        atomic.write_text(path, text, mode=0o644)
        written.append(path)
    if verify:
        verify_units(written)
    timers = _timers(names)
    services = _boot_services(texts)
    if not enable:
        return written
    if can_manage():
        _systemctl("daemon-reload")
        for timer in timers:
            _systemctl("enable", "--now", timer)
        for service in services:
            _systemctl("enable", service)
        return written
    reason = (
        "systemd is not running as PID 1 (no /run/systemd/system)"
        if not systemd_running()
        else f"the units were written below {paths.root()}, not the live system"
    )
    log(f"unit files written to {directory}; not enabling them: {reason}")
    if timers:
        log(f"to enable them: systemctl daemon-reload && systemctl enable --now {' '.join(timers)}")
    if services:
        log(f"to enable it: systemctl daemon-reload && systemctl enable {' '.join(services)}")
    return written


def _boot_services(texts: dict[str, str]) -> list[str]:
    """Services with an [Install] section of their own are enabled (not started) directly."""
    return [n for n, t in texts.items() if n.endswith(".service") and "[Install]" in t]


def verify_units(files: Sequence[Path]) -> None:
    """``systemd-analyze verify`` the written units when the tool is installed."""
    if shutil.which("systemd-analyze") is None:
        return
    proc = subprocess.run(
        ["systemd-analyze", "verify", *map(str, files)], capture_output=True, text=True, check=False
    )
    ours = [ln for ln in proc.stderr.splitlines() if any(f.name in ln for f in files)]
    if proc.returncode != 0 or ours:
        detail = (ours or proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise CommandError(f"systemd-analyze verify failed - {detail}")


def remove_units(names: Sequence[str], *, log: Log = _stderr_log) -> list[Path]:
    """Disable the named timers (when systemd manages this host) and delete the unit files.

    Returns the paths that were removed; missing files are not an error.
    """
    for name in names:
        if name not in UNITS:
            raise ParamError({"unit": f"unknown unit '{name}'"})
    directory = unit_dir()
    timers = [t for t in _timers(names) if (directory / t).exists()]
    services = [n for n in names if n == GUESTS_UNIT and (directory / n).exists()]
    if can_manage() and timers:
        _systemctl("disable", "--now", *timers)
    if can_manage() and services:
        _systemctl("disable", *services)  # not --now: stopping it would stop every container
    removed = []
    failed: list[str] = []
    for name in names:
        path = directory / name
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:  # a directory in its place, a read-only unit directory
            failed.append(f"unable to remove '{path}' - {err.strerror}")
            continue
        removed.append(path)
    if removed and can_manage():
        _systemctl("daemon-reload")
    elif timers or services:
        log(f"unit files removed from {directory}; run 'systemctl daemon-reload' to forget them")
    if failed:  # after the reload: what was removed is forgotten all the same
        raise CtkitError(failed[0])
    return removed


__all__ = [
    "UNITS",
    "can_manage",
    "development_checkout",
    "find_program",
    "install_units",
    "quote_exec",
    "remove_units",
    "render_unit",
    "systemd_running",
    "unit_dir",
    "verify_units",
    "with_root_environment",
]
