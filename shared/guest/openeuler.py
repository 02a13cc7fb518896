"""openEuler: CentOS's plugin (network-scripts, FQDN hostname) with systemd gettys and presets."""

from __future__ import annotations

from .centos import CentOS
from .context import Ctx


class OpenEuler(CentOS):
    ostype = "openeuler"

    def uses_networkmanager(self) -> bool:
        return False  # openEuler's NetworkManager reads ifcfg files (ifcfg-rh plugin)

    def template_fixup(self, ctx: Ctx) -> None:
        self.remove_lxc_name_from_etc_hosts(ctx)

    def setup_init(self, ctx: Ctx) -> None:
        self.setup_container_getty_service(ctx)
        self.setup_systemd_preset(ctx)
