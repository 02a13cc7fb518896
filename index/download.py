"""Downloading a template into a directory, verified against the signed index's checksum.

* One download per target at a time: an flock on a lock file under the run directory named
  for the target (nothing is left in the template cache); a second caller waits, then finds
  the finished file and succeeds without a request.
* An existing target is checked, never overwritten: right hash = success, wrong hash = error.
* The transfer goes to ``<target>.tmp_dwnl`` (a fixed name): when interrupted it stays and the
  next attempt resumes it with a Range request (only if it is a regular file of ours, never
  through a symlink). The digest is computed while streaming. A body is bounded by its
  Content-Length, else by the source's ``max-size``; free space is checked before and during.
* A checksum mismatch removes the temp file and leaves nothing under the final name; if the
  bad file came from a resumed transfer, it is fetched once more from the start.
* Relative Locations are tried on the source's mirrors after the main URL.
* A partial file of a template that no index offers any more can never be resumed: the next
  download into that directory removes it (unless a download of that name holds its lock).
Messages are upstream's (spec section 4).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from shared import atomic, paths
from shared.errors import CtkitError, DownloadError, LockError, StorageError, VerifyError
from shared.http import (
    Downloader,
    HttpError,
    NoSpaceError,
    ProgressCallback,
    RetryPolicy,
    hash_file,
)
from shared.httpclient import Client
from shared.locks import flock
from shared.printable import printable

from .aplinfo import TMP_SUFFIX, Appliance, is_template_name
from .sources import Transfer

Log = Callable[[str], None]
LOCK_TIMEOUT = 6 * 3600.0
DIGEST_LEN = {"sha512": 128, "md5": 32}


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    url: str | None  # None when the existing file was already correct
    downloaded: bool
    algorithm: str
    digest: str


def expected_checksum(app: Appliance) -> tuple[str, str]:
    """(algorithm, lower-case hex): sha512 if the record has it, else md5."""
    for algorithm in ("sha512", "md5"):
        value = app.fields.get(f"{algorithm}sum")
        if value:
            digest = value.strip().lower()
            if len(digest) != DIGEST_LEN[algorithm] or not all(
                c in "0123456789abcdef" for c in digest
            ):
                raise VerifyError(f"invalid {algorithm}sum '{value}' in the index")
            return algorithm, digest
    raise VerifyError("checksum required but not specified")


def temp_path(dest: Path) -> Path:
    return dest.with_name(dest.name + TMP_SUFFIX)


def lock_path(dest: Path) -> Path:
    """The lock of one target, under the run directory (the template cache holds only
    templates). Keyed by the directory's device and inode, not its path: two storages whose
    paths lead to one directory (a symlink, a bind mount) would otherwise both resume and
    rename the same partial file. The directory exists by now (made before the lock)."""
    try:
        st = os.stat(dest.parent)
        where = f"{st.st_dev}:{st.st_ino}"
    except OSError:
        where = str(dest.parent.absolute())
    key = hashlib.sha256(f"{where}/{dest.name}".encode()).hexdigest()[:16]
    return paths.run_dir() / "pveam" / f"download-{key}.lock"


def _mismatch(got: str, expect: str, suffix: str = "") -> VerifyError:
    return VerifyError(f"checksum mismatch: got '{got}' != expect '{expect}'{suffix}")


def download_template(
    app: Appliance,
    target_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    log: Log = print,
    retry: RetryPolicy | None = None,
    client: Client | None = None,
    transfer: Transfer | None = None,
) -> DownloadResult:
    """Fetch ``app`` into ``target_dir`` (created if missing) and verify it; ``transfer``
    holds the source's timeouts, retries and size limit."""
    if app.type not in ("lxc", "openvz"):
        raise CtkitError(f"unknown template type '{app.type}'")
    if not is_template_name(app.template):
        raise CtkitError(f"invalid template name '{app.template}'")
    algorithm, expect = expected_checksum(app)
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"unable to create directory '{target_dir}': {err.strerror}") from None
    dest = target_dir / app.template

    def waiting() -> None:
        log(f"waiting for another download of '{app.template}' to finish...")

    with flock(lock_path(dest), LOCK_TIMEOUT, on_wait=waiting):
        if dest.exists() or dest.is_symlink():
            return _check_existing(dest, algorithm, expect, log)
        transfer = transfer or Transfer()
        http = transfer.downloader(client, retry=retry)
        job = _Job(app, dest, algorithm, expect, log, http, transfer.max_size)
        return job.run(progress)


