"""The receiving side refuses data for volumes outside a live session and rsync options that
would make it read or write elsewhere."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pct.ops import migrate_target as target
from shared import owner
from shared.errors import CtkitError, StateError
from shared.runtime import migration


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--server", "--sender", "-logDtpr", ".", "x"],
        ["--server", "-logDtpr", "--log-file=/etc/x", ".", "x"],
        ["--server", "-logDtpr", "--link-dest=/root", ".", "x"],
        ["-logDtpr", ".", "x"],
        ["--server", "-logDtpr", "--bwlimit=1;x", ".", "x"],
        ["--server", "-logDtpr", "--bwlimit", ".", "x"],
        ["--server", "-logDtpr", "--timeout=-1", ".", "x"],
        ["--server", "-logDtpr", "--timeout=1x", ".", "x"],
    ],
)
def test_rsync_server_arguments_are_checked(args: list[str]) -> None:
    with pytest.raises(CtkitError):
        target._check_rsync_args(args)


def test_rsync_server_arguments_of_a_receiver_pass() -> None:
    args = ["--server", "-logDtprSe.iLsfxCIvu", "--numeric-ids", "--delete", ".", "/"]
    assert target._check_rsync_args(args) == args[:-1]
    # what rsync passes on for the source's --bwlimit
    limited = [*args[:4], "--bwlimit=1024", *args[4:]]
    assert target._check_rsync_args(limited) == limited[:-1]
    # and for its I/O timeout (a target that stops answering)
    timed = [*args[:4], "--timeout=600", *args[4:]]
    assert target._check_rsync_args(timed) == timed[:-1]


def test_data_needs_a_live_session_that_made_the_volume(ctroot: Path) -> None:
    volid = "local:900/subvol-900-disk-0.subvol"
    ready: list[bool] = []
    with pytest.raises(StateError, match="no migration into CT 900 in progress"):
        target.recv_btrfs(900, volid, "ctkit-migrate1", io.BytesIO(b""), lambda: ready.append(True))
    owner.write_record(migration.incoming_record(900), {"vmid": 900, "volumes": []})
    with pytest.raises(StateError, match="is not part of the migration"):
        target.recv_btrfs(900, volid, "ctkit-migrate1", io.BytesIO(b""), lambda: ready.append(True))
    with pytest.raises(CtkitError, match="unexpected snapshot name"):
        target.recv_btrfs(900, volid, "../x", io.BytesIO(b""), lambda: ready.append(True))
    assert not ready  # the source is told to send only for a valid request


def test_a_dead_sessions_reservation_is_rolled_back(ctroot: Path) -> None:
    rec = {"vmid": 901, "volumes": [], "pid": 1, "start": -1}
    path = migration.incoming_record(901)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rec))
    conf = ctroot / "etc/pve/lxc/901.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("lock: migrate\n")
    info = target.host_info(901, ["local"], [])
    assert info["vmid_free"] is True and not conf.exists() and not path.exists()
    assert info["protocol"] == target.PROTOCOL and info["storages"]["local"]["exists"]


def test_a_silent_source_is_given_up_and_a_pinging_one_is_not(ctroot: Path) -> None:
    conf = ctroot / "etc/pve/lxc/902.conf"
    r, w = os.pipe()
    out, logs = io.StringIO(), list[str]()
    os.write(w, b'{"op": "ping"}\n')
    with os.fdopen(r) as inp:
        target.serve(902, inp, out, logs.append, idle_timeout=0.5)
    os.close(w)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["ok"] for r in replies] == [True, True]  # the greeting and the ping
    assert len(logs) == 1 and logs[0].startswith("no word from the source for")
    assert not conf.exists() and not migration.incoming_record(902).exists()


def test_a_stream_that_ends_while_the_session_rolls_back_leaves_nothing(
    ctroot: Path, btrfs_storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the source died: its session and a receiver end at the same time on this side. A
    # receiver whose last check ("is the session still there?") ran while the rollback was
    # half done (what was received cleared, the record not yet removed) left its staging
    vmid = 903
    halfway, resume = threading.Event(), threading.Event()
    discard = migration.discard_received

    def paused_discard(volumes: object, log: Callable[[str], None]) -> None:
        discard(volumes, log)
        halfway.set()
        resume.wait(timeout=30)

    monkeypatch.setattr(migration, "discard_received", paused_discard)
    inp_r, inp_w = os.pipe()
    out_r, out_w = os.pipe()
    with os.fdopen(inp_r) as inp, os.fdopen(out_w, "w") as out, os.fdopen(out_r) as replies:
        session = threading.Thread(target=target.serve, args=(vmid, inp, out, lambda _m: None))
        session.start()
        assert json.loads(replies.readline())["ok"]
        req = {"op": "alloc", "storage": btrfs_storage, "format": "subvol", "size": 0}
        os.write(inp_w, json.dumps(req).encode() + b"\n")
        volid = json.loads(replies.readline())["volid"]
        errors: list[BaseException] = []

        def receive() -> None:
            try:
                with open(os.devnull, "rb") as empty:
                    target.recv_btrfs(vmid, volid, "ctkit-migrate1", empty, lambda: None)
            except CtkitError as err:
                errors.append(err)

        os.close(inp_w)  # the source went away
        assert halfway.wait(timeout=30)
        receiver = threading.Thread(target=receive)
        receiver.start()
        receiver.join(timeout=3)  # (a receiver that waits for the rollback stays)
        resume.set()
        receiver.join()
        session.join()
    assert errors and "btrfs receive" in str(errors[0])  # an empty stream
    assert not migration.incoming_record(vmid).exists()
    assert not (ctroot / f"mnt/bt/images/{vmid}").exists()


@pytest.mark.parametrize(
    "request_",
    [
        {"op": "alloc", "storage": "local", "format": "subvol", "size": 0, "uid": 0, "gid": "x"},
        {"op": "alloc", "storage": "local", "format": "subvol", "size": "1G"},
        {"op": "alloc", "storage": "local", "format": "subvol", "size": True},
        {"op": "alloc", "storage": ["local"], "format": "subvol", "size": 0},
        {"op": "alloc"},
        {"op": "commit"},
        {"op": "commit", "config": 7},
        {"op": "commit", "config": "arch: amd64\n", "btrfs": [["a", "b"]]},
        {"op": "commit", "config": "arch: amd64\n", "start": "yes"},
    ],
)
def test_a_malformed_request_is_answered_with_an_error_and_the_session_goes_on(
    ctroot: Path, request_: dict[str, object]
) -> None:
    """A request whose fields have other types than the protocol's: an error reply (a commit's
    ends the session, as any failed commit does), never a crash, and nothing is left."""
    conf = ctroot / "etc/pve/lxc/904.conf"
    r, w = os.pipe()
    out, logs = io.StringIO(), list[str]()
    os.write(w, (json.dumps(request_) + '\n{"op": "ping"}\n').encode())
    os.close(w)
    with os.fdopen(r) as inp:
        target.serve(904, inp, out, logs.append, idle_timeout=5)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert replies[1]["ok"] is False and "malformed request" in replies[1]["error"], replies
    assert [r["ok"] for r in replies[2:]] == ([] if request_["op"] == "commit" else [True])
    assert not conf.exists() and not migration.incoming_record(904).exists()


@pytest.mark.parametrize("acked", [True, False])
def test_a_commit_whose_answer_was_not_acknowledged_is_noted_by_its_token(
    ctroot: Path, acked: bool
) -> None:
    """A source that acknowledges the commit's answer will never ask about it: no note. One
    that went away after its commit (the answer may be lost) can ask by the token later."""
    token = "0123456789abcdef0123456789abcdef"
    r, w = os.pipe()
    out = io.StringIO()
    commit = {"op": "commit", "config": "arch: amd64\n", "token": token}
    os.write(w, (json.dumps(commit) + "\n" + ('{"op": "ack"}\n' if acked else "")).encode())
    os.close(w)
    with os.fdopen(r) as inp:
        target.serve(905, inp, out, print, idle_timeout=5)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["ok"] for r in replies] == [True, True] + ([True] if acked else [])
    assert "lock:" not in (ctroot / "etc/pve/lxc/905.conf").read_text()  # committed, unlocked
    assert not migration.incoming_record(905).exists()
    assert migration.done_record(905).exists() is not acked
    expected = "none" if acked else "committed"
    assert migration.commit_outcome(905, token, print) == expected
