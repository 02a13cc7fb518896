"""Network hot-plug of a running container's ``netN`` through pyroute2 (pct.md §2.5).

The host side ``veth<vmid>i<N>`` is attached to its bridge as at start (VLAN tag as the bridge's
port VLAN, MTU, rate limit, link state); the peer is moved into the container's network namespace
under its name and MAC. Addresses, gateways and routes inside are set from a forked child that
entered that namespace, so nothing runs in the container's file system.

Where ``veth<vmid>i<N>`` would be longer than an interface name may be (9-digit VMIDs, N >= 10),
LXC names the host side at random at start, and hot-plug by a hash of the two numbers: such a
host side is found as the peer of the container's interface, and only if the host's link
confirms it is.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import os
import secrets
import socket
from collections.abc import Iterator, Mapping
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import CtkitError
from ..runtime import nsenter
from ..runtime.lxcconf import veth_name
from .shaping import set_rate

Net = Mapping[str, Any]
NOT_STATIC = ("dhcp", "auto", "manual")
# what re-plugs the host side on a change (Proxmox: bridge, tag, firewall, link_down)
PLUG_KEYS = ("bridge", "tag", "firewall", "link_down")


def host_end(vmid: int, index: int, net: Net, pid: int) -> str | None:
    """The host side of ``netN``'s veth: ``veth<vmid>i<N>``, or where that name cannot exist,
    the peer of the container's interface ``net["name"]`` (None if there is none)."""
    fixed = veth_name(vmid, index)
    if fixed is not None:
        return fixed
    inside = net.get("name")
    ends = _container_end(pid, str(inside)) if inside else None
    if ends is None:
        return None
    own, peer = ends
    with _ipr() as ipr:
        try:
            link = ipr.get_links(peer)[0]
        except NetlinkError:
            return None
        nsid = (ipr.get_netnsid(pid=pid) or {}).get("nsid")
    # the indexes come from the container: a veth of its own between two of its namespaces
    # names an index that on the host may be any interface, so the host's link must agree
    if (
        _kind(link) != "veth"
        or link.get_attr("IFLA_LINK") != own
        or nsid is None
        or link.get_attr("IFLA_LINK_NETNSID") != nsid
    ):
        return None
    return str(link.get_attr("IFLA_IFNAME"))


def _kind(link: Any) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return None if info is None else info.get_attr("IFLA_INFO_KIND")


def _container_end(pid: int, name: str) -> tuple[int, int] | None:
    """(its index, its peer's index) of the container's veth ``name`` whose peer is in another
    namespace, read in a child that entered the container's network namespace."""
    rfd, wfd = os.pipe()

    def work() -> None:
        with _ipr() as ipr:
            idx = _index(ipr, name)
            link = ipr.get_links(idx)[0] if idx is not None else None
        if link is None or _kind(link) != "veth" or link.get_attr("IFLA_LINK_NETNSID") is None:
            return
        os.write(wfd, f"{idx} {int(link.get_attr('IFLA_LINK'))}".encode())

    try:
        try:
            in_netns(pid, work)
        finally:
            os.close(wfd)
        with os.fdopen(os.dup(rfd), "rb") as pipe:
            found = pipe.read().split()
    finally:
        os.close(rfd)
    return (int(found[0]), int(found[1])) if len(found) == 2 else None


def intact(vmid: int, index: int, net: Net, pid: int) -> bool:
    """Whether ``netN`` is live as ``net`` says: its host side exists, and so does the
    container's interface of its name (a change killed half-way can leave either gone)."""
    host = host_end(vmid, index, net, pid)
    if host is None:
        return False
    with _ipr() as ipr:
        if _index(ipr, host) is None:
            return False
    inside = net.get("name")
    return bool(inside) and _container_end(pid, str(inside)) is not None


def _must_find(vmid: int, index: int, net: Net, pid: int) -> str:
    host = host_end(vmid, index, net, pid)
    if host is None:
        raise CtkitError(f"no host side of net{index} (the container's '{net.get('name')}')")
    return host


