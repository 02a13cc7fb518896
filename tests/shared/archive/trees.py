"""Test helper: build trees with every attribute an archive must carry, using the real tools.

``build_fidelity_tree(root, idmap=None, devices=True)`` runs a shell script (setfacl, setfattr,
mknod, mkfifo, truncate, dd) as host root, or inside the container's user namespace through
``lxc-usernsexec`` so that the host sees owners shifted by the map (100000+).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from shared.archive.idmap import IdMapEntry, usernsexec_argv

# A v2 file capability (cap_net_bind_service, effective+permitted) in setfattr's base64.
CAPABILITY = "0sAQAAAgAEAAAAAAAAAAAAAAAAAAA="

_SCRIPT = r"""
set -e
cd "$1"
devices="$2"
mkdir -p dir/sub empty "with space" deep/a/b/c
echo hello > dir/file
head -c 300000 /dev/urandom > dir/random
printf 'secret\n' > dir/secret
touch dir/cap "with space/a file" "$(printf 'new\nline')" "$(printf 'bad\377name')"
ln dir/file dir/hardlink
ln dir/file "with space/third link"
ln -s file dir/rel_symlink
ln -s /etc/mtab abs_symlink
ln -s ../../../etc dotdot_symlink
truncate -s 8M sparse
dd if=/dev/urandom of=sparse bs=4096 seek=512 count=2 conv=notrunc status=none
dd if=/dev/urandom of=sparse bs=4096 seek=1500 count=1 conv=notrunc status=none
mkfifo fifo
if [ "$devices" = 1 ]; then mknod chr c 1 3; mknod blk b 7 0; fi
chown 1000:1000 dir/file dir/random
chown 33:33 dir/sub
chown -h 1000:100 dir/rel_symlink
chown 65534:65534 empty
chmod 4755 dir/random
chmod 0600 dir/secret
chmod 1777 empty
chmod 0750 deep/a
setfacl -m u:1000:rw,g:33:r dir/file
setfacl -d -m u:1000:rwx,g:100:rx dir/sub
setfattr -n user.comment -v hello dir/file
setfattr -n user.binary -v 0x00ff10 dir/secret
setfattr -n security.capability -v {cap} dir/cap
if [ "$devices" = 1 ]; then setfattr -n trusted.secret -v x dir/file; fi
touch -d '2020-01-02 03:04:05.123456789' dir/file sparse fifo
touch -h -d '2019-05-06 07:08:09' dir/rel_symlink
find . -depth -type d -exec touch -d '2021-03-04 05:06:07.5' {} +
""".replace("{cap}", CAPABILITY)


def build_fidelity_tree(
    root: Path, *, idmap: Sequence[IdMapEntry] | None = None, devices: bool = True
) -> None:
    root.mkdir(mode=0o755, exist_ok=True)
    if idmap:
        uid = next(e.host for e in idmap if e.kind == "u" and e.ct == 0)
        gid = next(e.host for e in idmap if e.kind == "g" and e.ct == 0)
        os.chown(root, uid, gid)
    argv = [
        *usernsexec_argv(idmap),
        "sh",
        "-c",
        _SCRIPT,
        "build",
        str(root),
        "1" if devices else "0",
    ]
    subprocess.run(argv, check=True)


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
