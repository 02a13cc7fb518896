"""The restic subprocess driver: one repository, its secrets, JSON commands, one-line errors.

Secrets never travel on argv: the password is handed over as ``RESTIC_PASSWORD_FILE`` (the
0600 file in ``/etc/pve/priv/storage/<id>.pw``) and backend credentials (S3 keys, REST user)
come from ``<id>.env`` into restic's environment. restic's own messages can carry a
repository URL with credentials in it (``rest:https://user:secret@host/``), so every line
that leaves this module goes through :func:`redact`.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote

from . import paths, signals
from .errors import CommandError, ConfigError, CtkitError, LockError, StorageError
from .formats.lines import config_lines, read_config_text
from .parentdeath import tied_to_parent
from .toolenv import SYSTEM_PATH

ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
# variables an env file may not set: they would redirect restic away from the storage's
# repository, password or cache, or change how programs are found and loaded
RESERVED_ENV = frozenset(
    {"RESTIC_REPOSITORY", "RESTIC_REPOSITORY_FILE", "RESTIC_PASSWORD", "RESTIC_PASSWORD_FILE",
     "RESTIC_PASSWORD_COMMAND", "RESTIC_CACHE_DIR", "PATH", "HOME", "LD_PRELOAD",
     "LD_LIBRARY_PATH", "TMPDIR"}
)  # fmt: skip
MAX_ENV_FILE = 64 << 10
MAX_JSON_LINE = 16 << 20
STDERR_TAIL = 64 << 10
LOCK_RETRY = 5.0  # seconds between tries while another host's restic holds a lock
READ_RETRY = 0.5  # ...for a query, whose exclusive users are mostly this host's short forgets
READ_WAIT = 600.0
WRONG_PASSWORD = "wrong repository password"
URL_CREDENTIALS_RE = re.compile(r"(://)[^/@\s]+@")


def redact(text: str) -> str:
    """``rest:https://user:pw@host`` → ``rest:https://***@host``."""
    return URL_CREDENTIALS_RE.sub(r"\1***@", text)


def with_rest_credentials(repository: str, env: Mapping[str, str]) -> str:
    """A ``rest:`` URL with ``RESTIC_REST_USERNAME``/``_PASSWORD`` of the env file put in:
    restic 0.14 reads REST credentials from the URL only, and the URL stays in the
    environment (the storage.cfg line never holds them)."""
    user, password = env.get("RESTIC_REST_USERNAME"), env.get("RESTIC_REST_PASSWORD")
    m = re.fullmatch(r"rest:(https?://)([^/@]*)(/.*)?", repository)
    if not m or not user or password is None or "@" in repository:
        return repository
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    return f"rest:{m.group(1)}{auth}{m.group(2)}{m.group(3) or '/'}"


