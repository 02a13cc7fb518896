"""What goes into the archive: mount-point rules, exclusions in tar and rsync modes, pax
headers, xattrs and ACLs, sparse files (vzdump §3, §10 cases 6, 8, 9, 20-23)."""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import CT, Host, log_messages, logfile, names, only_archive, pct, vzdump

pytestmark = pytest.mark.lxc

BLOCK = 512


def test_mount_point_rules(host: Host) -> None:
    """Case 8, 9 and the device rule: rootfs and backup=1 volumes are archived; a volume
    without backup=, a bind and a device mount point are not, each with its log line; their
    config lines stay in pct.conf. In suspend mode the same holds for the rsync copy."""
    share = host.root / "share"
    share.mkdir()
    (share / "hostfile").write_text("host")
    ct = host.create(
        extra=["--mp0", "local:0,mp=/data,backup=1", "--mp1", "local:0,mp=/nob",
               "--mp2", f"{share},mp=/bind"],
    )  # fmt: skip
    ct.write("data.txt", b"in data", key="mp0")
    ct.write("nob.txt", b"not backed up", key="mp1")
    ct.conf_path.write_text(ct.conf() + "mp3: /dev/zero,mp=/devmp\n")
    stop_dir = host.dumpdir / "stop"
    stop_dir.mkdir()
    res = vzdump(str(ct.vmid), "--dumpdir", str(stop_dir))
    assert res.rc == 0, res.err
    archive = only_archive(stop_dir, ct.vmid)
    msgs = log_messages(logfile(archive))
    assert [m for m in msgs if "mount point" in m] == [
        "INFO: including mount point rootfs ('/') in backup",
        "INFO: including mount point mp0 ('/data') in backup",
        "INFO: excluding volume mount point mp1 ('/nob') from backup (disabled)",
        "INFO: excluding bind mount point mp2 ('/bind') from backup (not a volume)",
        "INFO: excluding device mount point mp3 ('/devmp') from backup (not a volume)",
    ]
    members = names(archive)
    assert "./data/data.txt" in members
    assert not [n for n in members if "nob.txt" in n or "hostfile" in n]
    conf = subprocess.run(["tar", "-xOf", str(archive), "./etc/vzdump/pct.conf"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert f"mp2: {share},mp=/bind" in conf and "mp3: /dev/zero,mp=/devmp" in conf
    # suspend mode: the excluded mount points are rsync excludes of the running CT
    ct.conf_path.write_text(ct.conf().replace("mp3: /dev/zero,mp=/devmp\n", ""))
    ct.start()
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend")
    assert res.rc == 0, res.err
    # the sync is named by the root file system's source, not the last mount point's
    assert re.search(r"INFO: starting first sync /proc/\d+/root//\./ to ", res.err), res.err
    members = names(only_archive(host.dumpdir, ct.vmid))
    assert "./data/data.txt" in members
    assert not [n for n in members if "nob" in n or "bind" in n]


def test_a_mount_point_added_to_a_stopped_ct_is_backed_up(host: Host) -> None:
    """A volume given to a stopped container (``pct set --mp0``) has no directory in the root
    file system until the container starts: stop mode's read-only mounts failed with "OSError:
    [Errno 30] Read-only file system". The directory is now made as a start makes it (owned by
    the container's root), and the archive restores with the volume's data."""
    ct = host.create()
    assert pct("set", str(ct.vmid), "--mp0", "local:0,mp=/data/sub,backup=1") == ""
    ct.write("data.txt", b"in data", key="mp0")
    assert not (ct.volume() / "data").exists()
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir))
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    assert "./data/sub/data.txt" in names(archive)
    made = (ct.volume() / "data/sub").stat()
    assert (made.st_uid, made.st_gid) == ct.host_ids()
    new = host.new_vmid()
    pct("restore", str(new), str(archive))
    pct("start", str(new))
    assert pct("exec", str(new), "--", "cat", "/data/sub/data.txt") == "in data"
    pct("stop", str(new))


def exclusion_tree(ct: CT) -> None:
    for rel in ("var/foo/x", "var/foobar", "var/fo", "bar", "a/b/bar", "bar2", "var/cache/c",
                "tmp/t", "var/tmp/t", "srv/a.tmp", "srv/sub/b.tmp", "srv/keep"):  # fmt: skip
        ct.write(rel, b"x")
    run = ct.volume() / "var/run"
    run.unlink()  # a real /var/run directory instead of the template's symlink to /run
    ct.write("var/run/daemon.pid", b"1")
    ct.write("var/run/keep.sock", b"")


