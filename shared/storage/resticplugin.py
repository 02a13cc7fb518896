"""Storage type ``restic``: a restic repository that holds container backups (like Proxmox's
``pbs`` type, a backup-only storage without a local path).

    restic: offsite
        repository sftp:backup@host:/srv/ct-backups
        content backup
        prune-backups keep-daily=7,keep-weekly=4

Its secrets are never in storage.cfg: the repository password is
``/etc/pve/priv/storage/<id>.pw`` and backend credentials (``AWS_ACCESS_KEY_ID``, ...) are
``NAME=value`` lines in ``/etc/pve/priv/storage/<id>.env``, both 0600. ``<id>.key`` and
``<id>.key.json`` are this node's own key of the repository (shared.restickey). The task logs of its
backups are kept locally, in ``/var/log/vzdump/restic/<id>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .. import paths
from ..errors import StorageError
from .base import Storage
from .volid import VolName

if TYPE_CHECKING:
    from ..restic import Repo


def secrets_dir() -> Path:
    return paths.under("etc/pve/priv/storage")


def password_file(sid: str) -> Path:
    return secrets_dir() / f"{sid}.pw"


def env_file(sid: str) -> Path:
    return secrets_dir() / f"{sid}.env"


def node_key_file(sid: str) -> Path:
    """The password of this node's own key of the repository (shared.restickey)."""
    return secrets_dir() / f"{sid}.key"


def node_key_record(sid: str) -> Path:
    return secrets_dir() / f"{sid}.key.json"


class ResticStorage(Storage):
    type_name = "restic"

    def __repr__(self) -> str:
        return f"<ResticStorage {self.id}>"

    @property
    def repository(self) -> str:
        return str(self.props.get("repository") or "")

    @property
    def repo(self) -> Repo:
        if not self.repository:
            raise StorageError(f"storage '{self.id}' has no repository")
        from ..restic import Repo  # the driver: only where a restic storage is used

        return Repo(
            self.id,
            self.repository,
            password_file(self.id),
            env_file(self.id),
            sftp_command=self.props.get("sftp-command") or None,
            node_key=node_key_file(self.id),
            node_key_record=node_key_record(self.id),
        )

    @property
    def content(self) -> frozenset[str]:
        items = self.props.get("content") or ["backup"]
        return frozenset({"backup"}) if "backup" in items else frozenset()

    @property
    def path(self) -> Path:
        raise StorageError(f"storage '{self.id}' (type restic) has no path")

    def subdir(self, vtype: str) -> Path:
        """Only ``backup``: the local directory of the backups' task logs."""
        if vtype != "backup":
            raise StorageError(f"storage '{self.id}' (type restic) only holds backups")
        return paths.under(f"var/log/vzdump/restic/{self.id}")

    def parse_volname(self, volname: str) -> VolName:
        from .resticbackups import parse_volname

        return parse_volname(volname)

    def path_of(self, volname: str, snapshot: str | None = None) -> Path:
        raise StorageError(f"storage '{self.id}' (type restic) has no files to point at")

    def activate(self) -> None:
        self.subdir("backup").mkdir(parents=True, exist_ok=True)