def parse_env_file(text: str) -> dict[str, str]:
    """``NAME=value`` lines (``#`` comments, blank lines); names checked, reserved ones refused."""
    out: dict[str, str] = {}
    for number, line in enumerate(config_lines(text), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if name.startswith("export "):
            name = name[len("export ") :].strip()
        if not sep or not ENV_NAME_RE.fullmatch(name):
            raise ConfigError(f"environment file line {number}: expected NAME=value")
        if name in RESERVED_ENV or name.startswith("LD_"):
            raise ConfigError(f"environment file line {number}: '{name}' may not be set there")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[name] = value
    return out


@dataclass(frozen=True)
class Repo:
    """A restic repository as a storage defines it, with where its secrets are."""

    storage: str
    repository: str
    password_file: Path
    env_file: Path
    sftp_command: str | None = None  # the storage's sftp-command (ssh with port, key, ...)
    # this node's own key of the repository (shared.restickey): its secret and its record
    node_key: Path | None = None
    node_key_record: Path | None = None

    def node_key_id(self) -> str | None:
        """The id of this node's key of the repository, when it has one."""
        if self.node_key is None or self.node_key_record is None:
            return None
        from .restickey import read_record

        return read_record(self.node_key_record, self.repository)

    def without_node_key(self) -> Repo:
        """The repository opened with the storage's own password (which a check of that
        password must use)."""
        return replace(self, node_key=None, node_key_record=None)

    def drop_node_key(self) -> None:
        if self.node_key is not None and self.node_key_record is not None:
            from .restickey import discard

            discard(self.node_key, self.node_key_record)

    def environment(self) -> dict[str, str]:
        """restic's whole environment: nothing inherited but the locale basics."""
        if not self.password_file.is_file():
            raise ConfigError(
                f"storage '{self.storage}': no repository password",
                hint=f"set one with 'vzdump storage set {self.storage} --password-file FILE'",
            )
        cache = paths.under("var/cache/ctkit/restic")
        # restic makes missing parents 0700, and /var must stay searchable (by the ids of
        # unprivileged containers, whose volumes are below it)
        cache.parent.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": SYSTEM_PATH,
            "HOME": str(paths.under("root")),
            "TZ": "UTC",
            "LANG": "C.UTF-8",
            "RESTIC_CACHE_DIR": str(cache),
        }
        try:
            if self.env_file.stat().st_size > MAX_ENV_FILE:
                raise ConfigError(f"storage '{self.storage}': environment file too large")
            env.update(parse_env_file(read_config_text(self.env_file, str(self.env_file))))
        except FileNotFoundError:
            pass
        env["RESTIC_REPOSITORY"] = with_rest_credentials(self.repository, env)
        env["RESTIC_PASSWORD_FILE"] = str(self.password_file)
        key = self.node_key_id()
        if key is not None and self.node_key is not None:
            env["RESTIC_PASSWORD_FILE"] = str(self.node_key)
            env["RESTIC_KEY_HINT"] = key  # tried first: no other key's scrypt is paid
        return env

    def global_args(self) -> list[str]:
        """restic's options that come from the storage (not secrets)."""
        return ["-o", f"sftp.command={self.sftp_command}"] if self.sftp_command else []


# restic's fatal messages → (error class, our line)
_FAILURES: tuple[tuple[re.Pattern[str], type[StorageError] | type[LockError], str], ...] = (
    (
        re.compile(
            r"dial tcp|connection refused|no such host|network is unreachable|i/o timeout|"
            r"unable to start the sftp session|ssh: connect|Connection timed out|"
            r"Host key verification failed|Permission denied \(publickey"
        ),
        StorageError,
        "repository not reachable",
    ),
    (re.compile(r"wrong password or no key found"), StorageError, WRONG_PASSWORD),
    (
        re.compile(r"no space left on device|insufficient storage|quota exceeded", re.I),
        StorageError,
        "the repository's storage is full",
    ),
    (
        re.compile(r"Is there a repository at the following location|unable to open config file"),
        StorageError,
        "repository is not initialised (add the storage with --init)",
    ),
    (re.compile(r"repository is already locked"), LockError, "repository is locked"),
    (re.compile(r"config file already exists"), StorageError, "repository already initialised"),
)


def failure(repo: Repo, stderr: str, rc: int) -> StorageError | LockError:
    """One line from restic's stderr: known causes in our words, else restic's last Fatal."""
    for pattern, cls, message in _FAILURES:
        if m := pattern.search(stderr):
            if message == "repository not reachable":
                start = stderr.rfind("\n", 0, m.start()) + 1
                end = stderr.find("\n", m.end())
                line = stderr[start : end if end >= 0 else None].strip()
                message = f"{message} - {redact(line)[:200]}"
            hint = None
            if cls is LockError:
                hint = (
                    f"if no other backup runs, clear it with 'vzdump storage unlock {repo.storage}'"
                )
            return cls(f"restic storage '{repo.storage}': {message}", hint=hint)
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith("Fatal:")]
    last = (fatal or lines or [f"exit code {rc}"])[-1]
    return StorageError(f"restic storage '{repo.storage}': {redact(last)[:300]}")


def _command(args: Sequence[str]) -> list[str]:
    """restic with ``args``, tied to this process (see :mod:`shared.parentdeath`)."""
    found = shutil.which("restic", path=SYSTEM_PATH)
    if found is None:  # setpriv would only say it could not run it
        raise CommandError("restic is not installed (apt-get install restic)")
    return tied_to_parent([found, *args])


