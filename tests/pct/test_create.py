"""pct create with real volumes, extraction and guest setup (spec pct.md §4.1–4.2, §9 cases 1–9,
47), run through the console script."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import paths
from shared.ctconfig import store
from shared.storage import loop
from shared.testbed import build_busybox_rootfs, pack
from tests.midway import stopped_midway
from tests.pct.conftest import (
    PCT,
    Pct,
    holding_tool,
    leftovers,
    sigkill_group_when,
    until_extracting,
)

pytestmark = pytest.mark.lxc

Text = Callable[[int], str]
Images = Callable[[int], Path]


def test_case_1_defaults_give_a_4g_raw_unprivileged_debian_ct(
    pct: Pct, vmid: int, debian_template: Path, conf_text: Text, images: Images, ctroot: Path
) -> None:
    res = pct("create", vmid, debian_template)
    assert f"extracting archive '{debian_template}'" in res.out
    assert "Detected container architecture: amd64" in res.out
    assert conf_text(vmid) == (
        "arch: amd64\n"
        f"hostname: CT{vmid}\n"
        "memory: 512\n"
        "ostype: debian\n"
        f"rootfs: local:{vmid}/vm-{vmid}-disk-0.raw,size=4G\n"
        "swap: 512\n"
        "unprivileged: 1\n"
    )
    image = images(vmid) / f"vm-{vmid}-disk-0.raw"
    assert image.stat().st_size == 4 << 30
    assert pct("status", vmid).out == "status: stopped\n"
    assert leftovers(ctroot) == []  # the staging mount and its loop device are gone


def _public_key(private: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@host", "-f",
                    str(private)], check=True)  # fmt: skip
    return private.with_name(private.name + ".pub")


@pytest.mark.parametrize("which", ["private key", "not a key"])
def test_ssh_public_keys_are_checked_before_anything_is_made(
    pct: Pct, vmid: int, debian_template: Path, ctroot: Path, tmp_path: Path, which: str
) -> None:
    """A private key given for a public one (``id_ed25519`` for ``id_ed25519.pub``) went into
    the container's authorized_keys; Proxmox checks each line with ``ssh-keygen -l``."""
    public = _public_key(tmp_path / "id_ed25519")
    keys, line = public.with_name("id_ed25519"), 1
    if which == "not a key":
        keys, line = tmp_path / "keys", 3
        keys.write_text(f"{public.read_text()}\nssh-ed25519 AAAAnotakey me@host\n")
    res = pct("create", vmid, debian_template, "--rootfs", "local:0", "--ssh-public-keys", keys,
              check=False)  # fmt: skip
    assert res.rc != 0
    assert res.err.strip() == f"SSH public key validation error - line {line} is not a public key"
    assert not store.exists(vmid) and leftovers(ctroot) == []


def test_create_from_a_volume_id(
    pct: Pct, vmid: int, local_tpl: str, conf_text: Text, images: Images
) -> None:
    pct("create", vmid, local_tpl, "--rootfs", "local:0", "--hostname", "box1")
    assert f"rootfs: local:{vmid}/subvol-{vmid}-disk-0.subvol,size=0T\n" in conf_text(vmid)
    assert "ostype: unmanaged\n" in conf_text(vmid)
    assert "hostname: box1\n" in conf_text(vmid)


