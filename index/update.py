"""``pveam update``: fetch, verify and store the index of every enabled source.

Per source and base URL (the source URL, then its mirrors): ``<index>.asc`` (conditional GET:
a 304 means the stored index is current), then ``<index>.gz`` (on 404: the plain index),
gunzip, check the detached signature against the keys pinned for this source, refuse an index
signed earlier than the stored one, parse strictly, and rename it into place. Temp files are
``pveam-<name>.tmp.<pid>[.gz|.asc]`` beside the store and are always removed. A failed source
keeps its previous index byte for byte; any failed source makes the whole update fail.
Log lines and messages follow upstream (spec section 2).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import atomic, paths, pgpsig
from shared.errors import StorageError
from shared.gpg import Keyring
from shared.http import (
    CHUNK_SIZE,
    Downloader,
    FetchResult,
    HttpError,
    RetryPolicy,
    Validators,
)
from shared.httpclient import Client
from shared.locks import flock

from . import keys, store
from .aplinfo import AplinfoError, parse_aplinfo
from .sources import Source, Transfer, enabled_sources
from .updatelog import UpdateLog

LOCK_TIMEOUT = 600.0
# Each file of an update (index and signature, of one base URL) is fetched within this: one that
# trickles just fast enough not to stall (1 KiB/s) held the update, and its lock, for hours
FETCH_DEADLINE = 900.0
TEMP_RE = re.compile(r"pveam-.+\.tmp\.[0-9]+(\.gz|\.asc)?")  # see _Updater.attempt


@dataclass
class SourceResult:
    name: str
    status: str  # "ok", "unchanged" or "failed"
    error: str | None = None
    detail: str | None = None  # the URL that failed and why (connection timed out, 404 ...)
    base_url: str | None = None
    fingerprint: str | None = None
    sig_timestamp: int | None = None
    templates: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class UpdateResult:
    sources: list[SourceResult]
    log_path: Path

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.sources)

    @property
    def message(self) -> str:
        """Upstream's console line: ``update successful`` (stdout) or the failure (stderr)."""
        if self.ok:
            return "update successful"
        return f"update failed - see {self.log_path} for details"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "sources": [vars(s) for s in self.sources]}


