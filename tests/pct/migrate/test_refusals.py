"""Every pre-check of a migration refuses before anything changes on either host (issue 16)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.pct.conftest import Pct

from .conftest import PCT, Far

pytestmark = pytest.mark.lxc


def assert_untouched(pct: Pct, far: Far, vmid: int, ctroot: Path, tvmid: int | None = None) -> None:
    assert "lock:" not in (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()
    assert not far.conf(tvmid or vmid).exists()
    assert not list((far.root / "var/lib/ctkit/migrate").glob("*.json"))
    assert not list((ctroot / "var/lib/ctkit/migrate").glob("*.json"))


@pytest.fixture
def ct(pct: Pct, vmid: int, busybox_template: Path) -> int:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--net0", "name=eth0,bridge=vmbr9")
    return vmid


def test_running_ct_needs_restart_and_online_is_refused(
    pct: Pct, far: Far, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)
    res = pct("migrate", vmid, "far", check=False)
    assert res.rc == 6
    assert res.err == "can't migrate running container without --online or --restart\n"
    res = pct("migrate", vmid, "far", "--online", check=False)
    assert res.err == "lxc live migration is currently not implemented\n"
    assert pct("status", vmid).out == "status: running\n"
    assert_untouched(pct, far, vmid, ctroot)
    pct("stop", vmid)


@pytest.mark.parametrize(
    ("args", "rc", "message"),
    [
        (["--target-storage", "nosuch"], 3, "storage 'nosuch' does not exist on the target"),
        (["--target-storage", "a:b:c"], 2, "target-storage: failed to parse storage map"),
        (["--target-bridge", "vmbr7"], 3, "bridge 'vmbr7' (net0) does not exist on the target"),
    ],
)
def test_missing_storage_or_bridge_on_the_target(
    pct: Pct, far: Far, ct: int, ctroot: Path, args: list[str], rc: int, message: str
) -> None:
    opts = {"--target-storage": "local", "--target-bridge": far.bridge}
    opts.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [w for kv in opts.items() for w in kv]
    res = pct("remote-migrate", ct, "far", *flat, check=False)
    assert res.rc == rc, res.text
    assert message in res.err
    assert_untouched(pct, far, ct, ctroot)


def test_target_vmid_in_use(pct: Pct, far: Far, ct: int, ctroot: Path) -> None:
    far.conf(ct).parent.mkdir(parents=True, exist_ok=True)
    far.conf(ct).write_text("hostname: other\n")
    res = pct(
        "remote-migrate", ct, "far", "--target-storage", "local", "--target-bridge", far.bridge,
        check=False,
    )  # fmt: skip
    assert res.rc == 4 and "target VMID is already in use" in res.err
    assert far.conf(ct).read_text() == "hostname: other\n"
    far.conf(ct).unlink()
    assert_untouched(pct, far, ct, ctroot)


def test_no_room_on_the_target(
    pct: Pct, far: Far, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:2")  # sparse, 2 GiB > 1 GiB btrfs
    res = pct("migrate", vmid, "far", "--target-storage", "fbt", check=False)
    assert res.rc == 9 and "not enough space on storage 'fbt' of the target" in res.err
    assert_untouched(pct, far, vmid, ctroot)


def test_an_incompatible_remote_ctkit_is_refused(
    pct: Pct, far: Far, ct: int, ctroot: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old-pct"
    old.write_text('#!/bin/sh\necho \'{"ctkit": "0.0.1", "protocol": 0}\'\n')
    os.chmod(old, 0o755)
    pct(
        "remote", "add", "old", "--host", far.address, "--hostkey-file", far.hostkey,
        "--identity", far.identity, "--command", old,
    )  # fmt: skip
    res = pct("migrate", ct, "old", check=False)
    assert res.rc == 11 and "remote ctkit 0.0.1 is not compatible" in res.err
    assert_untouched(pct, far, ct, ctroot)


def test_bind_mounts_snapshots_locks_and_unknown_remotes_are_refused(
    pct: Pct, far: Far, ct: int, ctroot: Path, tmp_path: Path
) -> None:
    assert pct("migrate", ct, "nowhere", check=False).err.startswith("remote 'nowhere' does not")
    conf = ctroot / f"etc/pve/lxc/{ct}.conf"
    text = conf.read_text()
    conf.write_text(text + f"mp0: {tmp_path},mp=/host\n")
    res = pct("migrate", ct, "far", check=False)
    assert res.rc == 6 and "cannot migrate local bind mount point 'mp0'" in res.err
    conf.write_text(text + "lock: backup\n")
    assert pct("migrate", ct, "far", check=False).err == "CT is locked (backup)\n"
    conf.write_text(text + "\n[snap1]\n" + text)
    res = pct("migrate", ct, "far", check=False)
    assert "remote migration with snapshots not supported yet" in res.err
    conf.write_text(text)
    assert_untouched(pct, far, ct, ctroot)
    assert PCT.exists()


def test_a_volume_of_another_guest_is_refused(
    pct: Pct,
    far: Far,
    ct: int,
    ctroot: Path,
    new_vmid: Callable[[], int],
    busybox_template: Path,
) -> None:
    """Migrated volumes are freed on the source afterwards: one owned by another container
    (given to this one as a mount point) would be deleted under it."""
    other = new_vmid()
    pct("create", other, busybox_template, "--rootfs", "local:0", "--mp0", "local:0,mp=/data")
    other_conf = (ctroot / f"etc/pve/lxc/{other}.conf").read_text()
    volume = next(
        line.split(" ", 1)[1].split(",")[0]
        for line in other_conf.splitlines()
        if line.startswith("mp0:")
    )
    pct("set", ct, "--mp0", f"{volume},mp=/shared")
    res = pct("migrate", ct, "far", check=False)
    assert res.rc == 6, res.err
    assert res.err == f"can't migrate volume '{volume}' - owned by other guest ({other})\n"
    assert_untouched(pct, far, ct, ctroot)
    assert (ctroot / f"var/lib/vz/images/{other}").is_dir()


def test_a_ct_started_while_the_migration_is_planned_is_not_migrated(
    pct: Pct,
    far: Far,
    vmid: int,
    busybox_template: Path,
    ctroot: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whether the CT runs is decided again under its lock: one started meanwhile was copied
    as if stopped and then deleted while it ran."""
    from pct.ops import migrate
    from shared.errors import StateError

    ct = vmid
    pct("create", ct, busybox_template, "--rootfs", "local:0")

    asked = migrate._target_info

    def asked_then_started(*args: object) -> object:
        answer = asked(*args)  # type: ignore[arg-type]
        pct("start", ct)
        return answer

    monkeypatch.setattr(migrate, "_target_info", asked_then_started)
    try:
        with pytest.raises(StateError, match=f"^CT {ct} is running now - migration not started"):
            migrate.migrate(ct, migrate.Options("far"), log=lambda _line: None)
        assert pct("status", ct).out == "status: running\n"
        assert_untouched(pct, far, ct, ctroot)
    finally:
        pct("stop", ct)


