"""One bad container config must never break the node, and no option is silently dropped:
bad values and raw lxc keys are refused at start with one line, pct list still lists the
healthy containers, stale generated LXC configs are ignored, non-UTF-8 configs are refused,
mount options, debug, firewall, quota and VLAN tags behave as documented."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.pct.conftest import PCT, Pct

VZDUMP = PCT.parent / "vzdump"

pytestmark = pytest.mark.lxc


@pytest.fixture
def ct(pct: Pct, vmid: int, busybox_template: Path) -> int:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    return vmid


def conf_path(ctroot: Path, vmid: int) -> Path:
    return ctroot / f"etc/pve/lxc/{vmid}.conf"


def append_conf(ctroot: Path, vmid: int, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    with open(conf_path(ctroot, vmid), "ab") as fh:
        fh.write(data)


def drop_line(ctroot: Path, vmid: int, prefix: str) -> None:
    path = conf_path(ctroot, vmid)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(ln for ln in lines if not ln.startswith(prefix.encode())))


def one_line_error(text: str) -> None:
    assert "Traceback" not in text and "RuntimeError" not in text, text


def test_bad_arch_refused_at_start_and_a_stale_generated_config_breaks_nothing(
    pct: Pct, ct: int, new_vmid: object, busybox_template: Path, ctroot: Path
) -> None:
    other = new_vmid()  # type: ignore[operator]
    pct("create", other, busybox_template, "--rootfs", "local:0")
    append_conf(ctroot, ct, "arch: amd64x\n")
    res = pct("start", ct, check=False)
    assert res.rc == 12 and "unable to parse value of 'arch'" in res.err, res.text
    one_line_error(res.text)
    assert not (ctroot / f"var/lib/lxc/{ct}/config").exists()
    # what an older version left behind: a generated config LXC cannot load
    lxcdir = ctroot / f"var/lib/lxc/{ct}"
    lxcdir.mkdir(parents=True, exist_ok=True)
    (lxcdir / "config").write_text("lxc.arch = amd64x\nlxc.uts.name = x\n")
    res = pct("list")
    assert f"{ct} " in res.out and f"{other} " in res.out and "stopped" in res.out
    one_line_error(res.text)
    assert pct("status", ct).out == "status: stopped\n"
    pct("start", other)
    assert pct("status", other).out == "status: running\n"
    pct("stop", other)
    pct("destroy", other)
    drop_line(ctroot, ct, "arch:")
    pct("start", ct)  # the generated config is made anew
    assert pct("status", ct).out == "status: running\n"
    pct("stop", ct)


@pytest.mark.parametrize(
    ("line", "expect", "hint"),
    [
        ("lxc.init_cmd: /sbin/init", "Unsupported config key", "lxc.init.cmd"),
        ("lxc.cap.drop: bogus_cap", "Invalid capability specified", None),
    ],
)
def test_raw_lxc_lines_lxc_rejects_are_refused_with_the_line(
    pct: Pct, ct: int, ctroot: Path, line: str, expect: str, hint: str | None
) -> None:
    append_conf(ctroot, ct, line + "\n")
    res = pct("start", ct, check=False)
    assert res.rc == 12, res.text
    one_line_error(res.text)
    assert "LXC rejects config line" in res.err and expect in res.err
    if hint:
        assert f"hint: 'lxc.init_cmd' is the pre-LXC-3 name; LXC 5 calls it '{hint}'" in res.err
    assert pct("list").rc == 0
    assert pct("status", ct).out == "status: stopped\n"


def test_list_shows_healthy_containers_beside_a_broken_one(
    pct: Pct, ct: int, new_vmid: object, busybox_template: Path, ctroot: Path
) -> None:
    other = new_vmid()  # type: ignore[operator]
    pct("create", other, busybox_template, "--rootfs", "local:0", "--hostname", "fine")
    append_conf(ctroot, ct, "hostname: a;b\n")
    res = pct("list", check=False)
    assert res.rc == 12
    one_line_error(res.text)
    rows = {ln.split()[0]: ln.split() for ln in res.out.splitlines()[1:]}
    assert rows[str(other)][1:] == ["stopped", "fine"]
    assert rows[str(ct)][1] == "broken"
    assert f"CT {ct}: vm {ct} - unable to parse value of 'hostname'" in res.err
    res = pct("list", "--output-format", "json", check=False)
    assert res.rc == 12 and f'"status": "broken", "vmid": {ct}' in res.out


def test_a_mount_point_that_does_not_parse_is_named_by_the_commands_that_need_it(
    pct: Pct, ct: int, new_vmid: object, ctroot: Path, images: Callable[[int], Path]
) -> None:
    """A hand-edited or foreign config whose rootfs/mp value does not parse: move-volume says so
    in one line and changes nothing; fsck of a device that is not there says what Proxmox says."""
    good = conf_path(ctroot, ct).read_text()
    append_conf(ctroot, ct, "mp0: /\n")
    before = conf_path(ctroot, ct).read_text()
    res = pct("move-volume", ct, "mp0", "local", check=False)
    assert res.rc == 12, res.text
    one_line_error(res.text)
    assert res.err.strip() == (
        f"vm {ct} - unable to parse value of 'mp0' - format error (mp0.volume: invalid format"
        " - / is the container's root; mp0.mp: property is missing and it is not optional)"
    )
    assert conf_path(ctroot, ct).read_text() == before
    conf_path(ctroot, ct).write_text(good + "mp0: /dev/ctkit-no-such-disk,mp=/data\n")
    res = pct("fsck", ct, "--device", "mp0", check=False)
    assert res.rc == 6, res.text
    one_line_error(res.text)
    assert res.err.strip() == "path '/dev/ctkit-no-such-disk' does not point to a block device"
    # a clone of a config whose guest-setup value does not parse: one line, nothing made
    conf_path(ctroot, ct).write_text(good + "tty: /dev/x\n")
    newid = new_vmid()  # type: ignore[operator]
    res = pct("clone", ct, newid, check=False)
    assert res.rc == 12, res.text
    one_line_error(res.text)
    assert f"vm {newid} - tty: type check ('integer') failed - got '/dev/x'" in res.err
    assert "clone of mountpoint" not in res.text  # refused before any volume was copied
    assert not conf_path(ctroot, newid).exists() and not images(newid).exists()
    assert str(newid) not in pct("list").out


def test_a_mount_point_this_version_cannot_read_keeps_its_data(
    pct: Pct,
    vmid: int,
    new_vmid: object,
    busybox_template: Path,
    ctroot: Path,
    tmp_path: Path,
    images: Callable[[int], Path],
) -> None:
    """An mp line with an option this version does not know (hand-edited, or a newer Proxmox's):
    a backup failed to leave its files out and succeeded; a rescan listed its volume as unused,
    and deleting that entry destroyed the data. Now whatever would archive, copy or mount the
    container names the line in one line, and deleting the line keeps its volume as unused."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--mp0", "local:0,mp=/data")
    volid = f"local:{vmid}/subvol-{vmid}-disk-1.subvol"
    (images(vmid) / f"subvol-{vmid}-disk-1.subvol/precious").write_text("keep me\n")
    text = conf_path(ctroot, vmid).read_text()
    conf_path(ctroot, vmid).write_text(text.replace(",mp=/data", ",mp=/data,newopt=1"))
    said = (
        f"vm {vmid} - unable to parse value of 'mp0' - format error (mp0.newopt: property is not"
        " defined in schema and the schema does not allow additional properties)"
    )
    dump = tmp_path / "dump"
    dump.mkdir()
    backup = subprocess.run(
        [str(VZDUMP), str(vmid), "--dumpdir", str(dump)], capture_output=True, text=True
    )
    assert backup.returncode == 13, backup.stderr
    assert f"ERROR: Backup of VM {vmid} failed - {said}" in backup.stderr
    assert not list(dump.glob("*.tar*"))  # no archive without the mount point's files
    newid = new_vmid()  # type: ignore[operator]
    for args in (["mount", vmid], ["template", vmid], ["clone", vmid, newid, "--full"]):
        res = pct(*args, check=False)
        assert (res.rc, res.err.strip()) == (12, said), args
    assert not conf_path(ctroot, newid).exists()
    pct("rescan", "--vmid", vmid)
    assert "unused" not in conf_path(ctroot, vmid).read_text()
    pct("set", vmid, "--delete", "mp0")
    conf = conf_path(ctroot, vmid).read_text()
    assert "mp0:" not in conf and f"unused0: {volid}\n" in conf
    pct("set", vmid, "--mp0", f"{volid},mp=/data")  # attached again: the data is all there
    pct("start", vmid)
    try:
        assert pct("exec", vmid, "--", "cat", "/data/precious").out == "keep me\n"
    finally:
        pct("stop", vmid)