class _Failure(Exception):
    """One attempt at one base URL failed; the text is the logged message, ``detail`` the
    failed URL and its reason, for the console."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


def _why(err: HttpError) -> str:
    return f"{err.url}: {err.status_line}"


# how far in the future a signature may be made (clocks differ a little)
FUTURE_SKEW = 3600


def _fmt_time(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


class _Updater:
    def __init__(
        self,
        keyring: Keyring,
        log: UpdateLog,
        client: Client | None,
        retry: RetryPolicy | None,
    ) -> None:
        self.keyring = keyring
        self.log = log
        self.client = client or Client()
        self.retry = retry
        self.http = Downloader(self.client)
        self.max_index = Transfer().max_index_size
        self.warned: list[str] = []

    def on_retry(self, url: str, err: HttpError, delay: float) -> None:
        self.log.write(f"download failed: {err.status_line} - retrying in {delay:g}s")

    def run(self, src: Source) -> SourceResult:
        self.http = src.transfer.downloader(self.client, retry=self.retry, on_retry=self.on_retry)
        self.max_index = src.transfer.max_index_size
        error, detail = "no base URL", None
        for i, base in enumerate(src.bases):
            if i:
                self.log.write(f"trying mirror {base}")
            try:
                return self.attempt(src, base)
            except _Failure as err:
                error, detail = str(err), err.detail
                self.log.write(error)
        return SourceResult(src.name, "failed", error=error, detail=detail)

    def get(
        self, url: str, dest: Path, limit: int, validators: Validators | None = None
    ) -> FetchResult | HttpError:
        self.log.write(f"start download {url}")
        try:
            res = self.http.fetch(
                url, dest, validators=validators, max_size=limit, deadline=FETCH_DEADLINE
            )
        except HttpError as err:
            self.log.write(f"download failed: {err.status_line}")
            return err
        except StorageError as err:
            raise _Failure(f"update failed: {err}") from None
        self.log.write(f"download finished: {res.status_line}")
        return res

    def attempt(self, src: Source, base: str) -> SourceResult:
        tmp = paths.aplinfo_dir() / f"pveam-{src.name}.tmp.{os.getpid()}"
        gz, asc = tmp.with_name(tmp.name + ".gz"), tmp.with_name(tmp.name + ".asc")
        try:
            state = store.read_state(src.name)
            current = store.index_path(src.name).exists() and state.base_url == base
            cond = Validators(state.etag, state.last_modified) if current else None
            limit = min(pgpsig.MAX_FILE, self.max_index)
            sig = self.get(f"{base}/{src.index}.asc", asc, limit, cond)
            if isinstance(sig, HttpError):
                raise _Failure(f"update failed - no signature file '{asc}'", _why(sig))
            if sig.not_modified:
                self.log.write("index not modified since the last update")
                return SourceResult(src.name, "unchanged", base_url=base)
            self.fetch_data(f"{base}/{src.index}", tmp, gz)
            fpr, ts = self.verify(src, tmp, asc, state)
            result = self.parse(src, tmp)
            seen = sig.validators
            new_state = store.SourceState(
                ts, fpr, base, seen.etag, seen.last_modified, int(time.time())
            )
            self.commit(src, tmp, asc, new_state)
            self.log.write("update successful")
            return SourceResult(
                src.name,
                "ok",
                base_url=base,
                fingerprint=fpr,
                sig_timestamp=ts,
                templates=len(result),
                warnings=self.warned,
            )
        finally:
            for path in (tmp, gz, asc):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def fetch_data(self, url: str, tmp: Path, gz: Path) -> None:
        res = self.get(f"{url}.gz", gz, self.max_index)
        if isinstance(res, HttpError) and res.status == 404:
            plain = self.get(url, tmp, self.max_index)
            if isinstance(plain, HttpError):
                msg = f"update failed - no data file '{url}.gz' (nor '{url}')"
                raise _Failure(msg, _why(plain))
            return
        if isinstance(res, HttpError):
            raise _Failure(f"update failed - no data file '{url}.gz'", _why(res))
        self.gunzip(gz, tmp)

    def gunzip(self, gz: Path, tmp: Path) -> None:
        total = 0
        try:
            # whatever is under this process's temp name was planted (a symlink or hard link
            # to a host file was written through): it goes, never what it points at
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with gzip.open(gz, "rb") as src, os.fdopen(fd, "wb") as out:
                while chunk := src.read(CHUNK_SIZE):
                    total += len(chunk)
                    if total > self.max_index:
                        raise _Failure(
                            f"update failed: unable to unpack '{gz}': "
                            f"larger than {self.max_index} bytes"
                        )
                    out.write(chunk)
        except (OSError, EOFError, zlib.error):
            raise _Failure(f"update failed: unable to unpack '{gz}'") from None

    def verify(
        self, src: Source, tmp: Path, asc: Path, state: store.SourceState
    ) -> tuple[str, int]:
        check = self.keyring.verify_detached(tmp, asc)
        for line in check.messages:
            self.log.write(f"signature verification: {line}")
        if not check.valid:
            raise _Failure(f"unable to verify signature - {check.status}")
        pinned = check.signed_by(src.fingerprints)
        if pinned is None:
            raise _Failure(
                f"unable to verify signature - signed by key {check.fingerprint}, "
                f"which is not pinned for source '{src.name}'"
            )
        fpr, ts = pinned
        now = time.time()
        if ts > now + FUTURE_SKEW:
            # kept, it would be the replay floor: every honest index until then refused
            raise _Failure(
                f"unable to verify signature - made {_fmt_time(ts)}, in the future "
                "(is the clock of the signer or of this host wrong?)"
            )
        floor = state.sig_timestamp
        if floor is not None and floor > now + FUTURE_SKEW:
            self.log.write(
                f"warning: the stored index was signed in the future ({_fmt_time(floor)})"
            )
            floor = None  # taken before that was refused: no floor to hold a source back
        if floor is not None and ts < floor:
            raise _Failure(
                f"update failed: index signed {_fmt_time(ts)} is older than the stored index "
                f"(signed {_fmt_time(floor)}) - refusing a possible replay"
            )
        return fpr, ts

    def parse(self, src: Source, tmp: Path) -> list[Any]:
        text = tmp.read_bytes().decode("utf-8", errors="replace")
        try:
            result = parse_aplinfo(
                text, src.url, strict=True, source_name=src.name, mirrors=src.mirrors
            )
        except AplinfoError as err:
            raise _Failure(f"update failed: {err}") from None
        self.warned = list(result.warnings)
        for msg in result.warnings:
            self.log.write(f"warning: {msg}")
        return list(result.appliances)

    @staticmethod
    def commit(src: Source, tmp: Path, asc: Path, state: store.SourceState) -> None:
        """The index, its signature and its state replace the stored ones together: the
        signature and the state are on disk under temp names before the index is renamed, and
        take their names right after it (a full disk used to fail the source after its new
        index was in place, without its signature copy and its replay floor)."""
        try:
            atomic.sweep(paths.aplinfo_dir())
            with (
                atomic.atomic_open(store.signature_path(src.name)) as sig_out,
                atomic.atomic_open(store.state_path(src.name)) as state_out,
            ):
                sig_out.write(asc.read_bytes())
                state_out.write(store.state_bytes(state))
                for out in (sig_out, state_out):
                    out.flush()
                    os.fsync(out.fileno())
                atomic.commit_file(tmp, store.index_path(src.name))
        except OSError as err:
            raise _Failure(f"update failed: unable to store data: {err.strerror}") from None


def update(
    sources: Sequence[Source] | None = None,
    *,
    keyring: Keyring | None = None,
    retry: RetryPolicy | None = None,
    client: Client | None = None,
    log_path: Path | None = None,
) -> UpdateResult:
    """Update every enabled source (or the given ones). Never raises for a source failure:
    the result says per source ``ok``/``unchanged``/``failed`` and ``result.ok`` overall."""
    sources = enabled_sources() if sources is None else [s for s in sources if s.enabled]
    keyring = keyring or keys.keyring()
    with UpdateLog(log_path) as log:
        log.write("starting update")
        for warning in log.warnings:
            log.write(warning)

        paths.aplinfo_dir().mkdir(parents=True, exist_ok=True)
        updater = _Updater(keyring, log, client, retry)
        results = []
        with flock(store.lock_path(), LOCK_TIMEOUT):
            _sweep_temp_files()
            for src in sources:
                updater.warned = []
                results.append(updater.run(src))
        return UpdateResult(results, log.path)


def _sweep_temp_files() -> None:
    """Remove the temp files of updates killed with SIGKILL (up to 1 MiB + two indexes each,
    under names with their pid): under the update lock, none is another run's."""
    with contextlib.suppress(FileNotFoundError), os.scandir(paths.aplinfo_dir()) as entries:
        for entry in entries:
            if TEMP_RE.fullmatch(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)  # a planted symlink goes, not what it points at
