"""Parsing and writing container configs: golden round trips and the §2.1/§2.2 rules."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from shared.ctconfig.config import Config, Section, decode_text, encode_text, parse_config
from shared.errors import ConfigError, NotFoundError
from shared.formats.types import FormatError
from tests.conftest import reference_file

GOLDEN = Path(__file__).parent / "golden"


def _vmid(path: Path) -> int:
    m = re.match(r"(\d+)-", path.name)
    return int(m.group(1)) if m else 100


def _expected_warnings(path: Path, vmid: int) -> list[str]:
    wfile = path.with_name(path.name.split(".")[0] + ".warnings")
    if not wfile.exists():
        return []
    text = wfile.read_text()
    return [text.rstrip("\n")] if text else []


def _warnings_text(conf: Config) -> list[str]:
    return ["\n".join(conf.warnings)] if conf.warnings else []


ROUNDTRIP = sorted((GOLDEN / "roundtrip").glob("*.conf")) + sorted(
    (GOLDEN / "proxmox").glob("*.conf")
)


@pytest.mark.parametrize("path", ROUNDTRIP, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_canonical_file_reprints_byte_for_byte(path: Path) -> None:
    data = path.read_bytes()
    vmid = _vmid(path)
    conf = parse_config(data, vmid)
    assert conf.to_bytes() == data
    assert _warnings_text(conf) == _expected_warnings(path, vmid)
    # and a second round through the writer is stable too
    assert parse_config(conf.to_bytes(), vmid).to_bytes() == data


NORMALIZE = sorted((GOLDEN / "normalize").glob("*.in.conf"))


@pytest.mark.parametrize("path", NORMALIZE, ids=lambda p: p.name)
def test_hand_edited_file_is_normalised(path: Path) -> None:
    expected = path.with_name(path.name.replace(".in.conf", ".out.conf")).read_bytes()
    conf = parse_config(path.read_bytes(), 100)
    assert conf.to_bytes() == expected
    assert _warnings_text(conf) == _expected_warnings(path, 100)
    assert parse_config(expected, 100).to_bytes() == expected


def test_digest_is_sha1_of_raw_bytes() -> None:
    data = (GOLDEN / "roundtrip" / "105-unknown.conf").read_bytes()
    assert parse_config(data, 105).digest == hashlib.sha1(data).hexdigest()
    assert parse_config(data + b"\n", 105).digest != hashlib.sha1(data).hexdigest()


def test_description_decoding_and_encoding() -> None:
    conf = parse_config(b"#note: x\n#a%3Ab %25 %C3%BC\n#\n#tail  \nmemory: 512\n", 100)
    assert conf.description == "note: x\na:b % \u00fc\n\ntail  \n"
    assert conf.to_text().splitlines()[:4] == ["#note%3A x", "#a%3Ab %25 %C3%BC", "#", "#tail  "]
    assert encode_text("x:y%z\t\u00e9\x7f") == "x%3Ay%25z%09%C3%A9%7F"
    assert decode_text("%zz%4a%C3") == "%zzJ\ufffd"


def test_description_key_lines_append_without_newline() -> None:
    conf = parse_config(b"description: one\ndescription: two%3A\n#three\n", 100)
    assert conf.description == "onetwo:three\n"


def test_section_headers_flush_description_into_the_section_left() -> None:
    text = b"#main\nmemory: 1\n[s1]\n#snap\nmemory: 2\n[pve:pending]\n#pend\n"
    conf = parse_config(text, 100)
    assert conf.description == "main\n"
    assert conf.snapshots["s1"].description == "snap\n"
    assert conf.pending.description == "pend\n"


def test_snapshot_name_rules_and_snapstate() -> None:
    conf = parse_config(b"snapstate: delete\n[a]\nmemory: 1\n[b1_-x]\nsnapstate: delete\n", 100)
    # one-character names are no section header
    assert "a" not in conf.snapshots
    assert "vm 100 - unable to parse config: [a]" in conf.warnings
    assert conf.snapshots["b1_-x"].get_raw("snapstate") == "delete"
    assert "snapstate" not in conf.values


def test_a_value_that_ends_like_a_snapstate_line_is_kept() -> None:
    """``snapstate:`` was searched anywhere in a line, before the key rule: these lines became
    the section's snapstate, vanished from ``pct config`` and from the next write."""
    text = b"entrypoint: /sbin/init snapstate: prepare\nmp0: /srv,mp=/data snapstate: delete\n"
    conf = parse_config(text, 100)
    assert conf.get_raw("entrypoint") == "/sbin/init snapstate: prepare"
    assert conf.get_raw("mp0") == "/srv,mp=/data snapstate: delete"
    assert "snapstate" not in conf.values
    assert conf.to_text().encode() == text