def test_non_utf8_config_is_refused_with_a_line(pct: Pct, ct: int, ctroot: Path) -> None:
    drop_line(ctroot, ct, "ostype:")
    append_conf(ctroot, ct, b"ostype: \xe7ebian\n")
    for args in (("start", ct), ("config", ct)):
        res = pct(*args, check=False)
        assert res.rc == 12, res.text
        one_line_error(res.text)
        assert "UnicodeEncodeError" not in res.text
        assert f"vm {ct} - line " in res.err and "is not valid UTF-8: ostype: \\xe7ebian" in res.err


def test_hookscript_must_be_a_snippet_volume(pct: Pct, ct: int, ctroot: Path) -> None:
    res = pct("set", ct, "--hookscript", "local:snippets/../../../../tmp/x", check=False)
    assert res.rc != 0 and "unable to parse directory volume name" in res.err, res.text
    res = pct("set", ct, "--hookscript", "local:vztmpl/x.tar.gz", check=False)
    assert res.rc != 0 and "is not in the snippets directory" in res.err, res.text
    assert "hookscript" not in conf_path(ctroot, ct).read_text()
    snippets = ctroot / "var/lib/vz/snippets"
    snippets.mkdir(parents=True)
    (snippets / "hook.sh").write_text("#!/bin/sh\nexit 0\n")
    (snippets / "hook.sh").chmod(0o755)
    pct("set", ct, "--hookscript", "local:snippets/hook.sh")
    assert "hookscript: local:snippets/hook.sh" in conf_path(ctroot, ct).read_text()


