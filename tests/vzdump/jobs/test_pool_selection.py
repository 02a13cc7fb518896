"""A job's ``pool`` selects the pool's guests of this host, as ``vzdump --pool`` does."""

from __future__ import annotations

from pathlib import Path

from shared import paths
from vzdump.engine.job import select_guests
from vzdump.jobs import config
from vzdump.options import BackupOptions


def test_job_pool_selects_local_members(ctroot: Path) -> None:
    paths.user_cfg().parent.mkdir(parents=True)
    paths.user_cfg().write_text("pool:web::900000002,900000001,900000003::\n")
    paths.lxc_conf_dir().mkdir(parents=True)
    for vmid in (900000001, 900000002, 900000004):
        paths.ct_conf(vmid).write_text("hostname: ct\n")
    (job,) = config.parse_jobs("vzdump: web\n\tschedule daily\n\tpool web\n", strict=True).sections
    opts = BackupOptions.from_values(config.job_params(job))
    assert select_guests(opts) == [900000001, 900000002]