@contextlib.contextmanager
def _ipr() -> Iterator[IPRoute]:
    try:
        with IPRoute() as ipr:
            yield ipr
    except NetlinkError as err:
        raise CtkitError(f"netlink: {os.strerror(err.code)}") from None


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _must(ipr: IPRoute, name: str) -> int:
    idx = _index(ipr, name)
    if idx is None:
        raise CtkitError(f"network interface '{name}' does not exist")
    return idx


def plug(host: str, net: Net) -> list[str]:
    """Attach the host side to its bridge with tag, MTU, rate and link state; warnings back."""
    with _ipr() as ipr:
        idx = _must(ipr, host)
        bridge = net.get("bridge")
        if bridge:
            ipr.link("set", index=idx, master=_must(ipr, str(bridge)))
            tag = net.get("tag")
            if tag:
                with contextlib.suppress(NetlinkError):
                    ipr.vlan_filter("del", index=idx, vlan_info={"vid": 1})
                ipr.vlan_filter("add", index=idx, vlan_info={"vid": int(tag), "pvid": True})
        if net.get("mtu"):
            ipr.link("set", index=idx, mtu=int(net["mtu"]))
        ipr.link("set", index=idx, state="down" if net.get("link_down") else "up")
    rate = net.get("rate")
    return set_rate(host, float(rate) if rate else None)


def unplug(host: str) -> None:
    with _ipr() as ipr:
        idx = _index(ipr, host)
        if idx is not None:
            ipr.link("set", index=idx, master=0)


def remove(vmid: int, index: int, net: Net, pid: int) -> None:
    """Delete the interface pair of ``netN`` as configured in ``net`` (the peer inside goes with
    the host side)."""
    host = host_end(vmid, index, net, pid)
    if host is not None:
        _delete(host)


def remove_unplugged(vmid: int, index: int) -> None:
    """Delete the host side a hot-plug of ``netN`` names itself (:func:`add`), where a killed
    one left it before its peer reached the container (then no container end leads to it)."""
    _delete(veth_name(vmid, index) or hashed_veth_name(vmid, index))


def _delete(host: str) -> None:
    with _ipr() as ipr:
        idx = _index(ipr, host)
        if idx is not None:
            ipr.link("del", index=idx)


def hashed_veth_name(vmid: int, index: int) -> str:
    """The host side of a hot-plugged ``netN`` where ``veth<vmid>i<N>`` is too long: the same
    for the same interface (one at random, as LXC names it at start, was left on the host by a
    hot-plug killed half-way, and nothing ever found it again); 11 hex digits, never one of
    LXC's random names (6 characters)."""
    return "veth" + hashlib.sha256(f"{vmid}i{index}".encode()).hexdigest()[:11]


def add(vmid: int, index: int, net: Net, pid: int) -> list[str]:
    """Create ``veth<vmid>i<N>`` (or, where that name is too long, :func:`hashed_veth_name`),
    plug it, move its peer into the container and configure it. Only for an interface the
    config does not have yet, so an existing one of the fixed name is a leftover and is
    replaced."""
    host = veth_name(vmid, index) or hashed_veth_name(vmid, index)
    peer = f"vhp{secrets.token_hex(5)}"  # host names of big VMIDs leave no room for a suffix
    with _ipr() as ipr:
        stale = _index(ipr, host)
        # the name is this CT's: left by an interrupted earlier hot-plug (its peer, in the
        # container under a temporary name or its own, goes with it)
        if stale is not None:
            ipr.link("del", index=stale)
        ipr.link("add", ifname=host, kind="veth", peer=peer)
    try:
        with _ipr() as ipr:
            pidx = _must(ipr, peer)
            ipr.link("set", index=pidx, address=str(net["hwaddr"]).lower())
            if net.get("mtu"):
                ipr.link("set", index=pidx, mtu=int(net["mtu"]))
        warnings = plug(host, net)
        with _ipr() as ipr:
            ipr.link("set", index=_must(ipr, peer), net_ns_pid=pid)
        in_netns(pid, lambda: _bring_up(peer, net))
    except BaseException:
        _delete(host)
        raise
    return warnings


