"""The container config ``/etc/pve/lxc/<vmid>.conf``: schema, parse/write, pending, snapshots.

Modules: ``options`` (the option schema), ``rawlxc`` (raw ``lxc.*`` keys), ``config`` (model,
parser, writer), ``mountpoints`` (rootfs/mpN, unused volumes, MACs), ``pending`` (``pct set``),
``render`` (``pct config/pending/listsnapshot`` output), ``store`` (files by vmid).
"""

from .config import Config, Section, decode_text, encode_text, parse_config, write_config
from .mountpoints import MountPoint, random_mac
from .options import parse_option
from .pending import OptionError, apply_pending, update_pending

__all__ = [
    "Config",
    "MountPoint",
    "OptionError",
    "Section",
    "apply_pending",
    "decode_text",
    "encode_text",
    "parse_config",
    "parse_option",
    "random_mac",
    "update_pending",
    "write_config",
]