def test_case_2_directory_volume_owned_by_mapped_root(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Text, images: Images
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    subvol = images(vmid) / f"subvol-{vmid}-disk-0.subvol"
    assert f"rootfs: local:{vmid}/subvol-{vmid}-disk-0.subvol,size=0T\n" in conf_text(vmid)
    st = subvol.stat()
    assert (st.st_uid, st.st_gid) == (100000, 100000)
    # case 7: what belongs to uid 0 in the template belongs to 100000 on the host
    passwd = (subvol / "etc/passwd").stat()
    assert (passwd.st_uid, passwd.st_gid) == (100000, 100000)
    assert not any((subvol / "dev").iterdir())  # ./dev/* is never extracted


def test_case_3_bare_size_is_a_raw_volume_on_the_storage(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Text, images: Images
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "8", "--storage", "local")
    assert f"rootfs: local:{vmid}/vm-{vmid}-disk-0.raw,size=8G\n" in conf_text(vmid)
    assert (images(vmid) / f"vm-{vmid}-disk-0.raw").stat().st_size == 8 << 30


def test_case_4_mount_points_need_a_rootfs(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path, images: Images
) -> None:
    res = pct("create", vmid, busybox_template, "--mp0", "local:1,mp=/data", check=False)
    assert res.rc != 0
    assert res.err.strip() == "mount points configured, but 'rootfs' not set - aborting"
    assert not paths.ct_conf(vmid).exists()
    assert not images(vmid).exists()


def test_case_5_existing_ct_is_protected(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Text
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    before = conf_text(vmid)
    res = pct("create", vmid, busybox_template, "--rootfs", "local:0", check=False)
    assert res.rc != 0
    assert res.err.strip() == f"CT {vmid} already exists on node '{paths.node_name()}'"
    assert conf_text(vmid) == before


@pytest.mark.parametrize("rootfs", ["local:0", "local:1"])
def test_case_6_failed_extraction_frees_volumes_and_config(
    pct: Pct, vmid: int, busybox_template: Path, tmp_path: Path, images: Images, rootfs: str
) -> None:
    corrupt = tmp_path / "broken_1.0_amd64.tar.zst"
    data = busybox_template.read_bytes()
    corrupt.write_bytes(data[: len(data) // 2] + os.urandom(4096))
    res = pct("create", vmid, corrupt, "--rootfs", rootfs, "--mp0", "local:0,mp=/data", check=False)
    assert res.rc != 0
    assert res.err.startswith(f"unable to create CT {vmid} - ")
    assert not paths.ct_conf(vmid).exists()
    assert not images(vmid).exists() or not any(images(vmid).iterdir())


def test_privileged_ct_keeps_host_ids(
    pct: Pct, vmid: int, busybox_template: Path, images: Images, ctroot: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--unprivileged", "0")
    passwd = (images(vmid) / f"subvol-{vmid}-disk-0.subvol/etc/passwd").stat()
    assert (passwd.st_uid, passwd.st_gid) == (0, 0)
    assert "unprivileged" not in (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()


def _openssl_sha512(password: str, salt: str) -> str:
    argv = ["openssl", "passwd", "-6", "-salt", salt, password]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def test_case_8_password_and_hostname_setup(
    pct: Pct, new_vmid: Callable[[], int], debian_template: Path, images: Images
) -> None:
    with_pw, without = new_vmid(), new_vmid()
    pct(
        "create", with_pw, debian_template, "--rootfs", "local:0", "--password", "secret1",
        "--hostname", "web1",
    )  # fmt: skip
    pct("create", without, debian_template, "--rootfs", "local:0")
    today = int(time.time() // 86400)
    root_a = images(with_pw) / f"subvol-{with_pw}-disk-0.subvol"
    fields = (root_a / "etc/shadow").read_text().splitlines()[0].split(":")
    assert fields[1].startswith("$6$")
    salt = fields[1].split("$")[2]
    assert fields[1] == _openssl_sha512("secret1", salt)
    assert int(fields[2]) in (today, today - 1)  # midnight may pass meanwhile
    root_b = images(without) / f"subvol-{without}-disk-0.subvol"
    assert (root_b / "etc/shadow").read_text().splitlines()[0].split(":")[1] == "*"
    # hostname and hosts; like Proxmox, the CT<vmid> default only reaches the guest at start
    assert (root_a / "etc/hostname").read_text() == "web1\n"
    assert "web1" in (root_a / "etc/hosts").read_text()
    assert (root_b / "etc/hostname").read_text() == "localhost\n"


def test_short_password_is_refused(pct: Pct, vmid: int, debian_template: Path) -> None:
    res = pct("create", vmid, debian_template, "--password", "abc", check=False)
    assert res.rc != 0 and "at least 5 characters" in res.err
    assert not paths.ct_conf(vmid).exists()
    res = pct("create", vmid, debian_template, "--password", "x" * 512, check=False)
    assert res.rc == 2 and "password: value may only be 511 bytes long" in res.err, res.text
    assert not paths.ct_conf(vmid).exists()
    # asked for, with nothing on stdin: it ended with exit 130 and no word
    res = pct("create", vmid, debian_template, "--password", stdin="", check=False)
    assert res.rc == 2 and "password: no password given (end of input)" in res.err, res.text


def test_case_9_ssh_public_keys_from_a_file(
    pct: Pct, vmid: int, debian_template: Path, images: Images, tmp_path: Path
) -> None:
    key = _public_key(tmp_path / "id_ed25519").read_text()
    keys = tmp_path / "keys.pub"
    keys.write_text(f"{key}\n")  # a blank line is not checked
    pct("create", vmid, debian_template, "--rootfs", "local:0", "--ssh-public-keys", keys)
    auth = images(vmid) / f"subvol-{vmid}-disk-0.subvol/root/.ssh/authorized_keys"
    assert auth.read_text() == f"# --- BEGIN PVE ---\n{key}\n# --- END PVE ---\n"
    assert auth.stat().st_uid == 100000


def test_case_47_unknown_os_release_id_aborts_and_cleans_up(
    pct: Pct, vmid: int, tmp_path: Path, images: Images
) -> None:
    rootfs = build_busybox_rootfs(tmp_path / "rootfs")
    (rootfs / "etc/os-release").write_text("ID=foobaros\nNAME=FooBar\n")
    tpl = pack(rootfs, tmp_path / "foobar_1.0_amd64.tar.gz")
    res = pct("create", vmid, tpl, "--rootfs", "local:0", check=False)
    assert res.rc != 0
    assert "unknown ID 'foobaros' in /etc/os-release file, trying fallback detection" in res.text
    assert res.err.strip().endswith(
        f"unable to create CT {vmid} - unable to detect OS distribution"
    )
    assert not paths.ct_conf(vmid).exists()
    assert not images(vmid).exists() or not any(images(vmid).iterdir())


def test_mount_points_volume_and_bind(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Text, images: Images, tmp_path: Path
) -> None:
    host_dir = tmp_path / "shared"
    host_dir.mkdir()
    (host_dir / "keep.txt").write_text("keep me\n")
    pct(
        "create", vmid, busybox_template, "--rootfs", "local:0",
        "--mp0", "local:1,mp=/data", "--mp1", f"{host_dir},mp=/srv",
    )  # fmt: skip
    text = conf_text(vmid)
    assert f"mp0: local:{vmid}/vm-{vmid}-disk-1.raw,mp=/data,size=1G\n" in text
    assert f"mp1: {host_dir},mp=/srv\n" in text
    pct("start", vmid)
    assert pct("exec", vmid, "--", "cat", "/srv/keep.txt").out == "keep me\n"
    assert "/data" in pct("exec", vmid, "--", "cat", "/proc/mounts").out
    pct("destroy", vmid, "--force")
    assert not images(vmid).exists()
    assert (host_dir / "keep.txt").read_text() == "keep me\n"  # bind source never touched


def test_btrfs_storage_makes_subvolumes(
    pct: Pct, vmid: int, busybox_template: Path, btrfs_storage: str, conf_text: Text, ctroot: Path
) -> None:
    pct("create", vmid, busybox_template, "--storage", btrfs_storage)
    assert f"rootfs: bt:{vmid}/subvol-{vmid}-disk-0.subvol,size=4G\n" in conf_text(vmid)
    subvol = ctroot / f"mnt/bt/images/{vmid}/subvol-{vmid}-disk-0.subvol"
    assert subvol.stat().st_ino == 256  # a btrfs subvolume root
    pct("start", vmid)
    assert pct("exec", vmid, "--", "hostname").out == f"CT{vmid}\n"
    pct("destroy", vmid, "--force")
    assert not subvol.exists()


def test_case_7_start_option_and_idmap_in_the_generated_config(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Text, ctroot: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--start", "1")
    assert pct("status", vmid).out == "status: running\n"
    assert "lock:" not in conf_text(vmid)
    lxc = (ctroot / f"var/lib/lxc/{vmid}/config").read_text()
    assert "lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n" in lxc
    # inside, the files belong to root
    assert pct("exec", vmid, "--", "stat", "-c", "%u:%g", "/etc/passwd").out == "0:0\n"


def test_missing_subuid_line_fails_create_and_start_clearly(
    pct: Pct,
    new_vmid: Callable[[], int],
    busybox_template: Path,
    subid_files: tuple[Path, Path],
    images: Images,
) -> None:
    uid_file, _gid_file = subid_files
    good, bad = new_vmid(), new_vmid()
    pct("create", good, busybox_template, "--rootfs", "local:0")
    uid_file.write_text("root:200000:65536\n")
    hint = f"add it with: echo 'root:100000:65536' >> {uid_file}"
    res = pct("create", bad, busybox_template, "--rootfs", "local:0", check=False)
    assert res.rc != 0
    assert res.err == (
        f"{uid_file} has no line 'root:100000:65536' for the id map of CT {bad} - {hint}\n"
    )
    assert not paths.ct_conf(bad).exists() and not images(bad).exists()
    res = pct("start", good, check=False)
    assert res.rc != 0 and res.err.count("\n") == 1 and hint in res.err
    # a privileged CT maps nothing and needs no line
    priv = new_vmid()
    pct("create", priv, busybox_template, "--rootfs", "local:0", "--unprivileged", "0")


def test_password_without_value_is_asked_twice(
    pct: Pct, ctroot: Path, vmid: int, debian_template: Path
) -> None:
    res = pct("create", vmid, debian_template, "--rootfs", "local:0", "--password",
              stdin="secret12\nsecret12\n")  # fmt: skip
    assert "Enter password:" in res.text and "Retype password:" in res.text
    # no terminal: Python's warning, with a line of its own source, was printed before the prompt
    assert "GetPassWarning" not in res.text and "getpass" not in res.text, res.text
    rootfs = next((ctroot / "var/lib/vz/images" / str(vmid)).iterdir())
    root = next(ln for ln in (rootfs / "etc/shadow").read_text().splitlines()
                if ln.startswith("root:"))  # fmt: skip
    assert root.split(":")[1].startswith("$6$")
    res = pct("create", vmid + 1, debian_template, "--rootfs", "local:0", "--password",
              stdin="secret12\nsecret13\n", check=False)  # fmt: skip
    assert res.rc == 1 and "Passwords do not match." in res.err
    assert not (ctroot / f"etc/pve/lxc/{vmid + 1}.conf").exists()


def test_ask_password_reader() -> None:
    from pct.commands.common import ask_password

    answers = iter(["abcde", "abcde"])
    assert ask_password(lambda prompt: next(answers)) == "abcde"


def test_create_onto_a_full_storage_fails_and_leaves_nothing(
    pct: Pct, vmid: int, ctroot: Path, tmp_path: Path
) -> None:
    """The raw image is sparse on a storage too small for the template: only the write-back
    fails, which tar never sees. pct create must fail in one line and leave no config and no
    volume (it reported success with files missing their data)."""
    from shared.fakehost import add_storage

    rootfs = build_busybox_rootfs(tmp_path / "big")
    (rootfs / "srv").mkdir(exist_ok=True)
    (rootfs / "srv/big.bin").write_bytes(os.urandom(40 << 20))
    template = pack(rootfs, tmp_path / "big_1.0-1_amd64.tar.zst")
    small = ctroot / "mnt/small"
    small.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "small", str(small)], check=True)
    try:
        add_storage(ctroot, "dir: small\n\tpath /mnt/small\n\tcontent rootdir\n")
        res = pct("create", vmid, template, "--rootfs", "small:1", check=False)
        assert res.rc != 0
        assert (
            res.err.strip()
            .splitlines()[-1]
            .startswith(
                f"unable to create CT {vmid} - unable to write volume 'vm-{vmid}-disk-0.raw'"
            )
        ), res.err
        assert not (ctroot / f"etc/pve/lxc/{vmid}.conf").exists()
        assert not list(small.glob(f"images/{vmid}/*"))
    finally:
        subprocess.run(["umount", str(small)], check=False)


@pytest.mark.parametrize("gib", ["100000000", "18446744073709551616"])
def test_size_beyond_the_file_system_limit_fails_in_one_line(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path, images: Images, gib: str
) -> None:
    # ~95 PiB: a file the test root's file system (ext4: 16 TiB at most) cannot hold; 2^64 GiB
    # overflowed the call itself
    res = pct("create", vmid, busybox_template, "--rootfs", f"local:{gib}", check=False)
    assert res.rc == 9, res.text
    assert res.err.splitlines() == [
        f"unable to create CT {vmid} - unable to allocate volume 'vm-{vmid}-disk-0.raw' on "
        "storage 'local' - File too large"
    ], res.err
    assert not paths.ct_conf(vmid).exists()
    assert not images(vmid).exists() or not any(images(vmid).iterdir())
    assert not paths.lxc_dir(vmid).exists()  # an empty staging directory stayed behind
    assert leftovers(ctroot) == []


def slow_create(vmid: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    """``pct create`` of a raw volume from a 24 MiB template, extracted at 4096 KiB/s (6 s),
    in a session of its own."""
    from tests.pct.conftest import PCT

    rootfs = build_busybox_rootfs(tmp_path / "big")
    (rootfs / "srv").mkdir(exist_ok=True)
    (rootfs / "srv/big.bin").write_bytes(os.urandom(24 << 20))
    template = pack(rootfs, tmp_path / "big_1.0-1_amd64.tar.zst")
    argv = [str(PCT), "create", str(vmid), str(template), "--rootfs", "local:1",
            "--bwlimit", "4096"]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip


@pytest.mark.parametrize("then", ["create", "destroy", "list", "rescan", "rescan-all"])
def test_a_create_killed_while_extracting_is_undone_by_the_next_command(
    pct: Pct,
    vmid: int,
    ctroot: Path,
    tmp_path: Path,
    images: Images,
    busybox_template: Path,
    then: str,
) -> None:
    """SIGKILL to ``pct create`` (its whole process group) while the template is extracted: the
    staging mount of the new raw volume stayed in the host's mount namespace (so ``pct destroy``
    failed for good), and the locked config and its volume waited for a human. The next command
    that meets the id undoes the create as its own failure would have: volume freed, config
    removed; a new create of the id then goes ahead."""
    proc = slow_create(vmid, tmp_path)
    until_extracting(proc)
    time.sleep(1.0)
    sigkill_group_when(proc, lambda: True, "the kill")
    assert leftovers(ctroot) == []  # no staging mount, no loop device
    assert "lock: create" in (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()
    assert [p.name for p in images(vmid).iterdir()] == [f"vm-{vmid}-disk-0.raw"]
    res = {
        "create": lambda: pct("create", vmid, busybox_template, "--rootfs", "local:0"),
        "destroy": lambda: pct("destroy", vmid),
        "list": lambda: pct("list"),
        # the admin's look for leftovers: it refused the dead create's lock
        "rescan": lambda: pct("rescan", "--vmid", vmid, check=False),
        "rescan-all": lambda: pct("rescan"),
    }[then]()
    assert f"CT {vmid}: create (pid {proc.pid}) ended without cleaning up" in res.text, res.text
    assert (
        f"CT {vmid}: freed volume 'local:{vmid}/vm-{vmid}-disk-0.raw' the unfinished pct "
        "create allocated" in res.text
    )
    assert f"CT {vmid}: removed the config of the unfinished pct create" in res.text
    assert not (ctroot / f"var/lib/ctkit/owners/owner-{vmid}.json").exists()
    assert leftovers(ctroot) == []
    if then == "create":
        rootfs = str(store.load(vmid).get_raw("rootfs"))
        assert rootfs.startswith(f"local:{vmid}/subvol-{vmid}-disk-0.subvol,"), rootfs
        pct("destroy", vmid)
    assert not paths.ct_conf(vmid).exists()
    assert not images(vmid).exists() or not any(images(vmid).iterdir())
    assert not paths.lxc_dir(vmid).exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_a_create_ended_by_a_signal_while_extracting_undoes_itself_at_once(
    vmid: int, ctroot: Path, tmp_path: Path, images: Images, sig: signal.Signals
) -> None:
    """``systemctl stop``, a closed terminal: TERM or HUP to ``pct create`` ended it on the
    spot, its locked config and volume left for the next command to undo. Now they end it as
    Ctrl-C does: the create's own rollback runs before it exits 130."""
    proc = slow_create(vmid, tmp_path)
    try:
        until_extracting(proc)
        time.sleep(0.5)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 130, err
    assert err.decode().strip().endswith("interrupted by signal"), err
    assert not paths.ct_conf(vmid).exists()
    assert not images(vmid).exists() or not any(images(vmid).iterdir())
    assert not (ctroot / f"var/lib/ctkit/owners/owner-{vmid}.json").exists()
    assert leftovers(ctroot) == []


@pytest.mark.parametrize(
    "options",
    [["--rootfs", "local:-1"], ["--mp0", "/dev/zero,mp=/mnt/z"], ["--rootfs", "local"]],
)
def test_a_failed_create_leaves_no_staging_directory(
    pct: Pct, vmid: int, busybox_template: Path, options: list[str]
) -> None:
    res = pct("create", vmid, busybox_template, *options, check=False)
    assert res.rc != 0 and len(res.err.splitlines()) <= 3, res.text
    assert not paths.ct_conf(vmid).exists()
    assert not paths.lxc_dir(vmid).exists()


def test_a_create_killed_while_formatting_its_volume_leaves_no_nameless_volume(
    pct: Pct, vmid: int, ctroot: Path, tmp_path: Path, images: Images, busybox_template: Path
) -> None:
    """The volume is on the owner's record once its name is taken, before mkfs: a create
    killed while formatting it had left a raw image that no config and no record named."""
    from tests.pct.conftest import PCT

    env, marker = holding_tool(tmp_path, "mkfs.ext4", "*")
    argv = [str(PCT), "create", str(vmid), str(busybox_template), "--rootfs", "local:1"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    sigkill_group_when(proc, marker.exists, "mkfs")
    assert [p.name for p in images(vmid).iterdir()] == [f"vm-{vmid}-disk-0.raw"]
    res = pct("list")
    assert f"CT {vmid}: freed volume 'local:{vmid}/vm-{vmid}-disk-0.raw'" in res.err, res.text
    assert not paths.ct_conf(vmid).exists()
    assert not images(vmid).exists() or not any(images(vmid).iterdir())
    assert leftovers(ctroot) == []


@pytest.mark.parametrize("older_device", [False, True])
def test_a_create_killed_while_mounting_its_volume_leaves_no_loop_device(
    pct: Pct,
    vmid: int,
    ctroot: Path,
    tmp_path: Path,
    images: Images,
    busybox_template: Path,
    older_device: bool,
) -> None:
    """Killed between the loop device's attach and the mount of the ext4 on it: the device had
    stayed attached (it only became autoclear after the mount), so the next command could
    never free the volume ("is in use (/dev/loopN)") and the id stayed locked for good. Such
    a device, left by an older ctkit (``older_device``), is detached by that recovery."""
    from tests.pct.conftest import PCT

    env, marker = holding_tool(tmp_path, "mount", "*-t\\ ext4*")
    argv = [str(PCT), "create", str(vmid), str(busybox_template), "--rootfs", "local:1"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    sigkill_group_when(proc, marker.exists, "the mount")
    image = images(vmid) / f"vm-{vmid}-disk-0.raw"
    assert loop.wait_unused(image, 2.0)  # the kernel frees the device at its last close
    if older_device:
        subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True)
    res = pct("list")
    assert f"CT {vmid}: freed volume 'local:{vmid}/vm-{vmid}-disk-0.raw'" in res.err, res.text
    assert loop.devices_for(image) == []
    assert not paths.ct_conf(vmid).exists()
    assert not images(vmid).exists() or not any(images(vmid).iterdir())
    assert leftovers(ctroot) == []


def test_an_option_of_restore_is_named_as_unknown(
    pct: Pct, vmid: int, busybox_template: Path
) -> None:
    """``--unique`` is no option of pct create: it takes no value, the error names it."""
    res = pct("create", vmid, busybox_template, "--unique", "--storage", "local", check=False)
    assert res.rc == 2 and "unique: property is not defined in schema" in res.err, res.text
    assert "too many" not in res.err


KILLED_BEFORE_ITS_CONFIG = """
import sys, time
from shared import atomic, paths
from shared.runtime import unfinished

vmid = int(sys.argv[1])
unfinished.claim(vmid, unfinished.CREATE)  # as create_locked_config: the record, then the config
with atomic.atomic_open(paths.ct_conf(vmid)) as fh:
    fh.write(b"lock: create\\n")
    fh.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_create_killed_before_its_config_leaves_nothing_after_pct_list(
    pct: Pct, vmid: int, ctroot: Path
) -> None:
    """Killed between its owner record and the rename of its first config: no config names
    the id, so ``pct list`` never met it, and the record and the config's temp file stayed."""
    proc, line = stopped_midway(KILLED_BEFORE_ITS_CONFIG, str(vmid))
    assert line == "writing"
    proc.kill()
    proc.wait()
    confdir, owners = ctroot / "etc/pve/lxc", ctroot / "var/lib/ctkit/owners"
    assert [p.name for p in owners.iterdir() if not p.name.startswith(".")] == [
        f"owner-{vmid}.json"
    ]
    assert next(p.name for p in confdir.iterdir()).startswith(f".{vmid}.conf.{proc.pid}-")
    res = pct("list")
    assert res.rc == 0 and str(vmid) not in res.out, res.text
    assert list(confdir.iterdir()) == [] and list(owners.iterdir()) == []


KILLED_AS_IT_RESERVED = """
import sys, time
from pct.ops.provision import create_locked_config
from shared.ctconfig.config import Config
from shared.runtime import unfinished
from shared.storage.volumes import alloc_volume

vmid = int(sys.argv[1])
owner = create_locked_config(Config(vmid), owner_op=unfinished.CREATE)

def reserved(volid):  # as pct create, clone and restore note a volume: then killed
    unfinished.note_volumes(owner, [volid])
    print("reserved", flush=True)
    time.sleep(60)

alloc_volume("local", vmid, 0, reserved=reserved)
"""


def test_a_create_killed_as_it_reserved_its_volume_leaves_no_image_directory(
    pct: Pct, vmid: int, ctroot: Path, images: Images
) -> None:
    """The id's ``images/<vmid>`` was made before the volume's name was noted, and freeing a
    noted volume that never came to be returned before removing it: a kill there left the
    empty directory (a pct clone killed 88 ms in did)."""
    proc, line = stopped_midway(KILLED_AS_IT_RESERVED, str(vmid))
    assert line == "reserved"
    proc.kill()
    proc.wait()
    res = pct("list")
    assert f"CT {vmid}: removed the config of the unfinished pct create" in res.err, res.text
    assert not images(vmid).exists()
    assert not paths.ct_conf(vmid).exists()
    assert leftovers(ctroot) == []


@pytest.mark.parametrize("path", [None, "/usr/bin:/bin"], ids=["env-i", "cron"])
def test_a_raw_volume_with_the_path_of_cron_or_none(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path, path: str | None
) -> None:
    """cron runs a command with ``PATH=/usr/bin:/bin`` and ``env -i`` with none: mkfs.ext4 (in
    sbin) was not found, and the create failed."""
    env = {"CTKIT_ROOT": str(ctroot), **({} if path is None else {"PATH": path})}

    def run(*args: object) -> None:
        proc = subprocess.run([str(PCT), *map(str, args)], env=env, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip
        assert proc.returncode == 0, f"pct {args[0]}: {proc.stderr}"

    pct.vmids.add(vmid)
    run("create", vmid, busybox_template, "--rootfs", "local:1")
    run("start", vmid)
    assert pct("exec", vmid, "--", "cat", "/proc/1/comm").out.strip() == "init"
    run("stop", vmid)