def sweep_stale_partials(target_dir: Path, offered: Collection[str], log: Log) -> None:
    """Remove the partial files in ``target_dir`` of templates not in ``offered`` (the names
    the current index holds): nothing would resume them, and each can be a whole template's
    size. One whose download runs (its lock is held) is left alone."""
    try:
        entries = list(os.scandir(target_dir))
    except OSError:
        return
    for entry in entries:
        name = entry.name.removesuffix(TMP_SUFFIX)
        if name == entry.name or name in offered or not is_template_name(name):
            continue
        try:
            with flock(lock_path(target_dir / name), 0):
                if stat.S_ISDIR(os.lstat(entry.path).st_mode):
                    continue
                os.unlink(entry.path)
        except (LockError, OSError):
            continue
        log(f"removed the partial download of '{name}': no index offers it any more")


def _check_existing(dest: Path, algorithm: str, expect: str, log: Log) -> DownloadResult:
    if dest.is_symlink() or not dest.is_file():
        raise StorageError(f"'{dest}' exists and is not a regular file")
    log("calculating checksum of existing file...")
    got = hash_file(dest, algorithm)
    if got != expect:
        raise _mismatch(got, expect, ", aborting")
    log("OK, got correct file already, no need to download")
    return DownloadResult(dest, None, False, algorithm, got)


class _Job:
    def __init__(
        self,
        app: Appliance,
        dest: Path,
        algorithm: str,
        expect: str,
        log: Log,
        http: Downloader,
        max_size: int,
    ) -> None:
        self.app, self.dest, self.algorithm, self.expect = app, dest, algorithm, expect
        # its lines name the index's URLs: none of them gets to write control characters
        self.log: Callable[[str], None] = lambda line: log(printable(line))
        self.http, self.max_size = http, max_size
        self.tmp = temp_path(dest)

    def run(self, progress: ProgressCallback | None) -> DownloadResult:
        url, digest, resumed = self.transfer(progress)
        if digest != self.expect and resumed:
            # The kept partial file did not belong to this template (e.g. a new build with
            # the same name): start once more from scratch.
            self.log(f"checksum mismatch after resuming; downloading '{url}' again")
            with contextlib.suppress(FileNotFoundError):
                self.tmp.unlink()
            url, digest, resumed = self.transfer(progress)
        if digest != self.expect:
            with contextlib.suppress(FileNotFoundError):
                self.tmp.unlink()
            self.log("calculating checksum...")
            raise _mismatch(digest, self.expect)
        self.log("calculating checksum...OK, checksum verified")
        try:
            atomic.commit_file(self.tmp, self.dest)
        except OSError as err:
            raise DownloadError(f"unable to rename temporary file: {err.strerror}") from None
        self.log(f"download of '{url}' to '{self.dest}' finished")
        return DownloadResult(self.dest, url, True, self.algorithm, digest)

    def transfer(self, progress: ProgressCallback | None) -> tuple[str, str, bool]:
        """Fetch from the first URL that works; return (url, digest, resumed)."""
        error: HttpError | None = None
        urls = self.app.urls
        for tried, url in enumerate(urls, 1):
            self.log(f"downloading {url} to {self.dest}")
            kept = self._partial_size()
            if kept:
                self.log(f"resuming from byte {kept} of the partial file '{self.tmp}'")
            try:
                res = self.http.fetch(
                    url,
                    self.tmp,
                    resume=True,
                    max_size=self.max_size,
                    hasher_factory=lambda: hashlib.new(self.algorithm),
                    progress=progress,
                )
            except HttpError as err:
                error = err
                if tried < len(urls):  # the last failure is the command's error line, said once
                    self.log(f"download failed: {err.status_line}")
                if err.discard:
                    self._drop_temp()
                continue
            except NoSpaceError:
                self._drop_temp()  # a disk that is full keeps no partial file
                raise
            assert res.digest is not None
            return url, res.digest, res.resumed_from > 0
        self._drop_empty_temp()
        assert error is not None
        raise DownloadError(f"download failed: {error.status_line}")

    def _partial_size(self) -> int:
        """The bytes a resume starts from: only a regular file's (a symlink planted there is
        refused when opened, and must not be announced as resumed first)."""
        try:
            st = self.tmp.lstat()
        except FileNotFoundError:
            return 0
        return st.st_size if stat.S_ISREG(st.st_mode) else 0

    def _drop_temp(self) -> None:
        # a file system gone read-only meanwhile: the error that got us here is the one to say
        # (this one chained a traceback to it); the next download takes the file over
        with contextlib.suppress(OSError):
            self.tmp.unlink()

    def _drop_empty_temp(self) -> None:
        with contextlib.suppress(OSError):
            if self.tmp.stat().st_size == 0:
                self.tmp.unlink()