def replace(vmid: int, index: int, old: Net, new: Net, pid: int) -> list[str]:
    """A new name or MAC: the interface is made again (as Proxmox does); if that fails, the old
    one comes back."""
    remove(vmid, index, old, pid)
    try:
        return add(vmid, index, new, pid)
    except BaseException:
        with contextlib.suppress(CtkitError):
            add(vmid, index, old, pid)
        raise


def update(vmid: int, index: int, old: Net, new: Net, pid: int) -> list[str]:
    """Apply a change of an existing interface (same name and MAC); on a failed re-plug the old
    attachment is restored."""
    host = _must_find(vmid, index, old, pid)
    warnings: list[str] = []
    replug = any(_differs(old, new, k) for k in PLUG_KEYS)
    if replug:
        unplug(host)
        try:
            warnings = plug(host, new)
        except CtkitError:
            with contextlib.suppress(CtkitError):
                unplug(host)
                plug(host, old)
            raise
    elif _differs(old, new, "rate"):
        rate = new.get("rate")
        warnings = set_rate(host, float(rate) if rate else None)
    try:
        if _differs(old, new, "mtu") and new.get("mtu"):
            _set_mtu(host, new)
        in_netns(pid, lambda: _change_inside(old, new))
    except BaseException:
        # the change stays pending: what is live goes back to what the config says
        _undo_update(host, old, new, pid, replug)
        raise
    return warnings


def _set_mtu(host: str, net: Net) -> None:
    with _ipr() as ipr:
        ipr.link("set", index=_must(ipr, host), mtu=int(net["mtu"]))


def _undo_update(host: str, old: Net, new: Net, pid: int, replug: bool) -> None:
    """Best effort, step by step: a step that fails does not keep the others from running.
    Inside the container nothing is left to undo: a failed change there undid itself."""
    if _differs(old, new, "mtu") and old.get("mtu"):
        with contextlib.suppress(Exception):
            _set_mtu(host, old)
    if replug:
        with contextlib.suppress(Exception):
            unplug(host)
            plug(host, old)
    elif _differs(old, new, "rate"):
        rate = old.get("rate")
        with contextlib.suppress(Exception):
            set_rate(host, float(rate) if rate else None)


def _differs(old: Net, new: Net, key: str) -> bool:
    return str(old.get(key) or "") != str(new.get(key) or "")


def in_netns(pid: int, work: Any) -> None:
    def child() -> None:
        fd = nsenter.ns_fd(pid, "net")
        nsenter.setns(fd, nsenter.CLONE_NEWNET, "network")
        work()

    nsenter.run_forked(child, "network change inside the container")


# --- inside the container's network namespace ---------------------------------------------


def _bring_up(peer: str, net: Net) -> None:
    with _ipr() as ipr:
        idx = _must(ipr, peer)
        ipr.link("set", index=idx, ifname=str(net["name"]))
        ipr.link("set", index=idx, state="up")
    _change_inside({}, net)


def _change_inside(old: Net, new: Net) -> None:
    """Change the interface inside from ``old`` to ``new``. A step that fails brings back what
    the interface had before, not what ``old`` says it had: a guest that had not configured its
    interface yet (down, no address) was given the config's old address by a refused change."""
    name = str(new["name"])
    with _ipr() as ipr:
        idx = _must(ipr, name)
        before = _live(ipr, idx)
        try:
            if _differs(old, new, "mtu") and new.get("mtu"):
                ipr.link("set", index=idx, mtu=int(new["mtu"]))
            for ipk, gwk, family in (
                ("ip", "gw", socket.AF_INET),
                ("ip6", "gw6", socket.AF_INET6),
            ):
                _change_family(ipr, idx, family, old, new, ipk, gwk)
        except BaseException:
            _restore(ipr, idx, before)
            raise


Live = tuple[int, set[tuple[int, str, int]], set[tuple[int, str]]]