def run(
    repo: Repo, args: Sequence[str], *, stdin: IO[bytes] | None = None, timeout: float | None = None
) -> bytes:
    """Run one restic command to completion; its stdout, or the one-line failure. Should this
    node's key no longer open the repository (removed from it, or the repository replaced),
    the key is dropped and the command runs again with the storage's password."""
    env = repo.environment()
    try:
        return _run_once(repo, env, args, stdin, timeout)
    except StorageError as err:
        if not _node_key_refused(repo, env, err) or stdin is not None:
            raise
    repo.drop_node_key()
    plain = repo.without_node_key()
    return _run_once(plain, plain.environment(), args, stdin, timeout)


def _node_key_refused(repo: Repo, env: Mapping[str, str], err: StorageError) -> bool:
    """Whether restic, run with ``env``, refused this node's key."""
    used = repo.node_key is not None and env.get("RESTIC_PASSWORD_FILE") == str(repo.node_key)
    return used and err.message.endswith(WRONG_PASSWORD)


def _run_once(
    repo: Repo,
    env: dict[str, str],
    args: Sequence[str],
    stdin: IO[bytes] | None,
    timeout: float | None,
) -> bytes:
    try:
        proc = subprocess.run(
            _command(["--quiet", *repo.global_args(), *args]),
            env=env,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise CommandError("restic is not installed (apt-get install restic)") from None
    except subprocess.TimeoutExpired:
        raise StorageError(f"restic storage '{repo.storage}': repository not reachable") from None
    if proc.returncode != 0:
        raise failure(repo, proc.stderr.decode("utf-8", "replace"), proc.returncode)
    return proc.stdout


def run_exclusive(
    repo: Repo, args: Sequence[str], *, timeout: float | None = None, wait: float | None = None
) -> bytes:
    """A command that needs the repository alone (forget, prune, tag). This host's backups of
    the repository are waited for at its gate. A lock of restic's in the way is first handed
    to ``restic unlock``, which removes only stale locks (a process of this host that is gone,
    such as a killed backup, or one not refreshed for 30 minutes): a crash heals on the next
    run. A live lock (another host's backup) is waited for, up to ``wait`` seconds."""
    from . import resticgate

    limit = resticgate.WAIT if wait is None else wait
    deadline = time.monotonic() + limit
    with resticgate.gate(repo.storage, repo.repository, exclusive=True, wait=limit):
        return _while_locked(repo, args, timeout, deadline, LOCK_RETRY)


def _while_locked(
    repo: Repo, args: Sequence[str], timeout: float | None, deadline: float, interval: float
) -> bytes:
    """``run``, again while a lock of restic's is in the way (see :func:`retry_locked`)."""

    def waiting() -> None:
        print(f"restic storage '{repo.storage}': waiting for its lock", file=sys.stderr)

    return retry_locked(
        repo, lambda: run(repo, args, timeout=timeout), deadline, interval, waiting=waiting
    )


T = TypeVar("T")


def retry_locked(
    repo: Repo,
    attempt: Callable[[], T],
    deadline: float,
    interval: float,
    *,
    unlock_every: float = LOCK_RETRY,
    locked: Callable[[], None] | None = None,
    waiting: Callable[[], None] | None = None,
) -> T:
    """``attempt``, again every ``interval`` seconds while a lock of restic's is in the way,
    until ``deadline``. ``restic unlock`` runs at once and then every ``unlock_every``
    seconds: it removes only stale locks (of a process of this host that is gone, or one not
    refreshed for 30 minutes), and a killed restic is not gone until it is reaped, which may
    be a moment after its parent was killed: one unlock left a killed prune's lock in the way
    of the next backup, and of the next prune for hours. ``locked`` is called at the first
    lock met, ``waiting`` when the first unlock did not clear the way."""
    unlocked: float | None = None
    while True:
        try:
            return attempt()
        except LockError:
            # the first lock met is handed to unlock however long the gate's wait took
            if unlocked is not None and time.monotonic() >= deadline:
                raise
        if unlocked is None and locked is not None:
            locked()
        if unlocked is not None:
            if waiting is not None:
                waiting()
                waiting = None  # said once
            signals.raise_if_interrupted()
            time.sleep(interval)
        if unlocked is None or time.monotonic() - unlocked >= unlock_every:
            with contextlib.suppress(CtkitError):  # a repository we may only read, say
                run(repo, ["unlock"], timeout=300)
            unlocked = time.monotonic()


def run_json(
    repo: Repo, args: Sequence[str], timeout: float | None = 300, wait: float = READ_WAIT
) -> Any:
    """A query. restic takes the repository's lock shared for it, which an exclusive user
    (a forget, a prune: this host's retention in a parallel run, another host's) makes fail
    at once: that is waited for, up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    out = _while_locked(repo, [*args, "--json"], timeout, deadline, READ_RETRY)
    try:
        return json.loads(out or b"null")
    except ValueError:
        raise StorageError(f"restic storage '{repo.storage}': unreadable answer") from None


class NodeKeyRefused(StorageError):
    """restic did not open the repository with this node's key (now dropped): it stopped
    before it did anything, and may run again with the storage's password."""


class Streamed:
    """A running restic whose stdout is read as it comes (``backup --json``, ``dump``); its
    stderr is drained by a thread (the tail kept for the error line), so it never blocks."""

    def __init__(self, repo: Repo, proc: subprocess.Popen[bytes], env: Mapping[str, str]) -> None:
        self.repo = repo
        self.proc = proc
        self.env = env  # restic's environment: whether it was given this node's key
        self._stderr = bytearray()
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr += line
            del self._stderr[: max(0, len(self._stderr) - STDERR_TAIL)]

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def json_lines(self) -> Iterator[dict[str, Any]]:
        for raw in self.stdout:
            if len(raw) > MAX_JSON_LINE:
                continue
            try:
                item = json.loads(raw)
            except ValueError:
                continue
            if isinstance(item, dict):
                yield item

    def finish(self) -> None:
        """Wait; a non-zero exit becomes the one-line failure."""
        rc = self.proc.wait()
        self._drain.join()
        if rc != 0:
            err = bytes(self._stderr).decode("utf-8", "replace")
            if rc < 0:
                raise StorageError(
                    f"restic storage '{self.repo.storage}': restic killed by signal {-rc}"
                )
            error = failure(self.repo, err, rc)
            if isinstance(error, StorageError) and _node_key_refused(self.repo, self.env, error):
                self.repo.drop_node_key()
                raise NodeKeyRefused(
                    f"restic storage '{self.repo.storage}': this node's key no longer opens "
                    "the repository - it is dropped, the next run uses the storage's password"
                )
            raise error

    def stop_soon(self) -> None:
        """From another thread (a stall guard): SIGINT, and SIGKILL 10 s later if restic is
        still there (one blocked on a hung server may not act on SIGINT); the reading thread
        sees the end of its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            timer = threading.Timer(10.0, self._kill_if_running)
            timer.daemon = True
            timer.start()

    def _kill_if_running(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def finish_quietly(self) -> None:
        """Reap a restic that was stopped (its exit says nothing the caller does not know)."""
        self.proc.wait()
        self._drain.join(timeout=5)

    def kill(self) -> None:
        """Stop restic (SIGINT first: it then removes its lock), then reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drain.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start(
    repo: Repo,
    args: Sequence[str],
    *,
    cwd: Path | None = None,
) -> Streamed:
    env = repo.environment()
    try:
        # tied to this process: a restic left running after a kill held the repository's
        # lock (an orphaned prune failed every backup), or went on reading a container the
        # next command had started again, into a snapshot listed as a good backup
        proc = subprocess.Popen(
            _command([*repo.global_args(), *args]),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError:
        raise CommandError("restic is not installed (apt-get install restic)") from None
    return Streamed(repo, proc, env)


def tag_value(tags: Sequence[str], key: str) -> str | None:
    prefix = f"{key}="
    return next((t[len(prefix) :] for t in tags if t.startswith(prefix)), None)


def tags_arg(tags: Mapping[str, str | None]) -> list[str]:
    """``--tag a=b`` per tag (never joined: a value may not contain a comma)."""
    out: list[str] = []
    for key, value in tags.items():
        text = key if value is None else f"{key}={value}"
        if "," in text or "\n" in text:
            raise StorageError(f"invalid restic tag '{key}'")
        out += ["--tag", text]
    return out


__all__ = [
    "NodeKeyRefused",
    "Repo",
    "Streamed",
    "failure",
    "parse_env_file",
    "redact",
    "run",
    "run_exclusive",
    "run_json",
    "start",
    "tag_value",
    "tags_arg",
]
