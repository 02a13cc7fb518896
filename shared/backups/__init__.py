"""Know your backups: list them with their last verification, read the backed-up config,
browse, extract single members, verify end to end, and prove a backup restores.

Every operation goes through :func:`backend.backend_for` so that a backup storage that is not a
directory of archives (restic, later) plugs in by adding a backend, not by touching callers.
"""
