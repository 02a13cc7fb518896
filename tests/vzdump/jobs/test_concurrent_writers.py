"""jobs.cfg's two writers - ``vzdump job ...`` (editing_jobs + write_jobs) and ``pct destroy
--purge`` (shared.jobrefs.remove_guest) - raced in two real processes: no edit may be lost."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from shared import jobrefs, paths
from vzdump.jobs import config

ROUNDS = 40
KEPT = 900000999
GUESTS = [900000001 + i for i in range(ROUNDS)]


def _add_jobs() -> None:
    for i in range(ROUNDS):
        with config.editing_jobs() as cfg:
            cfg.add(config.make_job(f"race-{i}", {"schedule": "daily", "vmid": str(KEPT)}))
            config.write_jobs(cfg)


def _remove_guests() -> None:
    for vmid in GUESTS:
        jobrefs.remove_guest(vmid)


def test_job_edits_and_guest_removal_lose_nothing(ctroot: Path) -> None:
    path = paths.jobs_cfg()
    path.parent.mkdir(parents=True)
    ids = ",".join(str(v) for v in [*GUESTS, KEPT])
    path.write_text(f"vzdump: shared\n\tschedule daily\n\tvmid {ids}\n")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_jobs), ctx.Process(target=_remove_guests)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    cfg = config.read_jobs(strict=True)
    assert sorted(s.id for s in cfg.sections) == sorted(
        ["shared", *(f"race-{i}" for i in range(ROUNDS))]
    )
    shared = cfg.get("shared")
    assert shared is not None and shared.props["vmid"] == str(KEPT)


def test_nested_transactions_do_not_deadlock(ctroot: Path) -> None:
    with config.editing_jobs() as cfg:
        cfg.add(config.make_job("nested", {"schedule": "daily", "all": "1"}))
        config.write_jobs(cfg)
        assert jobrefs.remove_guest(100) == []
    assert [s.id for s in config.read_jobs().sections] == ["nested"]
