"""Devuan: the Debian plugin, run with the Debian release its codename corresponds to."""

from __future__ import annotations

from .debian import Debian


class Devuan(Debian):
    ostype = "devuan"

    def cidr_style(self) -> bool:
        return False  # as Proxmox: only Debian proper gets the CIDR address style
