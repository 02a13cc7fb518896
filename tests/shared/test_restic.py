"""The restic driver: secrets and messages (fast), then real remote repositories: SFTP through
a real sshd on 127.0.0.1 (own host and user keys, a known_hosts the test writes) and REST through
``rclone serve restic`` on 127.0.0.1, each with a backup and a restore of a real container."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared import restic
from shared.errors import ConfigError, LockError
from tests.ports import free_port
from tests.vzdump.engine.conftest import CT, Host, run, vzdump
from tests.vzdump.engine.test_restic import PASSWORD, listing

REPO = Path(__file__).resolve().parents[2]

BIN = Path(__file__).resolve().parents[2] / ".venv/bin"


def _repo(tmp_path: Path, repository: str = "/x") -> restic.Repo:
    pw = tmp_path / "pw"
    pw.write_text("pw\n")
    return restic.Repo("s1", repository, pw, tmp_path / "env")


def test_environment_only_and_reserved_names(tmp_path: Path, ctroot: Path) -> None:
    """(Under a root of its own: restic's cache directory is made below it.)"""
    repo = _repo(tmp_path, "rest:http://127.0.0.1:8000/")
    (tmp_path / "env").write_text(
        "# creds\nexport AWS_ACCESS_KEY_ID=AKIA\nRESTIC_REST_USERNAME=u s\n"
        "RESTIC_REST_PASSWORD='p@ss'\n"
    )
    env = repo.environment()
    assert env["RESTIC_PASSWORD_FILE"] == str(tmp_path / "pw") and "RESTIC_PASSWORD" not in env
    assert env["AWS_ACCESS_KEY_ID"] == "AKIA"
    assert env["RESTIC_REPOSITORY"] == "rest:http://u%20s:p%40ss@127.0.0.1:8000/"
    for line in ("RESTIC_PASSWORD=x", "RESTIC_REPOSITORY=/y", "LD_PRELOAD=/z", "bad line"):
        (tmp_path / "env").write_text(line + "\n")
        with pytest.raises(ConfigError):
            repo.environment()


def test_failure_lines_are_one_line_and_redacted(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    text = 'Fatal: unable to open config: Head "http://u:secret@h/config": dial tcp: refused\n'
    err = restic.failure(repo, text, 1)
    assert "secret" not in str(err) and "not reachable" in str(err) and "\n" not in str(err)
    err = restic.failure(repo, "repo already locked\nFatal: repository is already locked by "
                         "PID 1 on h by root\n", 1)  # fmt: skip
    assert isinstance(err, LockError) and "vzdump storage unlock s1" in (err.hint or "")


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


@contextlib.contextmanager
def running(argv: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def rhost(ctroot: Path, busybox_template: Path, new_vmid: Callable[[], int]) -> Iterator[Host]:
    from shared.testbed import stop_containers

    yield Host(ctroot, busybox_template, new_vmid)
    stop_containers(ctroot)


def _round_trip(rhost: Host, sid: str) -> None:
    ct = rhost.create(unprivileged=False)
    ct.write("srv/file.txt", b"remote")
    res = vzdump(str(ct.vmid), "--storage", sid)
    assert res.rc == 0, res.err
    (volid,) = [str(r["volid"]) for r in listing(sid) if r["vmid"] == ct.vmid]
    new = rhost.new_vmid()
    res = run([str(BIN / "pct"), "restore", str(new), volid, "--storage", "local"])
    assert res.rc == 0, res.err
    assert (CT(new, rhost.root, False).volume() / "srv/file.txt").read_bytes() == b"remote"


@pytest.mark.lxc
def test_sftp_repository(rhost: Host) -> None:
    keys = rhost.root / "ssh"
    keys.mkdir(mode=0o700)
    for name in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
                       check=True)  # fmt: skip
    (keys / "authorized_keys").write_text((keys / "user.pub").read_text())
    port = free_port()
    (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {(keys / 'host.pub').read_text()}")
    (keys / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nStrictModes no\nUsePAM no\n"
        f"PidFile {keys / 'sshd.pid'}\nSubsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    ssh = (f"ssh -p {port} -i {keys / 'user'} -o UserKnownHostsFile={keys / 'known_hosts'} "
           "-o StrictHostKeyChecking=yes -o BatchMode=yes root@127.0.0.1 -s sftp")  # fmt: skip
    pw = rhost.root / "pw.txt"
    pw.write_text(PASSWORD + "\n")
    with running(["/usr/sbin/sshd", "-D", "-e", "-f", str(keys / "sshd_config")], port):
        res = vzdump("storage", "add", "restic", "viasftp", "--repository",
                     f"sftp:root@127.0.0.1:{rhost.root / 'sftprepo'}", "--sftp-command", ssh,
                     "--password-file", str(pw), "--init")  # fmt: skip
        assert res.rc == 0, res.err
        assert (rhost.root / "sftprepo/config").is_file()
        # this node's key went over SFTP, by the storage's sftp-command, as restic's files go
        record = json.loads((rhost.root / "etc/pve/priv/storage/viasftp.key.json").read_text())
        key = rhost.root / "sftprepo/keys" / record["key"]
        assert key.is_file() and key.stat().st_mode & 0o777 == 0o400
        assert not [p for p in key.parent.iterdir() if "-temp-" in p.name]
        _round_trip(rhost, "viasftp")
        # a host key that does not match: refused by ssh, one line
        (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {(keys / 'user.pub').read_text()}")
        res = vzdump("list", "viasftp")
        assert res.rc != 0 and len(res.lines) == 1 and "not reachable" in res.err, res.err
        # the storage removed: this node's key is taken out of the repository over SFTP
        (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {(keys / 'host.pub').read_text()}")
        res = vzdump("storage", "remove", "viasftp")
        assert res.rc == 0, res.err
        assert not key.exists() and len(list(key.parent.iterdir())) == 1


@pytest.mark.lxc
def test_rest_repository_via_rclone(rhost: Host) -> None:
    port = free_port()
    data = rhost.root / "restdata"
    data.mkdir()
    env = rhost.root / "rest.env"
    env.write_text("RESTIC_REST_USERNAME=backup\nRESTIC_REST_PASSWORD=s3cr3t-rest\n")
    pw = rhost.root / "pw.txt"
    pw.write_text(PASSWORD + "\n")
    argv = ["rclone", "serve", "restic", "--addr", f"127.0.0.1:{port}", "--user", "backup",
            "--pass", "s3cr3t-rest", str(data)]  # fmt: skip
    with running(argv, port):
        res = vzdump("storage", "add", "restic", "viarest", "--repository",
                     f"rest:http://127.0.0.1:{port}/", "--env-file", str(env),
                     "--password-file", str(pw), "--init")  # fmt: skip
        assert res.rc == 0, res.err
        cfg = (rhost.root / "etc/pve/storage.cfg").read_text()
        assert "s3cr3t" not in cfg and PASSWORD not in cfg
        stored = rhost.root / "etc/pve/priv/storage/viarest.env"
        assert stored.stat().st_mode & 0o777 == 0o600
        # this node's key went to the server by the REST protocol, and is what restic uses
        record = json.loads((stored.parent / "viarest.key.json").read_text())
        assert (data / "keys" / record["key"]).is_file()
        _round_trip(rhost, "viarest")
        assert os.listdir(data)  # the data went to the server
        # wrong credentials: one line, nothing secret in it
        stored.write_text("RESTIC_REST_USERNAME=backup\nRESTIC_REST_PASSWORD=wrong\n")
        res = vzdump("list", "viarest")
        assert res.rc != 0 and len(res.lines) == 1 and "wrong" not in res.err, res.err
        # the storage removed: this node's key is taken out of the repository (REST DELETE)
        stored.write_text(env.read_text())
        res = vzdump("storage", "remove", "viarest")
        assert res.rc == 0, res.err
        assert not (data / "keys" / record["key"]).exists()
        assert len(list((data / "keys").iterdir())) == 1


RESTIC_WAITING = """
import os, sys
from shared import restic
from shared.storage.config import load_config

print(os.getpid(), flush=True)
restic.run(load_config().storage("offsite").repo, ["backup", "--stdin"], stdin=sys.stdin.buffer)
"""


def test_restic_ends_with_the_command_that_runs_it(restic_store: object) -> None:
    """A prune of a killed vzdump ran on, holding the repository's exclusive lock, and the
    backups that came meanwhile failed: restic dies with the process that runs it."""

    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", RESTIC_WAITING], stdin=read,
                            stdout=subprocess.PIPE, text=True, cwd=REPO)  # fmt: skip
    os.close(read)
    try:
        assert proc.stdout is not None
        parent = int(proc.stdout.readline())
        deadline = time.monotonic() + 30
        child = None
        while child is None:  # restic, waiting for its standard input that never ends
            assert time.monotonic() < deadline and proc.poll() is None
            for entry in Path("/proc").iterdir():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    cmd = (entry / "cmdline").read_bytes().split(b"\0")[0]
                    if int(stat[1]) == parent and cmd.endswith(b"restic"):
                        child = int(entry.name)
            time.sleep(0.02)
        os.kill(parent, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists():
            assert time.monotonic() < deadline, "restic runs on without the command"
            time.sleep(0.05)
    finally:
        os.close(write)
        proc.kill()
        proc.wait()
