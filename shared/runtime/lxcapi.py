"""One container through LXC, with ctkit's lxcpath: its state and init asked of its monitor's
command socket (:mod:`.lxccmd`, with a deadline), python-lxc for the rest, and the lxc-* tools
we exec.

The container's LXC name is its VMID and its lxcpath is ``shared.paths.lxc_path()``, so the
generated config is ``<lxcpath>/<vmid>/config`` as on Proxmox.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from .. import paths
from ..errors import ConfigError
from . import lxccmd
from .lxccmd import MonitorSilent
from .namespace import in_host_mounts

RUNNING_STATES = ("RUNNING", "FROZEN", "STARTING", "STOPPING", "FREEZING", "THAWED")


def environment_key() -> str:
    """The LXC config key of a container's runtime environment in this host's LXC: LXC 6.0
    split ``lxc.environment`` into ``.runtime`` and ``.hooks``, and LXC 5 refuses the new keys
    (a container with ``env`` did not start)."""
    import lxc

    major = str(getattr(lxc, "version", "")).split(".", 1)[0]
    if major.isdigit() and int(major) < 6:
        return "lxc.environment"
    return "lxc.environment.runtime"


def container(vmid: int) -> Any:
    """A fresh python-lxc handle (it reads the config at construction).

    A generated config LXC cannot load (left by an older ctkit or edited by hand) gives one
    ConfigError line about this container, never python-lxc's RuntimeError.
    """
    import lxc  # loaded on first use: a stopped CT's state needs no python-lxc

    try:
        return lxc.Container(str(vmid), config_path=str(paths.lxc_path()))
    except RuntimeError:
        raise ConfigError(
            f"CT {vmid}: LXC cannot load the generated config {paths.lxc_dir(vmid) / 'config'}",
            hint=f"'pct start {vmid}' generates it anew",
        ) from None


def state(vmid: int) -> str:
    """LXC's state, asked of the CT's monitor (with a deadline: a monitor that does not answer
    is :class:`~.lxccmd.MonitorSilent`); STOPPED without a generated config or a monitor."""
    if not (paths.lxc_dir(vmid) / "config").exists():
        return "STOPPED"
    return lxccmd.state(vmid, socket_name(vmid))


def is_running(vmid: int) -> bool:
    """Whether the CT runs (or starts, stops, freezes). A monitor that is there but does not
    answer counts as running, as its socket alone does for Proxmox: every caller then keeps
    its hands off, and one that needs the container's init gets the one-line error."""
    try:
        return state(vmid) in RUNNING_STATES
    except MonitorSilent:
        return True


def init_pid(vmid: int) -> int | None:
    if not (paths.lxc_dir(vmid) / "config").exists():
        return None
    return lxccmd.init_pid(vmid, socket_name(vmid))


def monitor_process(vmid: int) -> tuple[int, int] | None:
    """(pid, start time) of the running CT's LXC monitor, the parent of its init, or None.

    After a clean exit of the container the monitor closes its command socket first and runs
    the post-stop hooks after: only the process itself tells when it is done."""
    from ..owner import process_parent, process_start

    try:
        init = init_pid(vmid)
    except MonitorSilent:
        return None
    parent = process_parent(init) if init else None
    start = process_start(parent) if parent else None
    return None if parent is None or start is None else (parent, start)


def monitor_gone(vmid: int, monitor: tuple[int, int] | None) -> bool:
    """Whether the monitor found by :func:`monitor_process` (and any monitor that listens on
    the CT's command socket) has ended."""
    from ..owner import process_start

    if monitor is not None and process_start(monitor[0]) == monitor[1]:
        return False
    return not monitor_alive(vmid)


# sun_path less the abstract socket's leading and LXC's trailing NUL
_SOCKET_NAME_MAX = 108 - 2
_FNV64_BASIS, _FNV64_PRIME = 0xCBF29CE484222325, 0x100000001B3


def socket_name(vmid: int) -> str:
    """The abstract name (``@`` first) of the CT's command socket, as liblxc makes it: the
    lxcpath, the name and ``command``; when that does not fit in a socket address (a long
    lxcpath, such as a test's), ``lxc/<FNV-1a 64 of "lxcpath/name">/command``."""
    name = f"{paths.lxc_path()}/{vmid}"
    plain = f"{name}/command"
    if len(plain.encode()) < _SOCKET_NAME_MAX:
        return f"@{plain}"
    return f"@lxc/{fnv1a_64(name.encode()):016x}/command"


