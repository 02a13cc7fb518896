"""``ostype: unmanaged``: the container is left exactly as it is."""

from __future__ import annotations

from .base import Plugin
from .context import Ctx


class Unmanaged(Plugin):
    ostype = "unmanaged"

    def post_create(self, ctx: Ctx, shadow_hash: str, ssh_keys: str | None) -> None:
        return

    def pre_start(self, ctx: Ctx) -> None:
        return

    def clear_machine_id(self, ctx: Ctx, clone: bool = False) -> None:
        return

    def set_hostname(self, ctx: Ctx) -> None:
        return

    def set_dns(self, ctx: Ctx) -> None:
        return

    def set_timezone(self, ctx: Ctx) -> None:
        return
