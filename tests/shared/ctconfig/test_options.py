"""The option schema: strict command-line validation with Proxmox's messages."""

from __future__ import annotations

import os

import pytest

from shared.ctconfig.options import (
    FormatError,
    PropertyStringError,
    format_option,
    is_settable,
    load_option,
    option_exists,
    param_errors,
    parse_option,
)


def _details(key: str, raw: str) -> dict[str, str]:
    with pytest.raises(PropertyStringError) as info:
        parse_option(key, raw)
    return info.value.details


def test_indexed_key_ranges() -> None:
    for key in ("mp0", "mp255", "net0", "net31", "dev255", "unused255", "rootfs", "env"):
        assert option_exists(key), key
    for key in ("mp256", "net32", "dev256", "unused256", "mp01", "net", "foo", "lxc", "digest"):
        assert not option_exists(key), key
    assert not is_settable("parent") and not is_settable("snaptime")
    assert is_settable("memory") and is_settable("mp7")


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        ("memory", "8", "value must have a minimum value of 16"),
        ("memory", "x", "type check ('integer') failed - got 'x'"),
        ("cores", "8193", "value must have a maximum value of 8192"),
        ("tty", "7", "value must have a maximum value of 6"),
        ("cpulimit", "-1", "value must have a minimum value of 0"),
        ("cpulimit", "abc", "type check ('number') failed - got 'abc'"),
        ("onboot", "maybe", "type check ('boolean') failed - got 'maybe'"),
        (
            "ostype",
            "windows",
            "value 'windows' does not have a value in the enumeration 'debian, devuan, ubuntu, "
            "centos, fedora, opensuse, archlinux, alpine, gentoo, nixos, unmanaged'",
        ),
        (
            "arch",
            "mips",
            "value 'mips' does not have a value in the enumeration "
            "'amd64, i386, arm64, armhf, riscv32, riscv64'",
        ),
        ("cmode", "x", "value 'x' does not have a value in the enumeration 'shell, console, tty'"),
        ("hostname", "bad_name", "invalid format - value does not look like a valid DNS name"),
        ("hostname", "a" * 256, "value may only be 255 characters long"),
        ("description", "x" * 8193, "value may only be 8192 characters long"),
        (
            "nameserver",
            "1.1.1.1,999.1.1.1",
            "invalid format - value does not look like a valid IP address",
        ),
        ("nameserver", "fe80::1%", "invalid format - value does not look like a valid IP address"),
        (
            "searchdomain",
            "a.example,-bad",
            "invalid format - value does not look like a valid DNS name",
        ),
        ("timezone", "Mars/Olympus", "invalid format - invalid time zone 'Mars/Olympus'"),
        ("hookscript", "hook.sh", "invalid format - unable to parse volume ID 'hook.sh'"),
        ("tags", "ok;b@d", "invalid format - invalid characters in tag"),
        # Unicode case folding took these for letters; lower-cased, "İ" became "i" and a
        # combining dot, which the check then refused on every read of the config
        ("tags", "İstanbul", "invalid format - invalid characters in tag"),
        ("tags", "ſtore", "invalid format - invalid characters in tag"),
        ("hookscript", "ſtore:snippets/x.sh", "invalid format - unable to parse volume ID"),
        ("startup", "first", "invalid format - unable to parse startup options"),
        # int() refuses 4300 digits: a ValueError and a traceback, where a range says no
        ("memory", "9" * 5000, "value must have a maximum value of 4398046511103"),
        ("memory", "-" + "9" * 5000, "value must have a minimum value of 16"),
        ("startup", "9" * 5000, "invalid format - unable to parse startup options"),
        ("startup", "up=" + "9" * 5000, "invalid format - unable to parse startup options"),
        ("entrypoint", "/bin/sh\x01", "value does not match the regex pattern"),
        ("env", "NO_EQUALS", "value does not match the regex pattern"),
        ("lock", "frozen", "value 'frozen' does not have a value in the enumeration"),
        ("hostname", "a\nb", "property contains a line feed"),
        ("bogus", "1", "property is not defined in schema and the schema does not allow"),
    ],
)
def test_scalar_messages(key: str, raw: str, message: str) -> None:
    with pytest.raises(FormatError) as info:
        parse_option(key, raw)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("key", "raw", "value"),
    [
        ("memory", "16", 16),
        ("onboot", "on", True),
        ("console", "no", False),
        ("cpulimit", "0.5", 0.5),
        ("nameserver", "1.1.1.1,9.9.9.9 fe80::1%vmbr0", ["1.1.1.1", "9.9.9.9", "fe80::1%vmbr0"]),
        ("searchdomain", "a.example;b", ["a.example", "b"]),
        ("tags", "Web;db,web", ["db", "web"]),
        ("timezone", "host", "host"),
        ("timezone", "Europe/Vienna", "Europe/Vienna"),
        ("startup", "order=1,up=5", {"order": 1, "up": 5}),
        ("startup", "3", {"order": 3}),
        ("env", "A=1\0B=two words", ["A=1", "B=two words"]),
        ("description", "two\nlines", "two\nlines"),
        ("entrypoint", "/bin/sh -c 'x;\ty'", "/bin/sh -c 'x;\ty'"),
        ("hookscript", "local:snippets/hook.pl", "local:snippets/hook.pl"),
    ],
)
def test_scalar_values(key: str, raw: str, value: object) -> None:
    assert parse_option(key, raw) == value