def test_an_option_value_that_looks_like_help_is_a_value(
    pct: Pct, vmid: int, busybox_template: Path
) -> None:
    res = pct("create", vmid, busybox_template, "--hostname", "--help", check=False)
    assert res.rc == 2, res.text
    assert "Usage" not in res.out and "hostname:" in res.err
    res = pct("create", vmid, busybox_template, "-hostname", "-h", check=False)
    assert res.rc == 2 and "hostname:" in res.err, res.text


def test_mountoptions_are_a_semicolon_list(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    pct(
        "create", vmid, busybox_template, "--rootfs", "local:0",
        "--mp0", "local:1,mp=/data,mountoptions=noatime;nodev",
    )  # fmt: skip
    pct("start", vmid)
    line = next(ln for ln in pct("exec", vmid, "--", "cat", "/proc/mounts").out.splitlines()
                if " /data " in ln)  # fmt: skip
    options = line.split()[3].split(",")
    assert "noatime" in options and "nodev" in options
    pct("stop", vmid)


def test_firewall_is_refused_on_set_and_warned_about_at_start(
    pct: Pct, ct: int, ctroot: Path
) -> None:
    res = pct("set", ct, "--net0", "name=eth0,firewall=1", check=False)
    assert res.rc == 2 and "net0: firewall=1 is not supported by ctkit" in res.err
    # a config from a Proxmox host: the firewall flag is warned about
    append_conf(ctroot, ct, "net0: name=eth0,firewall=1,type=veth\n")
    res = pct("start", ct)
    assert "WARN: net0: firewall=1 is not supported by ctkit" in res.text
    pct("stop", ct)


def test_quota_mounts_ext4_images_with_journaled_quotas(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--unprivileged", "0")
    pct("set", vmid, "--mp0", "local:1,mp=/q,quota=1")
    pct("start", vmid)
    mounts = pct("exec", vmid, "--", "cat", "/proc/mounts").out.splitlines()
    options = next(ln for ln in mounts if " /q " in ln).split()[3].split(",")
    for option in ("usrjquota=aquota.user", "grpjquota=aquota.group", "jqfmt=vfsv0"):
        assert option in options, options
    pct("stop", vmid)
    # a directory volume has no ext4 to keep quotas on: refused, not silently ignored
    text = conf_path(ctroot, vmid).read_text()
    rootfs = next(ln for ln in text.splitlines() if ln.startswith("rootfs:"))
    conf_path(ctroot, vmid).write_text(text.replace(rootfs, rootfs + ",quota=1"))
    res = pct("start", vmid, check=False)
    assert res.rc == 12, res.text
    assert f"vm {vmid} - rootfs: quota=1 needs an ext4 image volume (raw), 'local:" in res.err
    one_line_error(res.text)
    append_conf(ctroot, vmid, "unprivileged: 1\n")
    res = pct("start", vmid, check=False)
    assert res.rc == 6 and res.err == "Quotas are not supported by unprivileged containers.\n"


@pytest.fixture
def plain_bridge() -> Iterator[str]:
    name = "brcfgnovlan0"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        yield name
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["ip", "link", "del", name], check=True)


def test_vlan_tag_needs_a_vlan_aware_bridge(
    pct: Pct, ct: int, ctroot: Path, plain_bridge: str
) -> None:
    pct("set", ct, "--net0", f"name=eth0,bridge={plain_bridge},tag=5")
    res = pct("start", ct, check=False)
    assert res.rc == 12, res.text
    assert res.err.startswith(
        f"net0: VLAN tag 5 needs a VLAN-aware bridge, but bridge '{plain_bridge}' has no VLAN"
    )
    assert f"hint: enable it: ip link set {plain_bridge} type bridge vlan_filtering 1" in res.err
    pct("set", ct, "--net0", "name=eth0,bridge=brcfgmissing0")
    res = pct("start", ct, check=False)
    assert res.rc == 12 and res.err == "net0: bridge 'brcfgmissing0' does not exist\n"


def test_debug_shows_lxc_debug_log_on_a_failed_start(pct: Pct, ct: int, ctroot: Path) -> None:
    append_conf(ctroot, ct, "lxc.mount.entry: /nonexistent-ctkit-src mnt none bind 0 0\n")
    res = pct("start", ct, check=False)
    assert res.rc != 0 and "debug log of the failed start" not in res.text
    res = pct("start", ct, "--debug", check=False)
    assert res.rc != 0 and "debug log of the failed start" in res.text, res.text
    assert " DEBUG " in res.text
    append_conf(ctroot, ct, "debug: 1\n")
    res = pct("start", ct, check=False)
    assert res.rc != 0 and "debug log of the failed start" in res.text


def test_exec_and_enter_start_from_a_clean_environment(
    pct: Pct, ct: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTKIT_TEST_SECRET", "host-only")
    monkeypatch.setenv("TERM", "xterm-ctkit")
    monkeypatch.setenv("PATH", "/opt/host-only/bin:" + os.environ["PATH"])
    pct("start", ct)
    env = dict(ln.split("=", 1) for ln in pct("exec", ct, "--", "env").out.splitlines())
    assert "CTKIT_TEST_SECRET" not in env and "CTKIT_ROOT" not in env
    assert env["TERM"] == "xterm-ctkit"
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    res = pct("enter", ct, stdin="echo secret=$CTKIT_TEST_SECRET path=$PATH\n")
    assert "secret= path=/usr/local/sbin:" in res.out
    kept = pct("exec", ct, "--keep-env", "--", "env").out
    assert "CTKIT_TEST_SECRET=host-only" in kept
    pct("stop", ct)


def test_storages_of_unsupported_types_are_named_as_such(
    pct: Pct, ct: int, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    cfg = ctroot / "etc/pve/storage.cfg"
    cfg.write_text(
        "dir: local\n\tpath /var/lib/vz\n\tcontent rootdir,vztmpl,backup,iso\n\n"
        "lvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n\tcontent rootdir,images\n\n"
        "zfspool: tank\n\tpool rpool/data\n\tcontent rootdir\n"
    )
    message = "storage 'local-lvm' has type 'lvmthin', which ctkit does not support"
    text = conf_path(ctroot, ct).read_text()
    rootfs = next(ln for ln in text.splitlines() if ln.startswith("rootfs:"))
    conf_path(ctroot, ct).write_text(
        text.replace(rootfs, f"rootfs: local-lvm:vm-{ct}-disk-0,size=8G")
    )
    res = pct("start", ct, check=False)
    assert res.rc != 0 and message in res.err and "does not exist" not in res.err, res.text
    other = vmid + 1
    res = pct("create", other, busybox_template, "--rootfs", "local-lvm:1", check=False)
    assert res.rc != 0 and message in res.err, res.text
    res = pct("list")
    warnings = [ln for ln in res.err.splitlines() if "storage.cfg" in ln]
    assert warnings == [
        "WARN: storage.cfg: skipped section(s) of a type ctkit does not support: "
        "'lvmthin: local-lvm', 'zfspool: tank'"
    ]


def test_btrfs_refuses_sizes_beyond_the_file_system(
    pct: Pct, vmid: int, busybox_template: Path, btrfs_storage: str
) -> None:
    res = pct(
        "create", vmid, busybox_template, "--rootfs", f"{btrfs_storage}:99999999", check=False
    )
    assert res.rc != 0, res.text
    assert "volume size 99999999G exceeds the capacity of storage 'bt' (16.0G)" in res.err
    pct("create", vmid, busybox_template, "--rootfs", f"{btrfs_storage}:0.5")
    res = pct("resize", vmid, "rootfs", "+99999T", check=False)
    assert res.rc != 0 and "exceeds the capacity of storage 'bt'" in res.err, res.text
    res = pct("set", vmid, "--mp0", f"{btrfs_storage}:5000,mp=/big", check=False)
    assert res.rc != 0 and "exceeds the capacity of storage 'bt'" in res.text, res.text


def test_numbers_of_hundreds_of_digits_are_bad_parameters(
    pct: Pct,
    ct: int,
    new_vmid: Callable[[], int],
    busybox_template: Path,
    tmp_path: Path,
    ctroot: Path,
) -> None:
    """A size of 400 digits is infinite as a float (an OverflowError traceback as it became
    bytes); an id or a number of 5000 digits is more than int() reads (a ValueError)."""
    big, other = "9" * 400, new_vmid()
    res = pct("create", other, busybox_template, "--rootfs", big, check=False)
    assert res.rc != 0 and res.err.endswith(
        "unable to parse value of 'rootfs' - invalid size 'inf' - larger than any volume can be\n"
    ), res.text
    assert not (ctroot / f"etc/pve/lxc/{other}.conf").exists()
    res = pct("set", ct, "--mp0", f"local:{big},mp=/x", check=False)
    assert res.rc == 2 and "larger than any volume can be" in res.err, res.text
    res = pct("set", ct, "--memory", "9" * 5000, check=False)
    assert res.rc == 2 and "memory: value must have a maximum value of" in res.err, res.text
    (tmp_path / "f").write_text("x")
    res = pct("push", ct, tmp_path / "f", "/f", "--user", "9" * 5000, check=False)
    assert res.rc == 2 and "out of range (0..4294967294)" in res.err, res.text
    assert "Traceback" not in res.text and "mp0" not in pct("config", ct).out


def test_a_mount_point_on_a_volume_that_is_not_there_is_kept_with_a_warning(
    pct: Pct, ct: int
) -> None:
    """As Proxmox: the value is kept (the volume may come later), and the size rescan that
    fails says so; the warning was swallowed."""
    volid = f"local:{ct}/vm-{ct}-disk-9.raw"
    res = pct("set", ct, "--mp0", f"{volid},mp=/x")
    assert f"Could not rescan volume size - volume '{volid}' does not exist" in res.out, res.text
    assert f"mp0: {volid},mp=/x\n" in pct("config", ct).out


def test_unprivileged_create_names_the_directory_its_root_cannot_search(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    closed = ctroot / "var/lib/lxc"
    closed.mkdir(parents=True)
    closed.chmod(0o700)
    try:
        res = pct("create", vmid, busybox_template, "--rootfs", "local:0", check=False)
        assert res.rc == 12, res.text
        assert res.err.startswith(f"directory '{closed}' cannot be searched by uid 100000/gid")
        assert f"hint: grant search (execute) permission, e.g. chmod o+x '{closed}'" in res.err
        assert not conf_path(ctroot, vmid).exists()
        pct("create", vmid, busybox_template, "--rootfs", "local:0", "--unprivileged", "0")
    finally:
        closed.chmod(0o755)
    pct("start", vmid)
    pct("stop", vmid)


@contextlib.contextmanager
def full_config_dir(ctroot: Path) -> Iterator[Path]:
    """/etc/pve on a full 64 KiB tmpfs holding what it held, for the block; back after it."""
    pve = ctroot / "etc/pve"
    saved = {p.relative_to(pve): p.read_bytes() for p in pve.rglob("*") if p.is_file()}
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(pve)], check=True)
    try:
        for rel, data in saved.items():
            (pve / rel).parent.mkdir(parents=True, exist_ok=True)
            (pve / rel).write_bytes(data)
        with open(pve / "fill", "wb") as fh, contextlib.suppress(OSError):
            fh.write(bytes(1 << 20))
        yield pve
    finally:
        kept = {p.relative_to(pve): p.read_bytes() for p in pve.rglob("*") if p.is_file()}
        subprocess.run(["umount", str(pve)], check=True)
        for rel, data in kept.items():
            if rel != Path("fill"):
                (pve / rel).parent.mkdir(parents=True, exist_ok=True)
                (pve / rel).write_bytes(data)


def test_a_full_or_read_only_config_directory_is_one_line(pct: Pct, ct: int, ctroot: Path) -> None:
    """/etc/pve full, then read-only: pct set and vzdump job add fail in one line (an OSError
    traceback before) and change nothing."""
    with full_config_dir(ctroot) as pve:
        before = conf_path(ctroot, ct).read_text()
        for reason in ("No space left on device", "Read-only file system"):
            res = pct("set", ct, "--memory", "1024", check=False)
            assert (res.rc, res.err) == (
                1,
                f"unable to write '{conf_path(ctroot, ct)}': {reason}\n",
            )
            add = [str(VZDUMP), "job", "add", "j1", "--schedule", "02:00", "--vmid", str(ct)]
            job = subprocess.run(add, capture_output=True, text=True, check=False)
            assert (job.returncode, job.stderr) == (
                1,
                f"unable to write '{pve}/jobs.cfg': {reason}\n",
            )
            assert conf_path(ctroot, ct).read_text() == before
            subprocess.run(["mount", "-o", "remount,ro", str(pve)], check=True)


def test_a_template_whose_config_cannot_be_written_is_finished_by_the_next_command(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    """The volume was renamed to its base name, the config that would name it could not be
    written, and the failure dropped the record a recovery needs: the container named a volume
    that no longer existed, and no command could start, clone or destroy it any more."""
    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    with full_config_dir(ctroot):
        res = pct("template", vmid, check=False)
        assert res.rc == 1 and "No space left on device" in res.err, res.text
        one_line_error(res.text)
    pct("list")  # any command finishes it
    conf = conf_path(ctroot, vmid).read_text()
    assert "template: 1\n" in conf and f"local:{vmid}/base-{vmid}-disk-0.raw" in conf, conf
    pct("destroy", vmid)
    assert not (ctroot / f"var/lib/vz/images/{vmid}").exists()


def test_a_fifo_in_place_of_the_rootfs_image_is_one_line_and_never_hangs(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    """Opening the image waited for a writer: ``pct mount`` hung, and ``pct start`` hung in its
    pre-start hook with the container shown as running, which only a human could end."""
    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    image = ctroot / f"var/lib/vz/images/{vmid}/vm-{vmid}-disk-0.raw"
    image.unlink()
    os.mkfifo(image)
    try:
        for args in (["mount", vmid], ["start", vmid]):
            res = pct(*args, check=False, timeout=60)
            assert res.rc != 0 and "not a regular file" in res.text, res.text
            one_line_error(res.text)
        assert pct("status", vmid).out.strip() == "status: stopped"
    finally:
        with contextlib.suppress(OSError):  # a reader still waiting (the old code) sees EOF
            os.close(os.open(image, os.O_WRONLY | os.O_NONBLOCK))
    pct("destroy", vmid)
    assert not image.parent.exists()


def test_a_new_mount_point_whose_config_cannot_be_written_leaves_no_volume(
    pct: Pct, ct: int, ctroot: Path
) -> None:
    """The volume was made and formatted, the config that would name it could not be written:
    each try left an image named by nothing, which no command found again."""
    images = ctroot / f"var/lib/vz/images/{ct}"
    before = sorted(p.name for p in images.iterdir())
    with full_config_dir(ctroot):
        for _try in range(2):
            res = pct("set", ct, "--mp0", "local:1,mp=/data", check=False)
            assert res.rc != 0 and "No space left on device" in res.err, res.text
            one_line_error(res.text)
    assert sorted(p.name for p in images.iterdir()) == before
    pct("set", ct, "--mp0", "local:1,mp=/data")
    assert (
        f"mp0: local:{ct}/vm-{ct}-disk-1.raw,mp=/data,size=1G" in conf_path(ctroot, ct).read_text()
    )