def test_a_number_of_thousands_of_digits_is_a_bad_value() -> None:
    """int() refuses 4300 digits: reading such a value raised a ValueError, and every
    ``pct list`` failed on the config that held it; it is a value out of range, as any other."""
    conf = parse_config(f"memory: {'9' * 5000}\nswap: 512\n".encode(), 100)
    assert conf.get("swap") == 512
    with pytest.raises(ConfigError, match="unable to parse value of 'memory' - type check"):
        conf.get("memory")


def test_a_key_that_is_no_property_name_is_never_written() -> None:
    """A newline in a key wrote a line of the key's choosing (a raw ``lxc.hook``)."""
    conf = Config(100)
    conf.set_raw("mp5\nlxc.hook.pre-start: /bin/true", "local:100/vm-100-disk-1.raw,mp=/x")
    with pytest.raises(ConfigError, match=r"^invalid property name 'mp5\\x0alxc\.hook"):
        conf.to_text()


def test_env_is_folded_from_runtime_lines_in_any_section() -> None:
    text = (
        b"lxc.environment.runtime: A=1\nlxc.environment.runtime = B=x y\n"
        b"[s1]\nlxc.environment.runtime: C=\n"
    )
    conf = parse_config(text, 100)
    assert conf.get_raw("env") == "A=1\0B=x y"
    assert conf.get("env") == ["A=1", "B=x y"]
    assert conf.env == ["A=1", "B=x y"]
    assert conf.lxc == []
    assert conf.snapshots["s1"].env == ["C="]


def test_an_empty_env_entry_is_dropped() -> None:
    """As Proxmox's writer splits the list on runs of NULs: an empty line read back was
    written again (with a trailing space) on every rewrite, and given to LXC."""
    text = b"arch: amd64\nlxc.environment.runtime: A=1\nlxc.environment.runtime:\n" + (
        b"lxc.environment.runtime: B=2\n"
    )
    conf = parse_config(text, 100)
    assert conf.env == ["A=1", "B=2"]
    assert conf.to_text() == (
        "arch: amd64\nlxc.environment.runtime: A=1\nlxc.environment.runtime: B=2\n"
    )


def test_raw_lxc_entries_keep_order_and_duplicates() -> None:
    text = b"lxc.mount.entry: a\nlxc.idmap = u 0 1 2\nlxc.mount.entry:b\n"
    conf = parse_config(text, 100)
    assert conf.lxc == [
        ("lxc.mount.entry", "a"),
        ("lxc.idmap", "u 0 1 2"),
        ("lxc.mount.entry", "b"),
    ]
    assert conf.to_text() == "lxc.mount.entry: a\nlxc.idmap: u 0 1 2\nlxc.mount.entry: b\n"


def test_strict_parse_raises_on_the_first_problem() -> None:
    with pytest.raises(ConfigError, match=r"lxc.rootfs.path is auto generated from rootfs"):
        parse_config(b"memory: 512\nlxc.rootfs.path: /x\n", 100, strict=True)
    with pytest.raises(ConfigError, match=r"unable to parse value of 'memory'"):
        parse_config(b"memory: lots\n", 100, strict=True)
    assert parse_config(b"memory: 512\n", 100, strict=True).get("memory") == 512


def test_lenient_file_checks_follow_proxmox_check_type() -> None:
    conf = parse_config(b"memory: 8\nostype: beos\ntty: 99\nonboot: TRUE\ncores: 0012\n", 100)
    # ranges and enums are command-line checks only; the file keeps them (no warning)
    assert conf.warnings == []
    assert conf.get("memory") == 8
    assert conf.get("ostype") == "beos"
    assert conf.get("onboot") is True
    assert conf.get_raw("onboot") == "1"
    assert conf.get_raw("cores") == "12"


def test_unused_still_referenced_is_dropped_on_write_only_in_main() -> None:
    text = (
        b"mp0: local:100/vm-100-disk-1.raw,mp=/a\n"
        b"rootfs: /dev/sda1\n"
        b"unused0: local:100/vm-100-disk-1.raw\n"
        b"unused1: local:100/vm-100-disk-2.raw\n"
        b"\n[s1]\nmp0: local:100/vm-100-disk-2.raw,mp=/a\nunused0: local:100/vm-100-disk-2.raw\n"
    )
    conf = parse_config(text, 100)
    out = conf.to_text()
    assert "unused0: local:100/vm-100-disk-1.raw" not in out
    assert "unused1: local:100/vm-100-disk-2.raw" in out
    assert out.endswith("unused0: local:100/vm-100-disk-2.raw\n")
    assert "unused0" in conf.values  # writing does not change the model