def _live(ipr: IPRoute, idx: int) -> Live:
    """The interface's MTU, addresses and default routes (through a gateway), as they are."""
    mtu = int(ipr.get_links(idx)[0].get_attr("IFLA_MTU"))
    addrs = {
        (int(a["family"]), str(a.get_attr("IFA_ADDRESS")), int(a["prefixlen"]))
        for a in ipr.get_addr(index=idx)
    }
    routes = {
        (int(family), str(r.get_attr("RTA_GATEWAY")))
        for family in (socket.AF_INET, socket.AF_INET6)
        for r in ipr.get_routes(family=family, oif=idx)
        if r["dst_len"] == 0 and r.get_attr("RTA_GATEWAY")
    }
    return mtu, addrs, routes


def _restore(ipr: IPRoute, idx: int, before: Live) -> None:
    """Best effort, step by step: the MTU, addresses and default routes of ``before``."""
    mtu, addrs, routes = before
    with contextlib.suppress(Exception):
        ipr.link("set", index=idx, mtu=mtu)
    try:
        _now_mtu, now_addrs, now_routes = _live(ipr, idx)
    except Exception:  # nothing to compare with: left as it is
        return
    steps = [("del", *a) for a in now_addrs - addrs] + [("add", *a) for a in addrs - now_addrs]
    for command, family, address, prefixlen in steps:
        with contextlib.suppress(Exception):
            ipr.addr(command, index=idx, address=address, prefixlen=prefixlen, family=family)
    for family, gateway in now_routes - routes:
        with contextlib.suppress(Exception):
            ipr.route("del", dst=_DEFAULT[family], family=family, gateway=gateway, oif=idx)
    for family, gateway in routes - now_routes:
        with contextlib.suppress(Exception):
            ipr.route("replace", dst=_DEFAULT[family], family=family, gateway=gateway, oif=idx)


_DEFAULT: dict[int, str] = {socket.AF_INET: "0.0.0.0/0", socket.AF_INET6: "::/0"}


def _static(value: Any) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
    if not value or str(value) in NOT_STATIC:
        return None
    return ipaddress.ip_interface(str(value))


def _promote_secondaries(ifname: str) -> None:
    """Removing the old (primary) IPv4 address would take the new one of the same subnet with
    it; with promotion the new one takes its place."""
    knob = f"/proc/sys/net/ipv4/conf/{ifname}/promote_secondaries"  # this namespace's own
    with contextlib.suppress(OSError), open(knob, "w") as fh:
        fh.write("1")


def _addr(ipr: IPRoute, command: str, idx: int, iface: Any, tolerated: int) -> None:
    try:
        ipr.addr(command, index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    except NetlinkError as err:
        if err.code != tolerated:
            reason = os.strerror(err.code)
            raise CtkitError(f"unable to {command} address {iface}: {reason}") from None


def _change_family(
    ipr: IPRoute, idx: int, family: int, old: Net, new: Net, ipk: str, gwk: str
) -> None:
    if not _differs(old, new, ipk) and not _differs(old, new, gwk):
        return
    new_ip, old_ip = _static(new.get(ipk)), _static(old.get(ipk))
    if _differs(old, new, ipk):
        if new_ip is not None:  # the new address first: if it fails, nothing changed
            _addr(ipr, "add", idx, new_ip, errno.EEXIST)
        if old_ip is not None:
            if family == socket.AF_INET:
                _promote_secondaries(str(new["name"]))
            _addr(ipr, "del", idx, old_ip, errno.EADDRNOTAVAIL)
    default = _DEFAULT[family]
    new_gw, old_gw = new.get(gwk), old.get(gwk)
    if old_gw and (str(old_gw) != str(new_gw or "") or _differs(old, new, ipk)):
        with contextlib.suppress(NetlinkError):
            ipr.route("del", dst=default, family=family, gateway=str(old_gw), oif=idx)
    if new_gw:
        gw = ipaddress.ip_address(str(new_gw))
        if new_ip is None or gw not in new_ip.network:  # a gateway outside the subnet: on-link
            host = f"{gw}/{gw.max_prefixlen}"
            with contextlib.suppress(NetlinkError):
                ipr.route("add", dst=host, family=family, oif=idx, scope=253)
        ipr.route("replace", dst=default, family=family, gateway=str(gw), oif=idx)