ALWAYS_KEPT = ["./var/fo", "./bar2", "./srv/keep", "./var/run/keep.sock", "./tmp/", "./var/tmp/"]
CONF_CLI_DROPPED = ["./var/foo/", "./var/foo/x", "./var/foobar", "./bar", "./a/b/bar",
                    "./srv/a.tmp", "./srv/sub/b.tmp"]  # fmt: skip
STD_DROPPED = ["./tmp/t", "./var/tmp/t", "./var/run/daemon.pid"]


def test_exclusions_in_stop_mode(host: Host) -> None:
    """Cases 20-23: conf + CLI patterns both apply; anchored and unanchored matching; tar
    wildcards cross '/'; a trailing slash only warns; the std excludes keep /tmp itself."""
    ct = host.create()
    exclusion_tree(ct)
    host.vzdump_conf("exclude-path: '/var/foo*' /srv/*.tmp\n")
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--exclude-path", "bar",
                 "--exclude-path", "/var/cache/")  # fmt: skip
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    msgs = log_messages(logfile(archive))
    assert "WARN: tar does not match exclusion with a trailing slash '/var/cache/'" in msgs
    members = set(names(archive))
    assert not members & {*CONF_CLI_DROPPED, *STD_DROPPED}
    assert {*ALWAYS_KEPT, "./var/cache/c"} <= members
    # --stdexcludes 0: /tmp, /var/tmp and the pid file are all there
    host.vzdump_conf("")
    other = host.dumpdir / "noexcl"
    other.mkdir()
    res = vzdump(str(ct.vmid), "--dumpdir", str(other), "--stdexcludes", "0")
    assert res.rc == 0, res.err
    assert set(STD_DROPPED) <= set(names(only_archive(other, ct.vmid)))


def test_exclusions_in_suspend_mode(host: Host) -> None:
    """§3.4 in rsync modes: the same patterns drop the same files (rsync on the copy, then tar
    on the copy), except that a trailing slash matches the directory and is not warned about."""
    ct = host.create()
    exclusion_tree(ct)
    ct.start()
    host.vzdump_conf("exclude-path: '/var/foo*' /srv/*.tmp\n")
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend",
                 "--exclude-path", "bar", "--exclude-path", "/var/cache/")  # fmt: skip
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    assert not any("trailing slash" in m for m in log_messages(logfile(archive)))
    members = set(names(archive))
    assert not members & {*CONF_CLI_DROPPED, *STD_DROPPED, "./var/cache/", "./var/cache/c"}
    assert set(ALWAYS_KEPT) <= members


@pytest.mark.parametrize("mode", ["stop", "suspend"])
def test_dotfile_patterns_drop_dotfiles_not_the_container(host: Host, mode: str) -> None:
    """``.*`` (dotfiles), ``?`` (one-character names) and ``./x`` given to tar as Proxmox gives
    them took the root's own ``./`` too: every member was left out, and the backup of an
    empty tree ended as a success. They drop the names they match, at any depth; the archive
    restores a container that starts with the rest of its files."""
    ct = host.create()
    for rel in (".hidden", "srv/.dot/in", "srv/keep", "srv/q", "xx", "srv/xx"):
        ct.write(rel, b"data")
    if mode == "suspend":
        ct.start()
    patterns = [arg for p in (".*", "?", "./xx") for arg in ("--exclude-path", p)]
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", mode, *patterns)
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    members = set(names(archive))
    assert {"./srv/keep", "./srv/xx", "./etc/hostname", "./bin/busybox"} <= members
    assert not {"./.hidden", "./srv/.dot/", "./srv/.dot/in", "./srv/q", "./xx"} & members
    new = host.new_vmid()
    pct("restore", str(new), str(archive))
    pct("start", str(new))
    assert pct("exec", str(new), "--", "cat", "/srv/keep") == "data"
    pct("stop", str(new))


def raw_tar_head(archive: Path, blocks: int = 4) -> bytes:
    with open(archive, "rb") as fh:
        return fh.read(blocks * BLOCK)


