"""``pct list`` and ``pct status``: what is there and how it is doing."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.errors import CtkitError
from shared.runtime import lxcapi, recovery
from shared.runtime.cgroups import CGroup
from shared.runtime.runstate import run_status

DEFAULT_MAXDISK = 4 << 30
Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


BROKEN = "broken"


def list_rows(problems: list[str] | None = None, log: Log = _stderr) -> list[dict[str, Any]]:
    """One row per container of this node, in VMID order.

    What a killed backup left behind is recovered first, and said on ``log``. A container
    whose config (or generated LXC config) cannot be read is listed with status ``broken``;
    why goes to ``problems``, so one bad config never hides the healthy ones.
    """
    rows = []
    # an id with a record but no config is recovered too (then listed only if it has one)
    for vmid in sorted({*store.list_vmids(), *recovery.recorded_vmids()}):
        try:
            recovery.recover(vmid, log)
            row = _row(vmid)
        except CtkitError as err:
            if problems is not None:
                problems.append(f"CT {vmid}: {err}")
            row = {"vmid": vmid, "status": BROKEN, "lock": "", "name": f"CT{vmid}"}
        if row is not None:
            rows.append(row)
    return rows


def _row(vmid: int) -> dict[str, Any] | None:
    conf = store.load_or_none(vmid)
    if conf is None:
        return None
    return {
        "vmid": vmid,
        "status": run_status(vmid),
        "lock": conf.lock or "",
        "name": _name(conf),
    }


def storage_warning() -> str | None:
    """One line naming the storage.cfg sections ctkit skipped (lvmthin, zfspool...)."""
    from shared.storage.config import load_config, skipped_sections_warning

    return skipped_sections_warning(load_config())


def render_list(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = [f"{'VMID':<10} {'Status':<10} {'Lock':<12} {'Name':<20}"]
    lines += [f"{r['vmid']:<10} {r['status']:<10} {r['lock']:<12} {r['name']:<20}" for r in rows]
    return "".join(line + "\n" for line in lines)


def _name(conf: Config) -> str:
    host = conf.get("hostname")
    return re.sub(r"\s", "", str(host)) if host else f"CT{conf.vmid}"


def status(vmid: int, *, verbose: bool = False, log: Log = _stderr) -> dict[str, Any]:
    recovery.recover(vmid, log)
    conf = store.load(vmid)
    state = run_status(vmid)
    running = state != "stopped"
    data: dict[str, Any] = {"status": state}
    if not verbose:
        return data
    rootfs = next((m for m in conf.mountpoints() if m.key == "rootfs"), None)
    memory = int(conf.get("memory") or 512)
    swap = int(conf.get("swap") if conf.get("swap") is not None else 512)
    data.update(
        vmid=vmid,
        name=_name(conf),
        type="lxc",
        maxmem=memory << 20,
        maxswap=swap << 20,
        maxdisk=(rootfs.size if rootfs and rootfs.size else DEFAULT_MAXDISK),
        disk=0,
        mem=0,
        swap=0,
        cpus=int(conf.get("cores") or os.cpu_count() or 1),
        uptime=0,
        netin=0,
        netout=0,
        diskread=0,
        diskwrite=0,
    )
    if conf.lock:
        data["lock"] = conf.lock
    if conf.is_template:
        data["template"] = 1
    if conf.get("tags"):
        data["tags"] = ";".join(conf.get("tags"))
    if running:
        data.update(_live_figures(vmid))
    return data


def _live_figures(vmid: int) -> dict[str, Any]:
    pid = lxcapi.init_pid(vmid)
    out: dict[str, Any] = {"mem": CGroup(vmid).memory_usage()}
    if pid is None:
        return out
    out["pid"] = pid
    try:
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot_uptime = float(Path("/proc/uptime").read_text().split()[0])
        out["uptime"] = int(boot_uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        pass
    try:
        usage = shutil.disk_usage(f"/proc/{pid}/root/")
        # both from the file system the container sees, as Proxmox reports a running one: a
        # size-0 subvol's used bytes are the host's, beside a maxdisk from the config
        out["disk"], out["maxdisk"] = usage.used, usage.total
    except OSError:
        pass
    out["netin"], out["netout"] = _net_counters(pid)
    out["cpu"] = _cpu_fraction(vmid)
    return out


def _net_counters(pid: int) -> tuple[int, int]:
    rx = tx = 0
    try:
        for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]:
            name, data = line.split(":", 1)
            if name.strip() == "lo":
                continue
            fields = data.split()
            rx += int(fields[0])
            tx += int(fields[8])
    except (OSError, ValueError, IndexError):
        pass
    return rx, tx


def _cpu_fraction(vmid: int, interval: float = 0.1) -> float:
    cg = CGroup(vmid)
    first = cg.cpu_usage_ns()
    time.sleep(interval)
    used = cg.cpu_usage_ns() - first
    return round(used / (interval * 1e9), 4)


def render_status(data: dict[str, Any]) -> str:
    if set(data) == {"status"}:
        return f"status: {data['status']}\n"
    return "".join(f"{k}: {data[k]}\n" for k in sorted(data) if k != "cpu")
