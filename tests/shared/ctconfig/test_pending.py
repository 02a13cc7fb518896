"""``pct set`` at the data level (pct.md §2.5, §9 cases 16-25)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from shared.ctconfig import render
from shared.ctconfig.config import Config, parse_config
from shared.ctconfig.pending import (
    HOTPLUG_FAST,
    ApplyResult,
    OptionError,
    apply_pending,
    hotplug_action,
    plan_hotplug,
    update_pending,
)
from shared.errors import (
    LockError,
    NotFoundError,
    ParamError,
    StateError,
    StorageError,
    VerifyError,
)

BASE = """\
arch: amd64
hostname: web
memory: 512
mp0: local:100/vm-100-disk-1.raw,mp=/srv,size=1G
net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,type=veth
ostype: debian
rootfs: local:100/vm-100-disk-0.raw,size=4G
swap: 512
unprivileged: 1
"""


NOT_IN_SCHEMA = (
    "property is not defined in schema and the schema does not allow additional properties"
)


class DirStorage:
    """A minimal dir storage on the scratch root: real sparse image files per volume."""

    def __init__(self, root: Path) -> None:
        self.images = root / "var/lib/vz/images"
        self.allocated: list[str] = []
        self.freed: list[str] = []

    def path(self, volid: str) -> Path:
        storage, name = volid.split(":", 1)
        assert storage == "local"
        return self.images / name

    def create(self, volid: str, size: int) -> None:
        path = self.path(volid)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.truncate(size)

    def alloc(self, storage: str | None, size_gib: float, key: str, conf: Config) -> str:
        if storage != "local":
            raise StorageError(f"storage '{storage}' does not exist")
        n = 0
        while (self.images / str(conf.vmid) / f"vm-{conf.vmid}-disk-{n}.raw").exists():
            n += 1
        volid = f"local:{conf.vmid}/vm-{conf.vmid}-disk-{n}.raw"
        self.create(volid, int(size_gib * (1 << 30)))
        self.allocated.append(volid)
        return volid

    def free(self, volid: str) -> None:
        self.path(volid).unlink()
        self.freed.append(volid)

    def size(self, volid: str) -> int:
        return os.stat(self.path(volid)).st_size


@pytest.fixture
def storage(ctroot: Path) -> DirStorage:
    st = DirStorage(ctroot)
    st.create("local:100/vm-100-disk-0.raw", 4 << 30)
    st.create("local:100/vm-100-disk-1.raw", 1 << 30)
    return st


def _conf(text: str = BASE) -> Config:
    return parse_config(text.encode(), 100)


def _apply(conf: Config, storage: DirStorage, keys: set[str] | None = None) -> ApplyResult:
    return apply_pending(
        conf, keys=keys, alloc=storage.alloc, free=storage.free, volume_size=storage.size
    )


def test_case16_running_ct_keeps_non_hotplug_changes_pending(storage: DirStorage) -> None:
    conf = _conf()
    result = update_pending(conf, {"ostype": "ubuntu", "tty": "4"}, running=True)
    assert conf.pending.values == {"ostype": "ubuntu", "tty": "4"}
    assert result.modified == {"ostype", "tty"}
    assert result.plan is not None and result.plan.deferred == {"ostype", "tty"}
    pending = render.render_pending(conf)
    assert "cur ostype: debian\nnew ostype: ubuntu\n" in pending
    assert "new tty: 4\n" in pending and "cur tty" not in pending
    assert "ostype: ubuntu\n" in render.render_config(conf)
    assert "ostype: debian\n" in render.render_config(conf, current=True)
    assert "tty" not in render.render_config(conf, current=True)
    # stop/reboot: everything is applied, the pending section disappears
    applied = apply_pending(conf, alloc=storage.alloc, free=storage.free)
    assert applied.errors == {}
    assert conf.get("ostype") == "ubuntu" and conf.get("tty") == 4
    assert conf.pending.is_empty()
    assert "[pve:pending]" not in conf.to_text()


def test_case17_revert_removes_only_that_key() -> None:
    conf = _conf()
    update_pending(conf, {"ostype": "ubuntu", "tty": "4"}, running=True)
    update_pending(conf, {}, revert_keys="tty", running=True)
    assert conf.pending.values == {"ostype": "ubuntu"}
    update_pending(conf, {}, delete_keys=["swap"], running=True)
    update_pending(conf, {}, revert_keys=["swap", "ostype"], running=True)
    assert conf.pending.is_empty()


def test_case18_delete_volume_mp(storage: DirStorage) -> None:
    conf = _conf()
    update_pending(conf, {}, delete_keys="mp0", running=True)
    assert conf.pending_deletes() == {"mp0": False}
    assert "del mp0: local:100/vm-100-disk-1.raw,mp=/srv,size=1G\n" in render.render_pending(conf)
    result = _apply(conf, storage)
    assert result.applied == ["mp0"] and result.unused == ["unused0"]
    assert "mp0" not in conf
    assert conf.get_raw("unused0") == "local:100/vm-100-disk-1.raw"
    assert storage.path("local:100/vm-100-disk-1.raw").exists()


def test_delete_bind_mp_is_just_removed(storage: DirStorage) -> None:
    conf = _conf(BASE.replace("mp0: local:100/vm-100-disk-1.raw,mp=/srv,size=1G", "mp0: /h,mp=/c"))
    update_pending(conf, {}, delete_keys="mp0", running=False)
    result = _apply(conf, storage)
    assert "mp0" not in conf and conf.unused() == {} and result.unused == []


def test_delete_mp_still_used_by_a_snapshot_adds_no_unused(storage: DirStorage) -> None:
    text = BASE + "\n[s1]\nmp0: local:100/vm-100-disk-1.raw,mp=/srv\nsnaptime: 1\n"
    conf = _conf(text)
    update_pending(conf, {}, delete_keys="mp0", running=False)
    _apply(conf, storage)
    assert "mp0" not in conf and conf.unused() == {}


def test_case19_delete_unused_frees_owned_volume(storage: DirStorage) -> None:
    conf = _conf(
        BASE + "unused0: local:100/vm-100-disk-7.raw\nunused1: local:101/vm-101-disk-0.raw\n"
    )
    storage.create("local:100/vm-100-disk-7.raw", 1 << 20)
    update_pending(conf, {}, delete_keys="unused0,unused1", running=False)
    result = _apply(conf, storage)
    assert result.freed == ["local:100/vm-100-disk-7.raw"]
    assert not storage.path("local:100/vm-100-disk-7.raw").exists()
    assert result.warnings == [
        "ignore deletion of 'local:101/vm-101-disk-0.raw', CT 100 isn't the owner!"
    ]
    assert conf.unused() == {}


def test_delete_unused_still_referenced_is_not_freed(storage: DirStorage) -> None:
    conf = _conf(BASE + "unused0: local:100/vm-100-disk-1.raw\n")
    update_pending(conf, {}, delete_keys="unused0", running=False)
    result = _apply(conf, storage)
    assert result.freed == [] and "unused0" not in conf
    assert storage.path("local:100/vm-100-disk-1.raw").exists()


UNREADABLE = "mp0: local:100/vm-100-disk-1.raw,mp=/srv,size=1G,newopt=1"


@pytest.mark.parametrize("section", ["main", "snapshot"])
def test_a_volume_named_by_an_unreadable_line_is_never_freed_as_unused(
    storage: DirStorage, section: str
) -> None:
    """A mount point line this version cannot parse (an option of a newer Proxmox) still names
    its volume: an unusedN entry of that volume is dropped without freeing it."""
    text = BASE.replace("mp0: local:100/vm-100-disk-1.raw,mp=/srv,size=1G", "")
    if section == "main":
        text += UNREADABLE + "\n"
    else:
        text += "\n[s1]\n" + UNREADABLE + "\nsnaptime: 1\n"
    conf = _conf(text)
    conf.values["unused0"] = "local:100/vm-100-disk-1.raw"
    update_pending(conf, {}, delete_keys="unused0", running=False)
    result = _apply(conf, storage)
    assert result.freed == [] and "unused0" not in conf
    assert storage.path("local:100/vm-100-disk-1.raw").exists()


def test_deleting_an_unreadable_mount_point_keeps_its_volume_as_unused(
    storage: DirStorage,
) -> None:
    conf = _conf(BASE.replace("mp0: local:100/vm-100-disk-1.raw,mp=/srv,size=1G", UNREADABLE))
    update_pending(conf, {}, delete_keys="mp0", running=False)
    result = _apply(conf, storage)
    assert result.applied == ["mp0"] and result.unused == ["unused0"]
    assert "mp0" not in conf and conf.get_raw("unused0") == "local:100/vm-100-disk-1.raw"
    assert storage.path("local:100/vm-100-disk-1.raw").exists()


def test_deleting_an_unused_volume_that_is_gone_drops_the_entry_with_a_warning() -> None:
    """A volume removed by hand (or renamed by a move killed half-way) failed every apply:
    'unable to apply pending change unused0 : volume ... does not exist', pending for good."""
    conf = _conf(BASE + "unused0: local:100/vm-100-disk-7.raw\n")

    def gone(volid: str) -> None:
        raise NotFoundError(f"volume '{volid}' does not exist")

    update_pending(conf, {}, delete_keys="unused0", running=False)
    result = apply_pending(conf, alloc=lambda *_a: "", free=gone)
    assert result.applied == ["unused0"] and result.errors == {} and result.freed == []
    assert result.warnings == ["volume 'local:100/vm-100-disk-7.raw' does not exist"]
    assert "unused0" not in conf and conf.pending_deletes() == {}


def test_case20_required_and_read_only_options() -> None:
    conf = _conf()
    before = conf.to_text()
    for key in ("memory", "rootfs", "ostype"):
        with pytest.raises(OptionError) as info:
            update_pending(conf, {}, delete_keys=key, running=False)
        assert info.value.lines() == [f"unable to delete required option '{key}'"]
    with pytest.raises(OptionError, match=r"^unable to delete read-only option: 'unprivileged'$"):
        update_pending(conf, {}, delete_keys="unprivileged", running=False)
    with pytest.raises(OptionError, match=r"^unable to modify read-only option: 'unprivileged'$"):
        update_pending(conf, {"unprivileged": "0"}, running=False)
    assert conf.to_text() == before


def test_case21_new_volume_mount_point(storage: DirStorage) -> None:
    conf = _conf()
    update_pending(conf, {"mp1": "local:10,mp=/data"}, running=False)
    assert conf.pending.get_raw("mp1") == "local:10,mp=/data"
    result = _apply(conf, storage)
    assert result.allocated == ["local:100/vm-100-disk-2.raw"]
    assert conf.get_raw("mp1") == "local:100/vm-100-disk-2.raw,mp=/data,size=10G"
    assert storage.size("local:100/vm-100-disk-2.raw") == 10 << 30


def test_case21_literal_on_a_ct_without_mp(storage: DirStorage) -> None:
    conf = _conf(BASE.replace("mp0: local:100/vm-100-disk-1.raw,mp=/srv,size=1G\n", ""))
    update_pending(conf, {"mp0": "local:10,mp=/srv"}, running=False)
    _apply(conf, storage)
    assert conf.get_raw("mp0") == "local:100/vm-100-disk-2.raw,mp=/srv,size=10G"


def test_replacing_a_volume_moves_the_old_one_to_unused(storage: DirStorage) -> None:
    conf = _conf()
    update_pending(conf, {"mp0": "local:2,mp=/srv"}, running=False)
    result = _apply(conf, storage)
    assert conf.get_raw("mp0") == "local:100/vm-100-disk-2.raw,mp=/srv,size=2G"
    assert conf.unused() == {"unused0": "local:100/vm-100-disk-1.raw"}
    assert result.unused == ["unused0"]


def test_changing_options_of_the_same_volume_adds_no_unused_and_rescans_size(
    storage: DirStorage,
) -> None:
    conf = _conf()
    update_pending(conf, {"mp0": "local:100/vm-100-disk-1.raw,mp=/other,ro=1"}, running=False)
    _apply(conf, storage)
    assert conf.get_raw("mp0") == "local:100/vm-100-disk-1.raw,mp=/other,ro=1,size=1G"
    assert conf.unused() == {}


def test_failed_allocation_stays_pending(storage: DirStorage) -> None:
    conf = _conf()
    update_pending(conf, {"mp1": "other:1,mp=/x", "cores": "2"}, running=False)
    result = _apply(conf, storage)
    assert result.errors == {
        "mp1": "unable to apply pending change mp1 : storage 'other' does not exist"
    }
    assert result.applied == ["cores"]
    assert conf.pending.values == {"mp1": "other:1,mp=/x"}


def test_case22_network_gets_mac_and_type(storage: DirStorage) -> None:
    conf = _conf()
    update_pending(conf, {"net1": "name=eth1,bridge=vmbr0,ip=dhcp"}, running=False)
    _apply(conf, storage)
    text = conf.get_raw("net1") or ""
    m = re.fullmatch(
        r"name=eth1,bridge=vmbr0,hwaddr=(BC:24:11(?::[0-9A-F]{2}){3}),ip=dhcp,type=veth", text
    )
    assert m, text
    update_pending(conf, {"net2": "name=eth2"}, running=False)
    apply_pending(conf, alloc=storage.alloc, free=storage.free, mac_prefix=None)
    mac = conf.get("net2")["hwaddr"]
    assert int(mac[:2], 16) & 3 == 2


def test_case23_nameserver_list(storage: DirStorage) -> None:
    conf = _conf()
    update_pending(conf, {"nameserver": "1.1.1.1,9.9.9.9"}, running=False)
    _apply(conf, storage)
    assert "nameserver: 1.1.1.1 9.9.9.9\n" in conf.to_text()
    before = conf.to_text()
    with pytest.raises(ParamError) as info:
        update_pending(conf, {"nameserver": "1.1.1.1,not-an-ip"}, running=False)
    assert info.value.lines() == [
        "",
        "400 Parameter verification failed.",
        "nameserver: invalid format - value does not look like a valid IP address",
    ]
    assert conf.to_text() == before


def test_case24_stale_digest(storage: DirStorage) -> None:
    conf = _conf()
    before = conf.to_text()
    with pytest.raises(VerifyError) as info:
        update_pending(conf, {"memory": "1024"}, running=False, digest="0" * 40)
    assert str(info.value) == (
        "detected modified configuration - file changed by other user? Try again."
    )
    assert conf.to_text() == before
    update_pending(conf, {"memory": "1024"}, running=False, digest=conf.digest)
    assert conf.pending.get_raw("memory") == "1024"


def test_case25_protection_blocks_drive_changes() -> None:
    conf = _conf(BASE + "protection: 1\nunused0: local:100/vm-100-disk-5.raw\n")
    with pytest.raises(StateError) as info:
        update_pending(conf, {"mp0": "local:1,mp=/x"}, running=False)
    assert str(info.value) == "can't update CT 100 drive 'mp0' - protection mode enabled"
    with pytest.raises(StateError, match=r"^can't update CT 100 drive 'rootfs' - protection"):
        update_pending(conf, {"rootfs": "local:8"}, running=False)
    for key in ("mp0", "unused0"):
        with pytest.raises(StateError) as info:
            update_pending(conf, {}, delete_keys=key, running=False)
        assert str(info.value) == f"can't remove CT 100 drive '{key}' - protection mode enabled"
    update_pending(conf, {"memory": "1024"}, running=False)  # other keys are fine


def test_parameter_errors() -> None:
    conf = _conf()
    cases: list[tuple[dict[str, str], str, str, dict[str, str]]] = [
        ({}, "foo", "", {"delete": "unknown option 'foo'"}),
        ({}, "", "foo", {"revert": "unknown option 'foo'"}),
        (
            {"memory": "1024"},
            "memory",
            "",
            {"delete": "you can't use '-memory' and -delete memory' at the same time"},
        ),
        (
            {"tty": "2"},
            "",
            "tty",
            {"revert": "you can't use '-tty' and '-revert tty' at the same time"},
        ),
        (
            {},
            "tty",
            "tty",
            {"delete": "you can't use '-delete tty' and '-revert tty' at the same time"},
        ),
        (
            {"bogus": "1"},
            "",
            "",
            {"bogus": NOT_IN_SCHEMA},
        ),
        (
            {"parent": "x1"},
            "",
            "",
            {"parent": NOT_IN_SCHEMA},
        ),
        (
            {"memory": "8", "tty": "9"},
            "",
            "",
            {
                "memory": "value must have a minimum value of 16",
                "tty": "value must have a maximum value of 6",
            },
        ),
    ]
    for values, delete, revert, errors in cases:
        with pytest.raises(ParamError) as info:
            update_pending(conf, values, delete_keys=delete, revert_keys=revert, running=False)
        assert not isinstance(info.value, OptionError)
        assert info.value.errors == errors
    with pytest.raises(OptionError, match=r"^no options specified$"):
        update_pending(conf, {}, running=False)


def test_property_string_errors_carry_sub_keys() -> None:
    with pytest.raises(ParamError) as info:
        update_pending(_conf(), {"net0": "name=eth0,tag=9999"}, running=False)
    assert info.value.lines()[1:] == [
        "400 Parameter verification failed.",
        "net0: invalid format - format error",
        "net0.tag: value must have a maximum value of 4094",
    ]


def test_deleting_an_unset_key_only_warns() -> None:
    conf = _conf()
    result = update_pending(conf, {"cores": "2"}, delete_keys="tty", running=False)
    assert result.warnings == ["cannot delete 'tty' - not set in current configuration!"]
    assert conf.pending.values == {"cores": "2"}


def test_delete_of_a_pending_only_value_drops_it() -> None:
    conf = _conf()
    update_pending(conf, {"tty": "3"}, running=True)
    result = update_pending(conf, {}, delete_keys="tty", running=True)
    assert result.warnings == []
    assert conf.pending.is_empty()


def test_a_dropped_pending_mount_point_keeps_its_allocated_volume_as_unused() -> None:
    # a 'pct set' killed after allocating saved the volume as a pending mpN: whatever drops
    # that value (delete, revert, a new value) must leave the volume named by the config
    new = "local:100/vm-100-disk-2.raw"
    for drop in ({"delete_keys": "mp1"}, {"revert_keys": "mp1"}, {"set": "local:1,mp=/y"}):
        conf = _conf(BASE + f"\n[pve:pending]\nmp1: {new},mp=/x,size=1G\n")
        values = {"mp1": drop.pop("set")} if "set" in drop else {}
        update_pending(conf, values, running=True, **drop)
        assert conf.values.get("unused0") == new, drop
    # a volume of another CT, a bind mount, a volume still in use: nothing added
    for text in ("local:101/vm-101-disk-0.raw,mp=/z", "/srv/x,mp=/z", "local:1,mp=/z"):
        conf = _conf(BASE + f"\n[pve:pending]\nmp1: {new},mp=/x,size=1G\n")
        conf.pending.values["mp1"] = text
        update_pending(conf, {}, delete_keys="mp1", running=True)
        assert "unused0" not in conf.values, text
    conf = _conf(BASE + f"\n[pve:pending]\nmp1: {new},mp=/x,size=1G\n")
    update_pending(conf, {"mp1": f"{new},mp=/z"}, running=True)  # the same, other options
    assert "unused0" not in conf.values
    conf = _conf(BASE + "\n[pve:pending]\nmp1: local:100/vm-100-disk-1.raw,mp=/x\n")
    update_pending(conf, {}, revert_keys="mp1", running=True)  # mp0 still names it
    assert "unused0" not in conf.values


def test_force_delete_is_recorded() -> None:
    conf = _conf()
    update_pending(conf, {}, delete_keys="swap,hostname", force=True, running=True)
    assert conf.pending.get_raw("delete") == "!hostname,!swap"
    assert "del swap: 512" in render.render_pending(conf)


def test_pending_equal_to_current_is_dropped() -> None:
    conf = _conf()
    result = update_pending(conf, {"memory": "512", "swap": "0512", "tags": "b;A"}, running=True)
    assert conf.pending.values == {"tags": "a;b"}
    assert result.modified == {"memory", "swap", "tags"}


def test_lock_is_checked_also_for_deleting_it() -> None:
    conf = _conf(BASE + "lock: backup\n")
    with pytest.raises(LockError, match=r"^CT is locked \(backup\)$"):
        update_pending(conf, {}, delete_keys="lock", running=False)
    update_pending(conf, {}, delete_keys="lock", running=False, check_lock=False)
    assert conf.pending_deletes() == {"lock": False}


def test_devices(storage: DirStorage) -> None:
    conf = _conf()
    with pytest.raises(OptionError, match=r"^Device /dev/nope-ctkit does not exist$"):
        update_pending(conf, {"dev0": "/dev/nope-ctkit"}, running=False)
    with pytest.raises(OptionError, match=r"^Path is not defined for passthrough device dev0$"):
        update_pending(conf, {"dev0": "mode=0660"}, running=False)
    update_pending(conf, {"dev0": "path=/dev/null,gid=5"}, running=False)
    _apply(conf, storage)
    assert conf.get_raw("dev0") == "/dev/null,gid=5"


def test_volume_mount_point_needs_a_volume_id() -> None:
    with pytest.raises(OptionError, match=r"^unable to parse volume ID '10'$"):
        update_pending(_conf(), {"mp3": "10,mp=/x"}, running=False)


def test_extra_check_hook_sees_parsed_values() -> None:
    seen: list[tuple[str, object]] = []

    def check(key: str, value: object) -> None:
        seen.append((key, value))
        if key == "net1":
            raise OptionError("net1: MTU size '9000' is bigger than bridge MTU '1500'")

    conf = _conf()
    with pytest.raises(OptionError, match="bigger than bridge MTU"):
        update_pending(
            conf, {"cores": "2", "net1": "name=eth1,mtu=9000"}, running=False, check=check
        )
    assert seen[0] == ("cores", 2)
    assert conf.pending.is_empty()


def test_non_root_restrictions() -> None:
    conf = _conf()
    with pytest.raises(OptionError, match="mount point type bind is only allowed for root@pam"):
        update_pending(conf, {"mp5": "/host,mp=/ct"}, running=False, is_root=False)
    with pytest.raises(OptionError, match="configuring device passthrough is only allowed"):
        update_pending(conf, {"dev1": "/dev/null"}, running=False, is_root=False)
    with pytest.raises(OptionError, match=r"feature flags \(except nesting\)"):
        update_pending(conf, {"features": "nesting=1,keyctl=1"}, running=False, is_root=False)
    update_pending(conf, {"features": "nesting=1"}, running=False, is_root=False)
    priv = _conf(BASE.replace("unprivileged: 1\n", ""))
    with pytest.raises(OptionError, match="for privileged container is only allowed for root"):
        update_pending(priv, {"features": "nesting=1"}, running=False, is_root=False)


def test_hotplug_classification() -> None:
    conf = _conf()
    assert {hotplug_action(conf, k) for k in HOTPLUG_FAST} == {"fast"}
    assert hotplug_action(conf, "memory") == "live"
    assert hotplug_action(conf, "cpulimit") == "live"
    assert hotplug_action(conf, "net0") == "live"
    assert hotplug_action(conf, "mp0") == "deferred"  # replacing an existing mp
    assert hotplug_action(conf, "mp1") == "live"  # new mp: allocate and hot-mount
    assert hotplug_action(conf, "dev0") == "live"
    assert hotplug_action(conf, "rootfs") == "deferred"
    assert hotplug_action(conf, "features") == "deferred"
    assert hotplug_action(conf, "swap", delete=True) == "live"
    assert hotplug_action(conf, "unused0", delete=True) == "fast"
    assert hotplug_action(conf, "net0", delete=True) == "live"
    assert hotplug_action(conf, "mp0", delete=True) == "live"  # unmounted unless busy
    assert hotplug_action(conf, "dev0", delete=True) == "deferred"
    assert hotplug_action(conf, "tty", delete=True) == "deferred"
    assert hotplug_action(conf, "onboot", delete=True) == "fast"


def test_running_ct_applies_only_the_selected_keys(storage: DirStorage) -> None:
    conf = _conf()
    result = update_pending(
        conf, {"cores": "2", "memory": "1024", "ostype": "alpine"}, delete_keys="swap", running=True
    )
    assert result.plan is not None
    assert result.plan.fast == {"cores"}
    assert result.plan.live == {"memory", "swap"}
    assert result.plan.deferred == {"ostype"}
    applied = _apply(conf, storage, keys=result.plan.fast | result.plan.live)
    assert sorted(applied.applied) == ["cores", "memory", "swap"]
    assert conf.get("memory") == 1024 and "swap" not in conf
    assert conf.pending.values == {"ostype": "alpine"}
    assert plan_hotplug(conf).deferred == {"ostype"}
