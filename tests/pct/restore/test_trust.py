"""The restore trust policy: nothing from an archive's config reaches outside the container
unless the archive is trusted explicitly (``--trust-archive``; ``--force`` does not imply it)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pct.ops.restore_trust import TRUST_OPTION
from shared import paths
from shared.ctconfig import store
from shared.runtime import lifecycle, lxcapi
from tests.pct.restore.conftest import Backups
from tests.pct.restore.test_cli import pct

# No network: the containers of the start tests are started.
CONF = """\
arch: amd64
hostname: trusted
memory: 256
ostype: debian
rootfs: local:100/vm-100-disk-0.raw,size=128M
swap: 0
"""

# one crafted entry per category: (config line, key in the restored config)
CATEGORIES = {
    "raw lxc hook": ("lxc.hook.pre-start: /bin/sh -c 'touch /tmp/x'", "lxc.hook.pre-start"),
    "raw lxc mount": ("lxc.mount.entry: / mnt/hostroot none bind,create=dir 0 0", "lxc.mount"),
    "hookscript": ("hookscript: local:snippets/hook.sh", "hookscript"),
    "bind mount point": ("mp0: /etc,mp=/hostetc", "mp0"),
    "device mount point": ("mp1: /dev/sdz1,mp=/mnt/disk", "mp1"),
    "device passthrough": ("dev0: /dev/kmsg,mode=0666", "dev0"),
}


def _entries(text: str) -> list[str]:
    conf_lines = text.splitlines()
    return [line for line in conf_lines if not line.startswith(("rootfs:", "digest:"))]


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_dropped_by_default_kept_when_trusted(
    backups: Backups, new_vmid: Callable[[], int], category: str
) -> None:
    line, key = CATEGORIES[category]
    archive = backups.archive(CONF + line + "\n")

    for force in (False, True):  # --force alone does not trust the archive
        vmid = new_vmid()
        conf = backups.restore(vmid, archive, force=force)
        saved = store.read_bytes(vmid).decode()
        assert key not in saved, saved
        assert _entries(saved) == _entries(CONF), saved
        dropped = [entry for entry in backups.logs if "not restoring" in entry]
        assert len(dropped) == 1, backups.logs
        assert dropped[0].startswith(f"WARN: not restoring '{line}' from the archive - ")
        assert dropped[0].endswith(f"; restore with {TRUST_OPTION} to keep it")
        assert store.load(vmid).to_text() == conf.to_text()

    vmid = new_vmid()
    if key == "hookscript":  # a trusted hook script is kept where it exists on this host
        snippet = paths.under("var/lib/vz/snippets/hook.sh")
        snippet.parent.mkdir(parents=True, exist_ok=True)
        snippet.write_text("#!/bin/sh\n")
        snippet.chmod(0o755)
    backups.restore(vmid, archive, trust_archive=True)
    saved = store.read_bytes(vmid).decode()
    assert line in saved.splitlines(), saved
    assert not [entry for entry in backups.logs if "not restoring" in entry]


def test_every_entry_gets_its_own_line(backups: Backups, vmid: int) -> None:
    lines = [line for line, _key in CATEGORIES.values()]
    backups.restore(vmid, backups.archive(CONF + "\n".join(lines) + "\n"))
    dropped = [entry for entry in backups.logs if "not restoring" in entry]
    assert len(dropped) == len(lines)
    for line in lines:
        assert sum(f"'{line}'" in entry for entry in dropped) == 1, line
    assert _entries(store.read_bytes(vmid).decode()) == _entries(CONF)


def test_ordinary_backup_is_restored_as_before(
    backups: Backups, new_vmid: Callable[[], int]
) -> None:
    archive = backups.archive(CONF + "net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01\n")
    texts = []
    for trust in (False, True):
        vmid = new_vmid()
        backups.restore(vmid, archive, trust_archive=trust)
        assert not [entry for entry in backups.logs if "not restoring" in entry]
        texts.append(store.read_bytes(vmid).decode().replace(str(vmid), "ID"))
    assert texts[0] == texts[1]


def test_control_characters_are_escaped_in_the_lines(backups: Backups, vmid: int) -> None:
    archive = backups.archive(CONF + "lxc.hook.pre-start: /bin/true \x1b[2J\n")
    backups.restore(vmid, archive)
    assert any("'lxc.hook.pre-start: /bin/true \\x1b[2J'" in e for e in backups.logs)
    assert not any("\x1b" in entry for entry in backups.logs)


def _hook_archive(backups: Backups, marker: Path, hostdir: Path) -> str:
    text = CONF + (
        f"lxc.hook.pre-start: /bin/sh -c 'touch {marker}'\n"
        f"lxc.mount.entry: {hostdir} mnt/hostdir none bind,create=dir 0 0\n"
    )
    return backups.archive(text)


def _sees_hostdir(vmid: int) -> bool:
    argv = lxcapi.attach_argv(vmid, ["test", "-e", "/mnt/hostdir/secret"])
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0


@pytest.mark.lxc
def test_start_of_an_untrusted_restore_runs_no_host_hook(backups: Backups, vmid: int) -> None:
    marker = backups.work / "hook-ran"
    hostdir = backups.work / "hostdir"
    hostdir.mkdir()
    (hostdir / "secret").write_text("host only\n")
    archive = _hook_archive(backups, marker, hostdir)

    backups.restore(vmid, archive)
    lifecycle.start(vmid, log=lambda _line: None)
    try:
        assert not marker.exists()
        assert not _sees_hostdir(vmid)
    finally:
        lifecycle.stop(vmid, log=lambda _line: None)

    # the same archive, trusted: the hook runs (so the check above can see it)
    result = pct("restore", str(vmid), archive, "--force", TRUST_OPTION)
    assert result.returncode == 0, result.stderr
    assert "not restoring" not in result.stdout + result.stderr
    lifecycle.start(vmid, log=lambda _line: None)
    try:
        assert marker.exists()
        assert _sees_hostdir(vmid)
    finally:
        lifecycle.stop(vmid, log=lambda _line: None)


def test_cli_says_how_to_keep_it(backups: Backups, vmid: int) -> None:
    archive = backups.archive(CONF + "hookscript: local:snippets/hook.sh\n")
    result = pct("restore", str(vmid), archive, "--force")
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert (
        "WARN: not restoring 'hookscript: local:snippets/hook.sh' from the archive - "
        f"a hookscript runs on the host as root; restore with {TRUST_OPTION} to keep it"
    ) in out.splitlines()
    assert "hookscript" not in store.read_bytes(vmid).decode()


# container uid/gid 1 is host root on the volume: an archive's setuid file would be a host shell
IDMAP = "u:0:100000:1;u:1:0:1;g:0:100000:1;g:1:0:1"
IDMAP_ENTRIES = {
    "mp0": f"mp0: local:100/vm-100-disk-1.raw,mp=/data,size=16M,idmap={IDMAP}",
    "rootfs": f"rootfs: local:100/vm-100-disk-0.raw,size=128M,idmap={IDMAP}",
}


@pytest.mark.parametrize("key", list(IDMAP_ENTRIES))
def test_mount_point_idmap_dropped_by_default_kept_when_trusted(
    backups: Backups, new_vmid: Callable[[], int], key: str
) -> None:
    text = (
        CONF.replace("rootfs: local:100/vm-100-disk-0.raw,size=128M\n", "")
        if key == "rootfs"
        else CONF
    )
    archive = backups.archive(text + IDMAP_ENTRIES[key] + "\nunprivileged: 1\n")

    # neither --force nor an explicit --unprivileged 1 trusts the archive
    for extra in ({}, {"force": True}, {"unprivileged": True}):
        vmid = new_vmid()
        backups.restore(vmid, archive, **extra)
        saved = store.read_bytes(vmid).decode()
        assert "idmap" not in saved, saved
        assert f"{key}: " in saved and "unprivileged: 1" in saved, saved
        dropped = [entry for entry in backups.logs if "not restoring" in entry]
        assert dropped == [
            f"WARN: not restoring 'idmap={IDMAP}' of {key} from the archive - a mount "
            "point's id map can give container users any host id, host root included; "
            f"restore with {TRUST_OPTION} to keep it"
        ], backups.logs

    vmid = new_vmid()
    backups.restore(vmid, archive, trust_archive=True)
    assert f"idmap={IDMAP}" in store.load(vmid).values[key]
    assert not [entry for entry in backups.logs if "not restoring" in entry]