def test_a_file_system_nested_in_a_volume_is_refused(
    pct: Pct, far: Far, ct: int, ctroot: Path
) -> None:
    """rsync --one-file-system (and btrfs send) leave a nested file system out, and the source
    is deleted after the migration: its content would be lost."""
    import subprocess

    inner = ctroot / f"var/lib/vz/images/{ct}/subvol-{ct}-disk-0.subvol/srv"
    inner.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "nested", str(inner)], check=True)
    (inner / "precious").write_text("data")
    try:
        res = pct("migrate", ct, "far", check=False)
        assert res.rc != 0
        assert "holds another file system or btrfs subvolume at 'srv'" in res.err, res.err
        assert_untouched(pct, far, ct, ctroot)
    finally:
        subprocess.run(["umount", str(inner)], check=True)


def test_a_symlink_the_running_ct_made_is_never_followed(
    pct: Pct, far: Far, vmid: int, busybox_template: Path, ctroot: Path, tmp_path: Path
) -> None:
    """The first pass reads a running CT's image volume through /proc/<pid>/root, where an
    absolute symlink the container made resolves on the host: host files went to the other
    host. Refused, and the container goes on running here."""
    secret = tmp_path / "hostsecret"
    secret.mkdir()
    (secret / "id_ed25519").write_text("HOST-ONLY SECRET\n")
    os.chmod(tmp_path, 0o755)
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--unprivileged", "0",
        "--mp0", "local:0.1,mp=/mnt/data")  # fmt: skip
    pct("start", vmid)
    try:
        swap = f"umount /mnt/data && rmdir /mnt/data && ln -s {secret} /mnt/data"
        pct("exec", vmid, "--", "sh", "-c", swap)
        res = pct("migrate", vmid, "far", "--restart", "--target-storage", "fbt", check=False)
        assert res.rc != 0
        assert "path '/mnt/data' crosses a symlink or a file in the container" in res.text, res.text
        assert pct("status", vmid).out == "status: running\n"
        assert "lock:" not in (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()
        assert not far.conf(vmid).exists()
        leaked = subprocess.run(["grep", "-rl", "HOST-ONLY", str(far.root)], capture_output=True)
        assert leaked.stdout == b""
    finally:
        pct("stop", vmid)


def test_a_subvolume_nested_in_a_btrfs_volume_is_refused(
    pct: Pct, far: Far, vmid: int, busybox_template: Path, btrfs_storage: str, ctroot: Path
) -> None:
    """btrfs send leaves a subvolume made inside the volume out; it is found from the file
    system's references (the volume's tree is not walked) and the migration refused."""
    pct("create", vmid, busybox_template, "--rootfs", f"{btrfs_storage}:0")
    volume = ctroot / f"mnt/bt/images/{vmid}/subvol-{vmid}-disk-0.subvol"
    nested = volume / "srv/nested"
    nested.parent.mkdir(exist_ok=True)
    subprocess.run(["btrfs", "-q", "subvolume", "create", str(nested)], check=True)
    (nested / "precious").write_text("data")
    try:
        res = pct("migrate", vmid, "far", "--target-storage", "local", check=False)
        assert res.rc != 0
        assert "holds another file system or btrfs subvolume at 'srv/nested'" in res.err, res.err
        assert_untouched(pct, far, vmid, ctroot)
        assert (nested / "precious").read_text() == "data"
    finally:
        subprocess.run(["btrfs", "-q", "subvolume", "delete", str(nested)], check=False)
