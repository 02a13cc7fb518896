"""Scheduled backup jobs: jobs.cfg (:mod:`.config`) and per-job run state (:mod:`.state`)."""
