"""The source's side of a migration whose commit answer was lost (the link cut in the commit):
the outcome the target gives when asked decides between finished, unknown and rolled back."""

from __future__ import annotations

import pytest

from pct.ops import migrate
from shared.errors import CtkitError
from shared.remote.config import Remote
from shared.runtime import migration


def _run(lines: list[str]) -> migrate.Run:
    remote = Remote("far", "198.18.0.2", "ssh-ed25519 AAAA")
    opts = migrate.Options("far")
    run = migrate.Run(900000001, 900000001, remote, True, opts, lines.append)
    run.phase = "committing"
    return run


def test_a_commit_the_target_confirms_finishes_the_migration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It exited 11 with the link's error although the container had moved: a script that
    retried read a migration that had happened as failed."""
    finished: list[int] = []
    monkeypatch.setattr(migration, "drop_snapshots", lambda *_a: None)
    monkeypatch.setattr(migration, "ask_outcome", lambda *_a: "committed")
    monkeypatch.setattr(migrate, "_finish_source", lambda run, _log: finished.append(run.vmid))
    lines: list[str] = []
    assert migrate._abort(_run(lines), CtkitError("Connection closed by remote host")) is True
    assert finished == [900000001]
    assert lines == [
        "WARN: the commit's answer was lost: Connection closed by remote host",
        "remote 'far' committed the migration - finishing it",
    ]


def test_an_unknown_outcome_is_no_success(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migration, "drop_snapshots", lambda *_a: None)
    monkeypatch.setattr(migration, "ask_outcome", lambda *_a: "unknown")
    lines: list[str] = []
    assert migrate._abort(_run(lines), CtkitError("cut")) is False
    assert lines[-1] == "ERROR: state on the target unknown - CT 900000001 left locked 'migrate'"