def test_canonical_text() -> None:
    assert format_option("nameserver", ["1.1.1.1", "9.9.9.9"]) == "1.1.1.1 9.9.9.9"
    assert format_option("tags", ["B", "a", "b"]) == "a;b"
    assert format_option("onboot", True) == "1"
    assert format_option("onboot", "yes") == "1"
    assert format_option("cpulimit", 2.0) == "2"
    assert format_option("startup", {"down": 1, "order": 2}) == "order=2,down=1"
    assert format_option("env", ["A=1", "B=2"]) == "A=1\0B=2"
    assert format_option("unknown", 5) == "5"


def test_mount_point_property_strings() -> None:
    data = parse_option("mp0", "local:8,mp=/srv/data,backup=1,size=8G,mountoptions=noatime;nosuid")
    assert data == {
        "volume": "local:8",
        "mp": "/srv/data",
        "backup": True,
        "size": 8 << 30,
        "mountoptions": "noatime;nosuid",
    }
    assert format_option("mp0", data) == (
        "local:8,mp=/srv/data,backup=1,mountoptions=noatime;nosuid,size=8G"
    )
    assert format_option("rootfs", {"volume": "local:100/x.raw", "size": 0}) == (
        "local:100/x.raw,size=0T"
    )
    assert format_option("rootfs", {"volume": "v:x", "size": 1234}) == "v:x,size=1234"


@pytest.mark.parametrize("path", ["/a/./b", "/a/../b", "/a/.", "/a/..", "../a", "/.", ".."])
def test_mount_point_path_rules(path: str) -> None:
    details = _details("mp0", f"local:1,mp={path}")
    assert details == {"mp": f"invalid format - {path} contains illegal character sequences"}


def test_mount_point_path_is_below_the_root_and_printable() -> None:
    assert _details("mp0", "local:1,mp=/") == {"mp": "invalid format - / is the container's root"}
    assert _details("mp0", "local:1,mp=/srv/\x1b[2Jx") == {
        "mp": "invalid format - the path contains control characters"
    }


def test_mount_point_volume_rules_and_missing_mp() -> None:
    assert _details("mp1", "/srv/../etc,mp=/x") == {
        "volume": "invalid format - /srv/../etc contains illegal character sequences"
    }
    assert _details("mp1", "local:1") == {"mp": "property is missing and it is not optional"}
    assert parse_option("mp1", "/a/..b,mp=/x/.y")["volume"] == "/a/..b"