def test_newline_in_a_value_is_a_hard_error() -> None:
    conf = Config(100)
    conf.set_raw("hostname", "a\nb")
    with pytest.raises(ConfigError, match="detected invalid newline inside property 'hostname'"):
        conf.to_text()
    conf = Config(100)
    conf.set_raw("env", "A=1\0B=x\ny")
    with pytest.raises(ConfigError, match=r"'lxc\.environment\.runtime'"):
        conf.to_text()


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        (b"hostname: web\nostype: \xe7ebian\n", "line 2 is not valid UTF-8: ostype: \\xe7ebian"),
        (b"lxc.mount.entry: /srv/\xff x none bind 0 0\n", "line 1 is not valid UTF-8: lxc.mount"),
    ],
)
def test_undecodable_bytes_are_refused_when_read(data: bytes, shown: str) -> None:
    # they would reach LXC, the guest's files and the writer as text they cannot encode
    for strict in (False, True):
        with pytest.raises(ConfigError, match="vm 100 - " + re.escape(shown)):
            parse_config(data, 100, strict=strict)
    assert parse_config(b"#caf\xe9\nhostname: web\n", 100).description == "caf\ufffd\n"


def test_typed_access() -> None:
    conf = parse_config((GOLDEN / "roundtrip" / "106-all-options.conf").read_bytes(), 106)
    assert conf.get("cpulimit") == 1.5
    assert conf.get("console") is False
    assert conf.get("nameserver") == ["192.0.2.53", "2001:db8::53", "fe80::1%eth0"]
    assert conf.get("tags") == ["alpha", "beta", "prod"]
    assert conf.get("startup") == {"order": 3, "up": 60, "down": 30}
    assert conf.get("rootfs")["size"] == 8 << 30
    assert conf.get("net0")["mtu"] == 1450
    assert conf.get("features")["nesting"] is True
    assert conf.get("unused0") == {"volume": "local:106/vm-106-disk-3.raw"}
    assert conf.get("missing", "dflt") == "dflt"
    assert conf.lock == "snapshot"
    assert conf.unprivileged and conf.protection and not conf.is_template
    assert conf.parent == "snap1"
    assert [mp.key for mp in conf.mountpoints()] == ["rootfs", "mp0", "mp1", "mp2", "mp10"]
    assert [mp.type for mp in conf.mountpoints()] == [
        "volume",
        "volume",
        "bind",
        "device",
        "volume",
    ]
    assert list(conf.nets()) == ["net0", "net31"]
    assert conf.nets()["net31"]["ip6"] == "auto"
    assert list(conf.devices()) == ["dev0", "dev1"]
    assert conf.unused() == {
        "unused0": "local:106/vm-106-disk-3.raw",
        "unused255": "local:106/vm-106-disk-4.raw",
    }
    assert conf.features()["mount"] == "nfs;cifs"


def test_get_of_a_value_that_does_not_parse_is_a_config_error() -> None:
    conf = parse_config(b"cores: many\nnet0: name=eth0,bogus=1\n", 100)
    with pytest.raises(ConfigError, match=r"vm 100 - unable to parse value of 'cores'"):
        conf.get("cores")
    # lists of mount points and nets skip what does not parse
    assert conf.nets() == {}


def test_set_validates_and_stores_canonical_text() -> None:
    conf = Config(100)
    conf.set("onboot", "yes")
    conf.set("memory", 2048)
    conf.set("nameserver", "1.1.1.1,9.9.9.9")
    conf.set("net0", {"name": "eth0", "bridge": "vmbr0", "ip": "dhcp", "type": "veth"})
    conf.set("mp0", "local:1,mp=/srv,backup=yes")
    conf.set("description", "multi\nline")
    assert conf.values == {
        "onboot": "1",
        "memory": "2048",
        "nameserver": "1.1.1.1 9.9.9.9",
        "net0": "name=eth0,bridge=vmbr0,ip=dhcp,type=veth",
        "mp0": "local:1,mp=/srv,backup=1",
        "description": "multi\nline",
    }
    with pytest.raises(FormatError, match="value must have a minimum value of 16"):
        conf.set("memory", 8)
    with pytest.raises(FormatError, match="property is not defined in schema"):
        conf.set("bogus", "1")
    conf.set("memory", None)
    assert "memory" not in conf


def test_mountpoint_objects_can_be_set_back() -> None:
    conf = parse_config(b"mp3: local:100/vm-100-disk-1.raw,mp=/data,size=1G\n", 100)
    (mp,) = conf.mountpoints()[0:1]
    conf.set("mp3", mp.replace(size=2 << 30, ro=True))
    assert conf.get_raw("mp3") == "local:100/vm-100-disk-1.raw,mp=/data,ro=1,size=2G"


