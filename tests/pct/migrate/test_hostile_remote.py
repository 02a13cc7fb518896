"""A remote host is another machine: what it answers is untrusted input, like an archive or an
index. A remote that answers out of shape (a broken or foreign ctkit, or a hostile host) gets
one clear line from ``pct remote check`` and ``pct migrate``, never a traceback, never its
control characters on the admin's terminal, and the container stays as it was."""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import pytest

from pct.ops import migrate_link as link
from pct.ops.migrate_target import PROTOCOL
from shared.errors import CommandError
from tests.pct.conftest import Pct

from .conftest import Far
from .test_refusals import assert_untouched

pytestmark = pytest.mark.lxc

ESC = "\x1b]0;owned\x07\x1b[2J"
HELLO = {"ok": True, "ctkit": "x", "protocol": PROTOCOL}


class Liar:
    """A remote command that answers ``migrate-target info`` and the migration session with
    what the test wrote, whatever it is asked, and then ends: the far host's sshd runs it."""

    def __init__(self, pct: Pct, far: Far, tmp_path: Path) -> None:
        self.dir = tmp_path / "liar"
        self.dir.mkdir()
        self.dir.chmod(0o755)
        script = self.dir / "pct"
        script.write_text(
            "#!/bin/sh\n"
            f'd={self.dir}\ncase "$2" in\n'
            '  info) cat "$d/info.out"; cat "$d/info.err" >&2; exit "$(cat "$d/info.rc")";;\n'
            '  session) cat "$d/session.out"; exit 0;;\n'
            "esac\nexit 1\n"
        )
        script.chmod(0o755)
        self.answer(b"{}")
        self.session([])
        pct(
            "remote", "add", "liar", "--host", far.address, "--hostkey-file", far.hostkey,
            "--identity", far.identity, "--command", script,
        )  # fmt: skip

    def answer(self, out: bytes, err: bytes = b"", rc: int = 0) -> None:
        (self.dir / "info.out").write_bytes(out)
        (self.dir / "info.err").write_bytes(err)
        (self.dir / "info.rc").write_text(str(rc))

    def session(self, replies: list[Any]) -> None:
        lines = [r if isinstance(r, str) else json.dumps(r) for r in replies]
        (self.dir / "session.out").write_text("".join(f"{line}\n" for line in lines))


@pytest.fixture
def liar(pct: Pct, far: Far, tmp_path: Path) -> Liar:
    return Liar(pct, far, tmp_path)


@pytest.fixture
def ct(pct: Pct, vmid: int, busybox_template: Path) -> int:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    return vmid


def real_info(far: Far, vmid: int) -> dict[str, Any]:
    """What the far host's real ctkit answers for a migration of ``vmid`` to storage local."""
    proc = far.run_pct("migrate-target", "info", "--vmid", vmid, "--storages", "local")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert isinstance(info, dict) and info["storages"]["local"]["active"]
    return info


def one_clean_line(text: str) -> None:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert "Traceback" not in text, text
    assert not any(c in text for c in "\x1b\x07\x00"), repr(text)
    assert lines, text


def error_lines(err: str) -> list[str]:
    """The lines of an error, without the hint line some carry."""
    return [ln for ln in err.strip().splitlines() if not ln.startswith("hint: ")]


