"""JobResult/GuestResult: status, totals and the documented JSON schema."""

from __future__ import annotations

import json

import pytest

from vzdump.report import GuestResult, JobResult


def guest(vmid: int, status: str = "ok", size: int | None = 1000) -> GuestResult:
    return GuestResult(vmid=vmid, name=f"ct{vmid}", status=status, seconds=1.6, size=size)


def test_ok_needs_every_guest_ok_and_no_job_error() -> None:
    assert JobResult("j", "vzdump 100", 0, 1, [guest(100), guest(101)]).ok
    assert JobResult("j", "vzdump", 0, 1, []).ok  # nothing to back up is not a failure
    assert not JobResult("j", "vzdump 100", 0, 1, [guest(100), guest(101, "err", None)]).ok
    assert not JobResult("j", "vzdump 100", 0, 1, [guest(100)], error="hook failed").ok


def test_totals_count_only_successful_guests() -> None:
    result = JobResult(
        None,
        "vzdump 100 101 102",
        100.0,
        160.4,
        [guest(100, size=5), guest(101, "err", size=7), guest(102, size=None)],
    )
    assert result.total_size == 5
    assert result.duration == pytest.approx(60.4)
    assert [g.vmid for g in result.guests if not g.ok] == [101]


def test_guest_status_is_checked() -> None:
    with pytest.raises(ValueError, match="'ok' or 'err'"):
        guest(100, status="failed")


def test_json_schema() -> None:
    result = JobResult(
        job_id="backup-1",
        cmdline="vzdump 100 101 --mode stop",
        started=1704502801.2,
        finished=1704502816.7,
        guests=[
            GuestResult(
                100,
                "web",
                "ok",
                14.4,
                4096,
                "/d/vzdump-lxc-100.tar",
                None,
                ["a"],
                started=1704502802.4,
                finished=1704502816.8,
            ),
            GuestResult(101, "db", "err", 0.6, None, None, "CT is locked (migrate)", ["b"]),
        ],
        job_log=["INFO: starting new backup job: vzdump 100 101 --mode stop"],
        error=None,
        job_log_end=["INFO: Backup job finished with errors"],
    )
    data = json.loads(result.to_json())
    assert list(data) == [
        "version",
        "job-id",
        "cmdline",
        "started",
        "finished",
        "duration",
        "status",
        "error",
        "total-size",
        "guests",
        "job-log",
        "job-log-end",
    ]
    assert data["version"] == 1
    assert (data["started"], data["finished"], data["duration"]) == (1704502801, 1704502817, 16)
    assert (data["status"], data["error"], data["total-size"]) == ("failed", None, 4096)
    assert data["guests"][0] == {
        "vmid": 100,
        "name": "web",
        "status": "ok",
        "seconds": 14,
        "started": 1704502802,
        "finished": 1704502817,
        "size": 4096,
        "filename": "/d/vzdump-lxc-100.tar",
        "error": None,
        "log": ["a"],
    }
    assert data["guests"][1]["error"] == "CT is locked (migrate)"
    assert data["guests"][1]["started"] is None  # a guest that never started has no times
    assert data["job-log-end"] == ["INFO: Backup job finished with errors"]

    short = json.loads(result.to_json(logs=False))
    assert "job-log" not in short and "log" not in short["guests"][0]
    # stable: the same result always gives the same text
    assert result.to_json() == result.to_json()
