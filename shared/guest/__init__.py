"""Guest OS detection and per-distribution setup of container root file systems.

Use :meth:`GuestSetup.for_rootfs`; every file operation runs chrooted into the container.
"""

from .config import GuestConfig
from .detect import detect_arch, resolve_arch
from .password import sha512_crypt, shadow_hash
from .random48 import PerlRand
from .setup import PLUGINS, GuestSetup

__all__ = [
    "PLUGINS",
    "GuestConfig",
    "GuestSetup",
    "PerlRand",
    "detect_arch",
    "resolve_arch",
    "sha512_crypt",
    "shadow_hash",
]
