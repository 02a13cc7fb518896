"""The LXC view of a container config: its limits, networks, devices and mount entries (the
id map and the guest setup's data are in :mod:`shared.runtime.guestview`)."""

from __future__ import annotations

import os
from typing import Any

from ..ctconfig.config import Config, Section
from .cgroups import Limits
from .lxcconf import DevView, LxcView, NetView
from .mpstage import mount_entries
from .passthrough import mount_entry


def _float(value: Any, default: float = 0.0) -> float:
    return default if value is None else float(value)


def limits(conf: Section) -> Limits:
    memory = conf.get("memory")
    swap = conf.get("swap")
    return Limits(
        memory=int(memory) if memory is not None else 512,
        swap=int(swap) if swap is not None else 512,
        cpulimit=_float(conf.get("cpulimit")),
        cpuunits=None if conf.get("cpuunits") is None else int(conf.get("cpuunits")),
    )


def _nets(conf: Section) -> list[NetView]:
    out = []
    for key, net in conf.nets().items():
        out.append(
            NetView(
                index=int(key[3:]),
                name=str(net["name"]),
                hwaddr=net.get("hwaddr"),
                bridge=net.get("bridge"),
                mtu=net.get("mtu"),
                tag=net.get("tag"),
                rate=net.get("rate"),
                link_down=bool(net.get("link_down")),
            )
        )
    return out


def _devs(conf: Section, conf_vmid: int) -> list[DevView]:
    out = []
    for dev in conf.devices().values():
        path = str(dev.get("path"))
        try:
            st = os.stat(path)
        except OSError:
            continue
        kind = "b" if (st.st_mode & 0o170000) == 0o060000 else "c"
        out.append(
            DevView(
                kind,
                os.major(st.st_rdev),
                os.minor(st.st_rdev),
                deny_write=bool(dev.get("deny-write")),
                mount_entry=mount_entry(conf_vmid, path),
            )
        )
    return out


def lxc_view(conf: Config) -> LxcView:
    features = {
        k: ("1" if v is True else "0" if v is False else str(v)) for k, v in conf.features().items()
    }
    return LxcView(
        vmid=conf.vmid,
        arch=str(conf.get("arch") or "amd64"),
        ostype=str(conf.get("ostype") or "unmanaged"),
        unprivileged=conf.unprivileged,
        hostname=conf.get("hostname"),
        tty=int(conf.get("tty") if conf.get("tty") is not None else 2),
        console=conf.get("console") is not False,
        limits=limits(conf),
        cores=conf.get("cores"),
        features=features,
        entrypoint=conf.get("entrypoint"),
        env=conf.env,
        nets=_nets(conf),
        devs=_devs(conf, conf.vmid),
        raw=list(conf.lxc),
        mount_entries=mount_entries(conf),
    )