def test_pax_headers_xattrs_acls_sparse(host: Host) -> None:
    """Case 6 and §3.1: pax headers (PaxHeaders with sub-second times) and numeric owners; a
    user.* xattr and a POSIX ACL are stored, a trusted.* xattr is not; sparse files stay
    small."""
    ct = host.create()
    path = ct.write("srv/attrs", b"with attributes")
    subprocess.run(["setfattr", "-n", "user.foo", "-v", "bar", str(path)], check=True)
    subprocess.run(["setfattr", "-n", "trusted.secret", "-v", "x", str(path)], check=True)
    subprocess.run(["setfacl", "-m", "u:101000:rwx", str(path)], check=True)  # CT uid 1000
    sparse = ct.write("srv/sparse", b"")
    os.truncate(sparse, 256 << 20)
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir))
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    assert archive.stat().st_size < 16 << 20
    head = raw_tar_head(archive)
    assert head[156:157] == b"x"  # a pax extended header comes first
    assert head[:100].rstrip(b"\0") == b"./etc/vzdump/PaxHeaders/pct.conf"
    assert b"mtime=" in head and b"atime=" in head
    mtime = head.split(b"mtime=")[1].split(b"\n")[0]
    assert b"." in mtime  # sub-second time stamps
    listing = subprocess.run(
        ["tar", "--list", "--verbose", "--format=posix", "--numeric-owner", "--xattrs",
         "--acls", "-vv", "-f", str(archive)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert listing[0].split()[1] == "0/0" and listing[0].endswith(" ./etc/vzdump/pct.conf")
    at = next(i for i, ln in enumerate(listing) if ln.endswith(" ./srv/attrs"))
    extra = []
    for line in listing[at + 1 :]:
        if not line.startswith("  "):
            break
        extra.append(line.strip())
    assert "x: 3 user.foo" in extra
    acl = next(e for e in extra if e.startswith("a: "))
    assert ":rwx" in acl and "user:" in acl
    assert not any("trusted" in e for e in extra)
    # the ACL names the container's uid 1000, not the host's 101000
    # (GNU tar writes the user name when the host's passwd has one for that uid)
    value = pax_record(archive.read_bytes(), b"SCHILY.acl.access").decode()
    try:
        who = pwd.getpwuid(1000).pw_name
    except KeyError:
        who = "1000"
    assert f"user:{who}:rwx" in value.splitlines() and "101000" not in value, value


def pax_record(blob: bytes, key: bytes) -> bytes:
    """The value of the first pax record ``<len> <key>=<value>\\n`` in a raw tar stream."""
    at = blob.index(b" " + key + b"=")
    start = at
    while blob[start - 1 : start].isdigit():
        start -= 1
    record = blob[start : start + int(blob[start:at])]
    return record[at - start + len(key) + 2 : -1]


@pytest.fixture
def xfs_dir(host: Host, tmp_path: Path) -> Iterator[Path]:
    """A directory on an XFS file system of its own (a loop device), traversable by the
    containers' root."""
    image, mnt = tmp_path / "xfs.img", host.root / "xfs"
    with open(image, "wb") as fh:
        fh.truncate(320 << 20)
    subprocess.run(["mkfs.xfs", "-q", str(image)], check=True)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        mnt.chmod(0o755)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_suspend_mode_keeps_acls_with_its_copy_on_xfs(host: Host, xfs_dir: Path) -> None:
    """XFS shows root its ACLs as ``trusted.SGI_ACL_*`` xattrs too: rsync's second pass deleted
    them from the copy to match the source, and the ACL with them. Every suspend-mode backup
    with its temp dir on XFS lost every ACL, and said nothing."""
    ct = host.create()
    acl = ct.write("srv/acl.txt", b"acl")
    subprocess.run(["setfacl", "-m", "u:101000:rw", str(acl)], check=True)  # CT uid 1000
    shared = acl.parent / "shared"
    shared.mkdir()
    subprocess.run(["setfacl", "-d", "-m", "g:101000:rx", str(shared)], check=True)
    ct.start()
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend",
                 "--tmpdir", str(xfs_dir))  # fmt: skip
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    new = host.new_vmid()
    pct("restore", str(new), str(archive))
    pct("start", str(new))
    root = CT(new, host.root, True).volume()
    assert "user:101000:rw-" in getfacl(root / "srv/acl.txt")
    assert "default:group:101000:r-x" in getfacl(root / "srv/shared")
    assert pct("exec", str(new), "--", "cat", "/srv/acl.txt") == "acl"
    pct("stop", str(new))
    pct("stop", str(ct.vmid))


def getfacl(path: Path) -> str:
    return subprocess.run(
        ["getfacl", "-n", "-p", str(path)], capture_output=True, text=True, check=True
    ).stdout