def test_mount_point_sub_option_checks() -> None:
    assert _details("mp0", "l:1,mp=/a,mountoptions=noatime;sync") == {
        "mountoptions": "value does not match the regex pattern"
    }
    assert _details("rootfs", "l:1,idmap=u:0:100000") == {
        "idmap": "invalid format - invalid idmap entry 'u:0:100000'"
    }
    assert _details("rootfs", "l:1,size=big") == {
        "size": "invalid format - value 'big' does not look like a valid disk size"
    }
    assert _details("rootfs", "l:1,backup=1") == {
        "backup": (
            "property is not defined in schema and the schema does not allow additional properties"
        )
    }
    assert parse_option("rootfs", "l:1,idmap=passthrough")["idmap"] == "passthrough"
    assert parse_option("mp0", "l:1,mp=/a,idmap=u:0:1:2;g:0:1:2,keepattrs=1")["keepattrs"]


def test_network_property_strings() -> None:
    raw = "name=eth0,bridge=vmbr0,ip=dhcp,ip6=auto,hwaddr=bc:24:11:00:00:01,tag=5,mtu=9000"
    assert format_option("net0", parse_option("net0", raw)) == (
        "name=eth0,bridge=vmbr0,hwaddr=bc:24:11:00:00:01,ip=dhcp,ip6=auto,mtu=9000,tag=5"
    )
    assert _details("net0", "bridge=vmbr0") == {
        "name": "property is missing and it is not optional"
    }
    assert _details("net0", "name=eth0,hwaddr=01:00:00:00:00:01") == {
        "hwaddr": "invalid format - value does not look like a valid unicast MAC address"
    }
    assert _details("net0", "name=eth0,ip=10.0.0.1") == {
        "ip": "invalid format - value does not look like a valid ipv4 network configuration"
    }
    for prefix in ("\u00b2", "2\u00b3", "1" * 5000):  # int() raised ValueError: a traceback
        assert _details("net0", f"name=eth0,ip=10.0.0.1/{prefix}") == {
            "ip": "invalid format - value does not look like a valid ipv4 network configuration"
        }
    assert _details("net0", "name=eth0,ip6=fe80::1/129") == {
        "ip6": "invalid format - value does not look like a valid ipv6 network configuration"
    }
    assert _details("net0", "name=eth0,gw=10.0.0.256") == {
        "gw": "invalid format - value does not look like a valid IPv4 address"
    }
    assert _details("net0", "name=eth0,mtu=63,tag=4095,type=macvlan,trunks=1;x") == {
        "mtu": "value must have a minimum value of 64",
        "tag": "value must have a maximum value of 4094",
        "type": "value 'macvlan' does not have a value in the enumeration 'veth'",
        "trunks": "value does not match the regex pattern",
    }
    assert parse_option("net0", "name=eth0,ip=10.0.0.5/24,gw6=2001:db8::1,host-managed=1")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("/tmp/null", "invalid format - /tmp/null is not a valid device path"),
        ("/dev/../etc/passwd", "invalid format - /dev/../etc/passwd is not a valid device path"),
        ("/dev/./null", "invalid format - /dev/./null is not a valid device path"),
        ("/dev/x/..", "invalid format - /dev/x/.. is not a valid device path"),
    ],
)
def test_device_path_rules(raw: str, message: str) -> None:
    assert _details("dev0", raw) == {"path": message}


def test_device_sub_options() -> None:
    assert parse_option("dev3", "path=/dev/null,mode=0660,uid=0,gid=5,deny-write=1") == {
        "path": "/dev/null",
        "mode": "0660",
        "uid": 0,
        "gid": 5,
        "deny-write": True,
    }
    assert _details("dev0", "/dev/null,mode=660,uid=-1") == {
        "mode": "value does not match the regex pattern",
        "uid": "value must have a minimum value of 0",
    }


