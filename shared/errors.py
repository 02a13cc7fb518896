"""One exception hierarchy for every expected failure, each class with a stable exit code.

The CLIs print ``str(err)`` (plus the hint, if any) on one line and exit with ``err.exit_code``;
no traceback is shown for these. Anything else is a bug and keeps its traceback.
The table below is reproduced in README.md; never renumber an existing class.
"""

from __future__ import annotations

from collections.abc import Mapping


class CtkitError(Exception):
    """A failure the user can act on."""

    exit_code = 1
    meaning = "any other failure"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ParamError(CtkitError):
    """Proxmox's ``400 Parameter verification failed.`` with one ``<param>: <msg>`` line each."""

    exit_code = 2
    meaning = "bad command-line parameters (400 Parameter verification failed.)"

    def __init__(
        self,
        errors: Mapping[str, str] | None = None,
        message: str = "Parameter verification failed.",
        usage: str | None = None,
    ) -> None:
        self.errors = dict(errors or {})
        self.usage = usage
        super().__init__(message)

    @classmethod
    def of_value(cls, param: str, err: Exception) -> ParamError:
        """A bad value of ``param``: the error, then the property string's own lines (a
        ``details`` mapping, by key), as ``vzdump prune --prune-backups`` shows them."""
        details: Mapping[str, str] = getattr(err, "details", {})
        return cls({param: str(err), **details})

    def lines(self) -> list[str]:
        out = [f"400 {self.message}"]
        if self.errors:
            out.insert(0, "")
        out += [f"{k}: {v}" for k, v in self.errors.items()]
        return out


class NotFoundError(CtkitError):
    exit_code = 3
    meaning = "a container, storage, volume, template, snapshot or file does not exist"


class AlreadyExistsError(CtkitError):
    exit_code = 4
    meaning = "the target already exists"


class LockError(CtkitError):
    exit_code = 5
    meaning = "locked (config `lock:` property, or a lock file could not be acquired in time)"


class StateError(CtkitError):
    exit_code = 6
    meaning = "the container is in the wrong state (running, stopped, template, protected)"


class VerifyError(CtkitError):
    exit_code = 7
    meaning = "a signature, checksum or archive check failed"


class DownloadError(CtkitError):
    exit_code = 8
    meaning = "a download or index update failed"


class StorageError(CtkitError):
    exit_code = 9
    meaning = "a storage operation failed (allocation, content type, snapshots, space)"


class ArchiveError(CtkitError):
    exit_code = 10
    meaning = "an archive is corrupt, unsupported or unsafe"


class CommandError(CtkitError):
    exit_code = 11
    meaning = "an external command (tar, rsync, mkfs, lxc, a hook script) failed"


class ConfigError(CtkitError):
    exit_code = 12
    meaning = "a configuration file cannot be parsed or is invalid"


class JobError(CtkitError):
    exit_code = 13
    meaning = "a backup job finished with errors (at least one guest failed)"


class OutputClosed(CtkitError):
    exit_code = 141
    meaning = "the reader of the output closed it early (`vzdump --stdout` piped into `head`)"

    def __init__(
        self, message: str = "the reader closed stdout - the archive written there is incomplete"
    ) -> None:
        super().__init__(message)


class Interrupted(CtkitError):
    exit_code = 130
    meaning = "interrupted by a signal"

    def __init__(self, message: str = "interrupted by signal") -> None:
        super().__init__(message)


def error_text(err: BaseException) -> str:
    """An operation's error line: a signal as ``interrupted by signal``, expected failures by
    their message, bugs with their type."""
    if isinstance(err, KeyboardInterrupt):
        return Interrupted().message
    if isinstance(err, CtkitError):
        return str(err)
    return f"{type(err).__name__}: {err}"
