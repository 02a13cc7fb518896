"""The remotes config: pinned host keys, strict parsing, the ssh command line it yields."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from shared.errors import ConfigError, NotFoundError, ParamError
from shared.formats.types import FormatError
from shared.remote import config as remotes
from shared.remote import ssh


@pytest.fixture
def hostkey(tmp_path: Path) -> str:
    key = tmp_path / "hk"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return (tmp_path / "hk.pub").read_text().strip()


def test_fingerprint_matches_ssh_keygen(hostkey: str, tmp_path: Path) -> None:
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / "hk.pub")], capture_output=True, text=True, check=True
    ).stdout
    assert remotes.fingerprint(hostkey) == out.split()[1]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ssh-ed25519",
        "ssh-dss AAAAB3NzaC1kc3M=",
        "ssh-ed25519 !!!",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5",
    ],
)
def test_bad_host_keys_are_refused(text: str) -> None:
    with pytest.raises(FormatError):
        remotes.parse_hostkey(text)


def test_round_trip_and_comment_dropped(ctroot: Path, hostkey: str) -> None:
    remotes.add(remotes.Remote("far", "198.18.0.2", hostkey, port=2222, root="/srv/r"))
    text = (ctroot / "etc/pve/ctkit-remotes.cfg").read_text()
    assert text.startswith("ssh: far\n\thost 198.18.0.2\n\tport 2222\n\tuser root\n")
    assert "root@" not in text.split("hostkey", 1)[1].splitlines()[0]  # the .pub comment
    got = remotes.get("far")
    assert (got.port, got.root, got.identity) == (2222, "/srv/r", None)
    with pytest.raises(ConfigError):
        remotes.add(remotes.Remote("far", "h", hostkey))
    remotes.remove("far")
    with pytest.raises(NotFoundError):
        remotes.get("far")


def test_a_damaged_file_is_an_error_not_a_partial_remote(ctroot: Path, hostkey: str) -> None:
    cfg = ctroot / "etc/pve/ctkit-remotes.cfg"
    cfg.parent.mkdir(parents=True)
    blob = base64.b64encode(b"\0\0\0\x0bssh-ed25519garbage").decode()
    cfg.write_text(f"ssh: far\n\thost h\n\thostkey ssh-ed25519 {blob}x\n")
    with pytest.raises(ConfigError):
        remotes.get("far")


def test_validate_reports_each_bad_field(hostkey: str) -> None:
    with pytest.raises(ParamError) as err:
        remotes.validate(remotes.Remote("9bad", "-oProxyCommand=x", hostkey, user="Root;"))
    assert set(err.value.errors) == {"name", "host", "user"}


def test_ssh_pins_the_key_and_quotes_the_remote_command(ctroot: Path, hostkey: str) -> None:
    remote = remotes.Remote(
        "far", "198.18.0.2", hostkey, identity="/k", command="/o/pct", root="/r 2"
    )
    argv = ssh.pct_argv(remote, ["migrate-target", "info", "--vmid", "100"])
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert "HostKeyAlias=ctkit-remote-far" in argv
    known = Path(argv[argv.index(next(a for a in argv if a.startswith("UserKnown")))].split("=")[1])
    assert known.read_text() == f"ctkit-remote-far {' '.join(hostkey.split()[:2])}\n"
    assert argv[-3:] == [
        "198.18.0.2",
        "--",
        "env 'CTKIT_ROOT=/r 2' /o/pct migrate-target info --vmid 100",
    ]


def test_hostkey_file_is_read_only_from_a_regular_file(hostkey: str, tmp_path: Path) -> None:
    """``--hostkey-file``: the key of a .pub file; a symlink, a FIFO (which would block the
    reader), a directory, an oversized or a missing file is one parameter error."""
    pub = tmp_path / "host.pub"
    pub.write_text(f"{hostkey} root@far\n")
    assert remotes.hostkey_from_file(pub) == f"{hostkey} root@far"
    link = tmp_path / "link.pub"
    link.symlink_to(pub)
    fifo = tmp_path / "fifo.pub"
    os.mkfifo(fifo)
    big = tmp_path / "big.pub"
    big.write_text("x" * (remotes.MAX_KEY_LEN + 1))
    for path, reason in [
        (link, "is not a regular file"),
        (fifo, "is not a regular file"),
        (tmp_path, "is not a regular file"),
        (big, "is too large for a host key"),
        (tmp_path / "missing.pub", "does not exist"),
    ]:
        with pytest.raises(ParamError) as err:
            remotes.hostkey_from_file(path)
        assert err.value.errors == {"hostkey-file": f"'{path}' {reason}"}