def fnv1a_64(data: bytes) -> int:
    digest = _FNV64_BASIS
    for byte in data:
        digest = ((digest ^ byte) * _FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return digest


def monitor_alive(vmid: int) -> bool:
    """Whether LXC's monitor for the CT still listens on its abstract command socket."""
    name = socket_name(vmid)
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as fh:
            return any(line.rstrip("\n").endswith(" " + name) for line in fh)
    except OSError:
        return False


def wait_state(vmid: int, wanted: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(MonitorSilent):  # busy (a start hook): ask again
            if state(vmid) == wanted:
                return True
        time.sleep(0.05)
    return state(vmid) == wanted


class Launched(NamedTuple):
    ok: bool
    monitor: tuple[int, int] | None  # (pid, start time) of the LXC monitor it left running


def start_daemon(vmid: int, debug_log: Path | None = None) -> Launched:
    """Start the container with ``lxc-start`` (daemonized; returns once it runs or failed),
    and say which process is its monitor (its pid file): after a failed start the monitor
    still runs the post-stop hooks, with its command socket already closed.

    Not python-lxc's ``Container.start()``: LXC moves the *calling* process into the CT's
    monitor cgroup ``lxc.monitor/<vmid>``. A long-lived caller (vzdump, a test run, a
    benchmark) would stay there, be accounted to it and keep LXC from removing the cgroup
    when the CT stops, so the next start would fail. ``lxc-start`` is the throw-away caller.
    """
    pidfile = paths.run_dir() / f"ct-{vmid}.monitor"
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
    argv = [*lxc_base_argv("lxc-start", vmid), "-p", str(pidfile)]
    if debug_log is not None:
        argv += ["-l", "DEBUG", "-o", str(debug_log)]
    # never from a private mount namespace (vzdump's, pct create's): the container would keep
    # it, and what was mounted there when that process was killed, alive
    argv, fds = in_host_mounts(argv)
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        pass_fds=fds,
        # a Ctrl-C at the terminal must not end a start begun (vzdump's restart of a container
        # it stopped ran into it, and the container stayed down): it reaches the caller alone
        start_new_session=True,
    )
    return Launched(proc.returncode == 0, _monitor_of(pidfile, vmid))


def _monitor_of(pidfile: Path, vmid: int) -> tuple[int, int] | None:
    """The monitor named by lxc-start's pid file, while it runs (the file is then removed)."""
    from ..owner import process_start

    try:
        text = pidfile.read_text(encoding="ascii", errors="replace")
        pidfile.unlink()
        pid = int(text.strip())
        # its title ("[lxc monitor] <lxcpath> <vmid>") or its argv names the container
        words = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
    except (OSError, ValueError):
        return None
    start = process_start(pid)
    return (pid, start) if start is not None and str(vmid).encode() in words else None


def lxc_base_argv(tool: str, vmid: int) -> list[str]:
    return [tool, "-P", str(paths.lxc_path()), "-n", str(vmid)]


STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def attach_argv(vmid: int, command: Sequence[str], keep_env: bool = False) -> list[str]:
    """``lxc-attach`` into the CT. By default the command starts from a clean environment,
    as Proxmox's ``pct enter``/``exec`` do: only ``TERM`` is kept and ``PATH`` is the standard
    one, so nothing of the host's environment (its PATH, proxies, secrets) reaches the CT."""
    env_flags = ["--keep-env"]
    if not keep_env:
        env_flags = ["--clear-env", "--set-var", f"PATH={STANDARD_PATH}"]
        term = os.environ.get("TERM")
        if term:  # set, not kept: the config's lxc.environment (TERM=linux) would win otherwise
            env_flags += ["--set-var", f"TERM={term}"]
    argv = [*lxc_base_argv("lxc-attach", vmid), *env_flags]
    if command:
        argv += ["--", *command]
    return argv


def become(argv: list[str]) -> NoReturn:
    """Replace this process by ``argv`` (lxc-attach, lxc-console) with only stdin, stdout and
    stderr: lxc-attach hands every other descriptor it inherits to the process in the
    container (a script's open /etc/shadow, say)."""
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    os.execvpe(argv[0], argv, attach_env())


def attach_env() -> dict[str, str]:
    """The caller's environment minus what must not leak into a container (Proxmox does this)."""
    env = dict(os.environ)
    for key in ("SSL_CERT_FILE", "SSL_CERT_DIR", "CTKIT_ROOT"):
        env.pop(key, None)
    return env
