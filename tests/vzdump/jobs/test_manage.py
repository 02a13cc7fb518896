"""The job edits and listing behind ``vzdump job ...``, called from Python."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from shared import paths
from shared.errors import AlreadyExistsError, NotFoundError, ParamError
from vzdump.jobs import config, manage

NOW = dt.datetime(2030, 1, 5, 10, 0, tzinfo=dt.UTC)


def test_add_set_list_remove(ctroot: Path) -> None:
    manage.add_job("nightly", {"schedule": "02:00", "vmid": "100", "comment": "x"}, NOW)
    with pytest.raises(AlreadyExistsError):
        manage.add_job("nightly", {"schedule": "02:00", "all": "1"}, NOW)
    manage.set_job("nightly", {"mode": "stop"}, delete=["comment"], now=NOW)
    job = config.read_jobs(strict=True).get("nightly")
    assert job is not None and job.props == {"schedule": "02:00", "vmid": "100", "mode": "stop"}
    (row,) = manage.job_rows(NOW)
    assert (row["id"], row["enabled"], row["next-run"]) == ("nightly", 1, 1893895200)
    manage.remove_job("nightly")
    assert "nightly" not in paths.jobs_cfg().read_text()
    with pytest.raises(NotFoundError):
        manage.remove_job("nightly")


def test_validation_names_each_parameter(ctroot: Path) -> None:
    with pytest.raises(ParamError) as err:
        manage.add_job("1bad", {}, NOW)
    assert set(err.value.errors) == {"id", "schedule"}
    with pytest.raises(ParamError) as err:
        manage.add_job("job", {"schedule": "daily"}, NOW)
    assert "vmid" in err.value.errors


def test_jobs_cfg_is_root_s_alone(ctroot: Path) -> None:
    """It was 0644: any local user read a job's webhook credentials."""
    paths.jobs_cfg().parent.mkdir(parents=True, exist_ok=True)
    paths.jobs_cfg().write_text("")
    paths.jobs_cfg().chmod(0o644)  # as the first version wrote it
    url = "https://hookuser:S3cret@hooks.example/x"
    manage.add_job("nightly", {"schedule": "02:00", "all": "1", "notify-webhook": url}, NOW)
    assert paths.jobs_cfg().stat().st_mode & 0o777 == 0o640
    manage.set_job("nightly", {"mode": "stop"}, delete=[], now=NOW)
    assert paths.jobs_cfg().stat().st_mode & 0o777 == 0o640


def test_a_jobs_cfg_written_readable_is_made_private_when_read(ctroot: Path) -> None:
    manage.add_job("nightly", {"schedule": "02:00", "all": "1"}, NOW)
    paths.jobs_cfg().chmod(0o644)  # as the first version wrote it
    config.read_jobs()
    assert paths.jobs_cfg().stat().st_mode & 0o777 == 0o640