def test_strict_mount_points_name_a_line_that_does_not_parse() -> None:
    text = b"rootfs: local:100/vm-100-disk-0.raw\nmp1: local:100/vm-100-disk-1.raw,mp=/d,x=1\n"
    conf = parse_config(text, 100)
    assert [mp.key for mp in conf.mountpoints()] == ["rootfs"]  # lenient: skipped
    with pytest.raises(ConfigError) as info:
        conf.mountpoints(strict=True)
    assert str(info.value) == (
        "vm 100 - unable to parse value of 'mp1' - format error (mp1.x: property is not defined"
        " in schema and the schema does not allow additional properties)"
    )
    assert [mp.key for mp in parse_config(text[:35], 100).mountpoints(strict=True)] == ["rootfs"]


def test_pending_delete_helpers() -> None:
    conf = parse_config(b"memory: 512\nswap: 1\n[pve:pending]\ndelete: swap;!memory  tty\n", 100)
    assert conf.pending_deletes() == {"swap": False, "memory": True, "tty": False}
    conf.add_pending_delete("cores", force=True)
    assert conf.pending.get_raw("delete") == "!cores,!memory,swap,tty"
    conf.remove_pending_delete("memory")
    assert conf.cleanup_pending() is True  # cores and tty are not set
    assert conf.pending.get_raw("delete") == "swap"
    conf.remove_pending_delete("swap")
    assert "delete" not in conf.pending
    assert conf.pending.is_empty()


def test_cleanup_drops_pending_values_equal_to_current() -> None:
    conf = parse_config(b"memory: 512\n[pve:pending]\nmemory: 512\ntty: 2\n", 100)
    conf.cleanup_pending()
    assert conf.pending.values == {"tty": "2"}


def test_merged_view() -> None:
    conf = parse_config((GOLDEN / "render" / "100-case16.conf").read_bytes(), 100)
    merged = conf.merged()
    assert merged.get("ostype") == "ubuntu"
    assert merged.get("tty") == 4
    assert "onboot" not in merged
    assert conf.get("ostype") == "debian"


def test_for_backup_drops_lock_snapshots_parent_pending() -> None:
    conf = parse_config((GOLDEN / "proxmox" / "200-nextcloud-snapshots.conf").read_bytes(), 200)
    conf.set("lock", "backup")
    conf.set_raw("unused0", "local-zfs:subvol-200-disk-0")  # still used by rootfs: dropped
    text = conf.for_backup().to_text()
    expected = (GOLDEN / "proxmox" / "200-nextcloud-snapshots.conf").read_text()
    main = expected.split("\n\n[", 1)[0] + "\n"
    assert text == main.replace("parent: after_update\n", "")
    assert conf.lock == "backup" and conf.snapshots  # the original is untouched


def test_for_backup_keeps_description_env_and_raw_lxc() -> None:
    conf = parse_config((GOLDEN / "proxmox" / "300-oci-nginx.conf").read_bytes(), 300)
    assert conf.for_backup().to_bytes() == (GOLDEN / "proxmox" / "300-oci-nginx.conf").read_bytes()


def test_snapshot_lookup() -> None:
    conf = parse_config((GOLDEN / "roundtrip" / "103-snapshots.conf").read_bytes(), 103)
    assert conf.snapshot("s2").get("parent") == "s1"
    assert conf.snapshot("s2").lxc == [("lxc.apparmor.profile", "unconfined")]
    with pytest.raises(NotFoundError, match="snapshot 'nope' does not exist"):
        conf.snapshot("nope")


def test_section_copy_is_deep() -> None:
    section = Section(100, {"memory": "512"}, [("lxc.a", "1")])
    dup = section.copy()
    dup.values["memory"] = "1"
    dup.lxc.append(("lxc.b", "2"))
    assert section.values == {"memory": "512"} and section.lxc == [("lxc.a", "1")]


def _setup_test_configs(text: str) -> list[str]:
    blocks = re.findall(r"Config \(`<id>\.conf`\):\n```\n(.*?)```", text, re.S)
    return [b for b in blocks if b.strip()]


def test_pve_container_setup_test_configs_parse_cleanly() -> None:
    """The configs of pve-container's setup tests: no warnings, stable after one rewrite."""
    text = reference_file("pve-container-setup-tests.md").read_text()
    configs = _setup_test_configs(text)
    assert len(configs) >= 20
    for body in configs:
        conf = parse_config(body.encode(), 100)
        assert conf.warnings == [], body
        first = conf.to_bytes()
        assert parse_config(first, 100).to_bytes() == first
        for key in conf.nets():
            assert conf.get(key)["name"].startswith("eth")
