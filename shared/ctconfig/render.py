"""Output of ``pct config``, ``pct pending`` and ``pct listsnapshot`` (pct.md §8), text and JSON.

The JSON forms follow Proxmox's API results: ``config_dict`` is ``GET .../config``,
``pending_list`` is ``GET .../pending`` and ``snapshot_list`` is ``GET .../snapshot``.
"""

from __future__ import annotations

import time
from typing import Any

from shared.errors import ParamError
from shared.formats.digits import ascii_int
from shared.formats.types import Bool, FormatError, Int, Number

from .config import Config, Section, encode_text
from .options import option_spec

CURRENT_DESCRIPTION = "You are here!"


def config_section(conf: Config, *, current: bool = False, snapshot: str | None = None) -> Section:
    """What ``pct config`` shows: pending merged in (default), as applied, or a snapshot."""
    if current and snapshot:
        msg = "cannot use 'snapshot' parameter with 'current'"
        raise ParamError({"snapshot": msg, "current": msg})
    if snapshot:
        return conf.snapshot(snapshot)
    if current:
        return Section(conf.vmid, conf.values, conf.lxc)
    return conf.merged()


def _text(key: str, value: str) -> str:
    return encode_text(value) if key == "description" else value


def render_config(conf: Config, *, current: bool = False, snapshot: str | None = None) -> str:
    """``key: value`` sorted (description URL-encoded), then raw lxc entries in file order."""
    section = config_section(conf, current=current, snapshot=snapshot)
    out = [f"{k}: {_text(k, section.values[k])}\n" for k in sorted(section.values) if k != "digest"]
    out += [f"{k}: {v}\n" for k, v in section.lxc]
    return "".join(out)


def json_value(key: str, text: str) -> Any:
    """A stored value as the API returns it: numbers and booleans as numbers, else text."""
    spec = option_spec(key)
    if spec is None:
        return text
    try:
        if isinstance(spec.type, Bool):
            return 1 if spec.type.parse(text) else 0
        if isinstance(spec.type, Int):
            return int(text)
        if isinstance(spec.type, Number):
            value = float(text)
            return int(value) if value.is_integer() and "." not in text else value
    except (FormatError, ValueError):
        return text
    return text


def config_dict(
    conf: Config, *, current: bool = False, snapshot: str | None = None
) -> dict[str, Any]:
    section = config_section(conf, current=current, snapshot=snapshot)
    data: dict[str, Any] = {k: json_value(k, v) for k, v in section.values.items()}
    if conf.digest is not None:
        data["digest"] = conf.digest
    if section.lxc:
        data["lxc"] = [[k, v] for k, v in section.lxc]
    return data


# --- pending ------------------------------------------------------------------------------


def pending_list(conf: Config) -> list[dict[str, Any]]:
    """One item per key: ``value`` (current), ``pending`` (new), ``delete`` (1, or 2 = forced)."""
    deletes = conf.pending_deletes()
    pending = {k: v for k, v in conf.pending.values.items() if k != "delete"}
    items: list[dict[str, Any]] = []
    for key, text in conf.values.items():
        item: dict[str, Any] = {"key": key, "value": text}
        if key in pending:
            item["pending"] = pending.pop(key)
        if key in deletes:
            item["delete"] = 2 if deletes.pop(key) else 1
        items.append(item)
    items += [{"key": k, "pending": v} for k, v in pending.items()]
    items += [{"key": k, "delete": 2 if force else 1} for k, force in deletes.items()]
    if conf.digest is not None:
        items.append({"key": "digest", "value": conf.digest})
    return sorted(items, key=lambda item: str(item["key"]))


def render_pending(conf: Config) -> str:
    """``cur k: v`` / ``new k: p`` / ``del k: v`` lines, keys sorted."""
    out: list[str] = []
    for item in pending_list(conf):
        key = item["key"]
        if key == "digest":
            continue
        value, new = item.get("value"), item.get("pending")
        value = _text(key, value) if value is not None else None
        new = _text(key, new) if new is not None else None
        if value is not None:
            if item.get("delete"):
                out.append(f"del {key}: {value}\n")
            elif new is not None:
                out += [f"cur {key}: {value}\n", f"new {key}: {new}\n"]
            else:
                out.append(f"cur {key}: {value}\n")
        elif new is not None:
            out.append(f"new {key}: {new}\n")
    return "".join(out)


# --- snapshots ----------------------------------------------------------------------------


def snapshot_list(conf: Config, *, running: bool = False) -> list[dict[str, Any]]:
    """The snapshots plus the pseudo entry ``current`` (last)."""
    items: list[dict[str, Any]] = []
    for name in sorted(conf.snapshots):
        snap = conf.snapshots[name]
        snaptime = snap.values.get("snaptime") or "0"
        item: dict[str, Any] = {
            "name": name,
            "snaptime": ascii_int(snaptime) or 0,
            "description": snap.description or "",
        }
        if snap.values.get("parent") is not None:
            item["parent"] = snap.values["parent"]
        if snap.values.get("snapstate"):
            item["snapstate"] = snap.values["snapstate"]
        items.append(item)
    current: dict[str, Any] = {
        "name": "current",
        "digest": conf.digest,
        "running": 1 if running else 0,
        "description": CURRENT_DESCRIPTION,
    }
    if conf.parent is not None:
        current["parent"] = conf.parent
    items.append(current)
    return items


def render_snapshot_tree(entries: list[dict[str, Any]]) -> str:
    """Proxmox's ``print_snapshot_tree``: children indented one blank, oldest first."""
    by_name = {str(e["name"]): e for e in entries}
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    for entry in entries:
        parent = entry.get("parent")
        if parent and parent in by_name:
            children.setdefault(str(parent), []).append(str(entry["name"]))
        else:
            roots.append(str(entry["name"]))

    def order(name: str) -> tuple[int, int, str]:
        snaptime = by_name[name].get("snaptime")
        return (1, 0, name) if snaptime is None else (0, int(snaptime), name)

    out: list[str] = []

    def walk(prefix: str, name: str) -> None:
        entry = by_name[name]
        description = str(entry.get("description") or "no-description").split("\n")[0]
        snaptime = entry.get("snaptime")
        stamp = "" if snaptime is None else time.strftime("%F %H:%M:%S", time.localtime(snaptime))
        width = max(30 - len(prefix), 0)
        out.append(f"{prefix} {name:<{width}} {stamp:<23} {description}\n")
        for child in sorted(children.get(name, []), key=order):
            walk(" " + prefix, child)

    for root in sorted(roots, key=order):
        walk("`->", root)
    return "".join(out)