def test_features() -> None:
    assert format_option("features", parse_option("features", "nesting=1,keyctl=yes")) == (
        "keyctl=1,nesting=1"
    )
    assert _details("features", "nesting=2,mount=nfs,") == {
        "nesting": "type check ('boolean') failed - got '2'"
    }
    assert _details("features", "mount=nfs|cifs") == {
        "mount": "value does not match the regex pattern"
    }


def test_param_errors_flattens_property_string_details() -> None:
    with pytest.raises(FormatError) as info:
        parse_option("net0", "name=eth0,tag=0")
    assert param_errors("net0", info.value) == {
        "net0": "invalid format - format error",
        "net0.tag": "value must have a minimum value of 1",
    }
    with pytest.raises(FormatError) as info2:
        parse_option("memory", "1")
    assert param_errors("memory", info2.value) == {
        "memory": "value must have a minimum value of 16"
    }


def test_load_option_is_check_type() -> None:
    assert load_option("memory", "0010") == "10"
    assert load_option("memory", "1") == "1"  # no range check when reading a file
    assert load_option("cpulimit", "0.50") == "0.50"
    assert load_option("onboot", "Yes") == "1"
    assert load_option("ostype", "whatever") == "whatever"
    assert load_option("hostname", "web") == "web"
    # formatted values are checked but kept as written, as Proxmox's check_type does; only
    # a value set through pct set is printed canonically
    assert load_option("nameserver", "1.1.1.1;8.8.8.8") == "1.1.1.1;8.8.8.8"
    assert load_option("net0", "name=eth0,bridge=vmbr0") == "name=eth0,bridge=vmbr0"
    with pytest.raises(FormatError, match=r"^unknown setting 'foo'$"):
        load_option("foo", "bar")
    with pytest.raises(FormatError, match=r"^type check \('integer'\) failed - got '-5'$"):
        load_option("swap", "-5")
    with pytest.raises(FormatError, match=r"^value does not look like a valid DNS name$"):
        load_option("hostname", "a b")
    with pytest.raises(FormatError, match=r"^format error\nmp0\.mp: property is missing"):
        load_option("mp0", "local:1")


def test_a_kept_load_answers_as_the_first_and_errors_stay_errors() -> None:
    """Loaded values are kept for the next config read: the same answer, and a bad value fails
    on every read (a kept error would have let the second read of a broken line pass)."""
    load_option.cache_clear()
    for _ in range(3):
        assert load_option("memory", "0010") == "10"
        assert load_option("onboot", "Yes") == "1"
        with pytest.raises(FormatError, match=r"^type check \('integer'\) failed - got '-5'$"):
            load_option("swap", "-5")
        with pytest.raises(FormatError, match=r"^unknown setting 'foo'$"):
            load_option("foo", "bar")
    info = load_option.cache_info()
    assert (info.hits, info.misses) == (4, 8)  # the two good values are kept, no error is


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("entrypoint", b"/sbin/init\x85"),
        ("env", b"A=\x85"),
        ("nameserver", b"fe80::1%\xff"),
        ("mp2", b"local:0,mp=/d\xff"),
        ("hostname", b"ct\xc3"),
    ],
)
def test_a_value_that_is_no_utf8_is_refused(key: str, raw: bytes) -> None:
    """Such bytes reach the command line's strings as surrogates: stored, they made a config
    that every later command refused to read ('line N is not valid UTF-8')."""
    with pytest.raises(FormatError, match="not valid UTF-8"):
        parse_option(key, os.fsdecode(raw))


@pytest.mark.parametrize("key", ["uid", "gid"])
def test_a_device_owner_beyond_uid_t_is_refused(key: str) -> None:
    """It passed pct set and broke the next start with a traceback in the pre-start hook."""
    with pytest.raises(FormatError):
        parse_option("dev0", f"/dev/null,{key}=4294967295")
    assert parse_option("dev0", f"/dev/null,{key}=4294967294")[key] == 4294967294
