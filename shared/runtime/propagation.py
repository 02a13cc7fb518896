"""Mount propagation of the host's root, as container monitors need it.

A container's LXC monitor unshares its mount namespace (``lxc.monitor.unshare``) and turns it
into a slave of the host's. On systemd hosts ``/`` is a shared mount, so a later unmount on the
host reaches every monitor's copy. On hosts where ``/`` is private (no systemd as PID 1) the
copies would keep whatever was mounted when a container started — another container's volume,
a backup's snapshot — alive until that container stops. :func:`ensure_shared_root` does what
systemd does at boot: ``mount --make-rshared /``.
"""

from __future__ import annotations

import subprocess

MOUNTINFO = "/proc/self/mountinfo"


def root_is_shared(mountinfo: str = MOUNTINFO) -> bool:
    with open(mountinfo, encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) > 6 and fields[4] == "/":
                optional = fields[6 : fields.index("-")]
                return any(f.startswith("shared:") for f in optional)
    return False


def ensure_shared_root() -> bool:
    """Make ``/`` rshared when it is private; True when a change was made."""
    if root_is_shared():
        return False
    proc = subprocess.run(["mount", "--make-rshared", "/"], capture_output=True, check=False)
    return proc.returncode == 0