def unshaped(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The real answer, bent out of shape one field at a time."""
    local = info["storages"]["local"]

    def storage(**changes: Any) -> dict[str, Any]:
        return {**info, "storages": {"local": {**local, **changes}}}

    return [
        {**info, "storages": ["local"]},
        {**info, "storages": {"local": "yes"}},
        storage(avail="lots"),
        storage(avail=None),
        storage(avail=-1),
        storage(avail=1e308 * 10),
        storage(content="rootdir"),
        storage(type=["btrfs"]),
        storage(active="no"),
        {**info, "bridges": ["vmbr0"]},
        {**info, "vmid_free": "no"},
        {**info, "node": {"name": "far"}},
        {**info, "ctkit": 7},
        {key: value for key, value in info.items() if key != "node"},
        {**info, "storages": {"local": {k: v for k, v in local.items() if k != "type"}}},
    ]


def test_remote_check_and_migrate_refuse_an_answer_out_of_shape(
    pct: Pct, far: Far, liar: Liar, ct: int, ctroot: Path
) -> None:
    for bad in unshaped(real_info(far, ct)):
        liar.answer(json.dumps(bad).encode())
        for args in (("remote", "check", "liar", "--vmid", ct),
                     ("migrate", ct, "liar", "--target-storage", "local")):  # fmt: skip
            res = pct(*args, check=False)
            one_clean_line(res.text)
            assert res.rc == 11, (bad, res.text)
            assert res.err == "remote 'liar' did not answer like a ctkit host\n", (bad, res.text)
        assert_untouched(pct, far, ct, ctroot)


def test_the_text_of_a_remote_answer_reaches_the_terminal_escaped(
    pct: Pct, far: Far, liar: Liar, ct: int, ctroot: Path
) -> None:
    info = real_info(far, ct)
    shown = "\\x1b]0;owned\\x07\\x1b[2J"
    liar.answer(
        json.dumps(
            {**info, "node": f"far{ESC}", "storages": {f"s{ESC}": {"exists": False}}}
        ).encode()
    )
    res = pct("remote", "check", "liar", "--vmid", ct)
    one_clean_line(res.text)
    assert f"on node 'far{shown}' (compatible)" in res.out and f"storage s{shown}: ?" in res.out
    liar.answer(json.dumps({**info, "vmid_free": False, "node": f"far{ESC}"}).encode())
    res = pct("migrate", ct, "liar", "--target-storage", "local", check=False)
    one_clean_line(res.text)
    assert res.rc == 4 and f"target VMID is already in use on node 'far{shown}'" in res.err
    gone = {**info["storages"]["local"], "active": False, "error": f"gone{ESC}"}
    liar.answer(json.dumps({**info, "storages": {"local": gone}}).encode())
    res = pct("migrate", ct, "liar", "--target-storage", "local", check=False)
    one_clean_line(res.text)
    assert f"storage 'local' is not available on the target: gone{shown}" in res.err
    liar.answer(json.dumps({"ctkit": f"9{ESC}", "protocol": f"2{ESC}"}).encode())
    for args in (("remote", "check", "liar"), ("migrate", ct, "liar")):
        res = pct(*args, check=False)
        one_clean_line(res.text)
        assert res.rc == 11 and f"9{shown}" in res.err, res.text
    assert_untouched(pct, far, ct, ctroot)


@pytest.mark.parametrize(
    ("out", "err", "rc", "message"),
    [
        (b"[" * 200_000 + b"]" * 200_000, b"", 0, "did not answer like a ctkit host"),
        (b"x" * (8 << 20), b"", 0, "did not answer like a ctkit host"),
        (b"", f"no such storage{ESC}\n".encode(), 1, "no such storage\\x1b]0;owned\\x07"),
        (b"\xff\xfe{}", b"", 0, "did not answer like a ctkit host"),
    ],
)
def test_a_remote_answer_that_is_too_deep_too_long_or_escaping_is_one_line(
    pct: Pct, far: Far, liar: Liar, ct: int, ctroot: Path, out: bytes, err: bytes, rc: int,
    message: str,
) -> None:  # fmt: skip
    liar.answer(out, err, rc)
    for args in (("remote", "check", "liar"), ("migrate", ct, "liar", "--target-storage", "local")):
        res = pct(*args, check=False)
        one_clean_line(res.text)
        assert res.rc != 0 and message in res.err, res.text
        assert len(error_lines(res.err)) == 1, res.text
    assert_untouched(pct, far, ct, ctroot)


@pytest.mark.parametrize(
    "replies",
    [
        [HELLO, {"ok": True}],
        [HELLO, {"ok": True, "volid": ["local:1"]}],
        [HELLO, {"ok": True, "volid": f"local:{ESC}"}],
        [HELLO, {"ok": False, "error": f"full{ESC}"}],
        [HELLO, {"ok": False, "error": {"a": 1}}],
        [HELLO, {"ok": False, "error": "full\nmigration finished successfully"}],
        ["[" * 100_000],
        [{"ok": "yes"}],
        [{"ok": True, "ctkit": ESC, "protocol": ESC}, {"ok": True, "volid": "local:1"}],
    ],
)
def test_a_migration_session_that_answers_out_of_shape_leaves_the_ct_as_it_was(
    pct: Pct, far: Far, liar: Liar, ct: int, ctroot: Path, replies: list[Any]
) -> None:
    info = real_info(far, ct)
    liar.answer(json.dumps(info).encode())
    liar.session(replies)
    before = (ctroot / f"etc/pve/lxc/{ct}.conf").read_text()
    res = pct("migrate", ct, "liar", "--target-storage", "local", check=False)
    one_clean_line(res.text)
    assert res.rc != 0, res.text
    assert (ctroot / f"etc/pve/lxc/{ct}.conf").read_text() == before
    assert_untouched(pct, far, ct, ctroot)
    assert pct("status", ct).out == "status: stopped\n"
    # no line forged by the remote: its newline is shown escaped, within its own line
    assert not any(ln.startswith("migration finished") for ln in res.text.splitlines())
    assert os.path.exists(ctroot / f"var/lib/vz/images/{ct}")


def test_a_session_on_another_protocol_than_its_info_is_refused_before_any_request(
    pct: Pct, far: Far, liar: Liar, ct: int, ctroot: Path
) -> None:
    """The host answered ``info`` on this protocol, but its session greets on another (it was
    upgraded in between, or lies): nothing is asked of it, as if ``info`` had said so."""
    liar.answer(json.dumps(real_info(far, ct)).encode())
    liar.session([{**HELLO, "ctkit": "9.9", "protocol": PROTOCOL + 1}, {"ok": True}])
    res = pct("migrate", ct, "liar", "--target-storage", "local", check=False)
    assert res.rc == 11, res.text
    assert error_lines(res.err) == [
        f"remote ctkit 9.9 is not compatible (migration protocol {PROTOCOL + 1}, need {PROTOCOL})"
    ], res.err
    assert_untouched(pct, far, ct, ctroot)
    assert pct("status", ct).out == "status: stopped\n"


def test_a_remote_that_stops_answering_fails_the_request_in_time(
    pct: Pct, far: Far, liar: Liar
) -> None:
    """A session that greets and then says nothing, its connection open: the request fails
    after the reply timeout (the target's own idle timeout in real use; short here)."""
    from shared.remote import config as remotes

    (liar.dir / "session.out").write_text(json.dumps(HELLO) + "\n")
    script = (liar.dir / "pct").read_text()
    (liar.dir / "pct").write_text(
        script.replace('cat "$d/session.out"; exit 0', 'cat "$d/session.out"; sleep 60')
    )
    session = link.Session(remotes.get("liar"), 900, reply_timeout=2)
    try:
        assert session.hello["ok"] is True
        started = time.monotonic()
        with pytest.raises(CommandError, match="remote 'liar': no answer within 2 s"):
            session.request("ping")
        assert 1.9 < time.monotonic() - started < 10
    finally:
        session.proc.kill()
        session.close()


def test_a_receiver_that_never_gets_ready_fails_the_send_in_time(
    far: Far, liar: Liar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``recv-btrfs`` on the remote that never says ``ready``: the send fails after the
    target's idle timeout (short here), and the receiver is ended."""
    from shared.remote import config as remotes

    script = (liar.dir / "pct").read_text()
    (liar.dir / "pct").write_text(script.replace("esac\n", "  recv-btrfs) sleep 60;;\nesac\n"))
    monkeypatch.setattr(link, "IDLE_TIMEOUT", 2.0)
    receiver = link.open_receiver(remotes.get("liar"), ["900", "fbt:900/x", "s"])
    started = time.monotonic()
    with pytest.raises(CommandError, match="no word from the receiver in 2 s"):
        link.send_btrfs(["btrfs", "send", "snap"], receiver, None)
    assert 1.9 < time.monotonic() - started < 10
    assert receiver.wait(timeout=10) != 0


def test_a_receiver_that_stops_reading_or_an_rsync_that_stops_answering_fails_in_time(
    far: Far, liar: Liar, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A remote that takes the stream's start and then reads no more (btrfs), or never speaks
    rsync's protocol: each transfer fails once nothing moved for the target's idle timeout
    (short here)."""
    from shared.remote import config as remotes

    script = (liar.dir / "pct").read_text()
    stuck = "  recv-btrfs) echo ready; sleep 60;;\n  rsync) sleep 60;;\nesac\n"
    (liar.dir / "pct").write_text(script.replace("esac\n", stuck))
    monkeypatch.setattr(link, "IDLE_TIMEOUT", 2.0)
    remote = remotes.get("liar")
    receiver = link.open_receiver(remote, ["900", "fbt:900/x", "s"])
    started = time.monotonic()
    with pytest.raises(CommandError, match="nothing moved for 2 s"):
        link.send_btrfs(["head", "-c", "4000000000", "/dev/zero"], receiver, None)
    assert time.monotonic() - started < 30
    assert receiver.wait(timeout=10) != 0
    (tmp_path / "src").mkdir()
    (tmp_path / "src/file").write_bytes(b"x" * 4096)
    started = time.monotonic()
    with pytest.raises(CommandError, match=r"rsync of .* failed: exit code 30"):
        link.rsync(remote, tmp_path / "src", ["900", "local:900/x"], None)
    assert time.monotonic() - started < 30


def test_an_rsync_server_that_floods_its_messages_is_read_to_its_last_line(
    far: Far, liar: Liar, tmp_path: Path
) -> None:
    """200 MB of messages from the remote's side of rsync, then its complaint: only their end
    is kept (this process does not grow by them), and the complaint is the error's detail."""
    from shared.remote import config as remotes

    script = (liar.dir / "pct").read_text()
    flood = "head -c 200000000 /dev/zero | tr '\\0' x >&2; echo >&2; echo 'remote says no' >&2"
    (liar.dir / "pct").write_text(script.replace("esac\n", f"  rsync) {flood}; exit 1;;\nesac\n"))
    (tmp_path / "src").mkdir()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CommandError, match=r"failed: exit code 12 - remote says no$"):
        link.rsync(remotes.get("liar"), tmp_path / "src", ["900", "local:900/x"], None)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 50_000  # KiB
