"""Fixtures every test package uses: a scratch CTKIT_ROOT and the team's reference data."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.storage.resticplugin import ResticStorage
from shared.testbed import build_busybox_rootfs, cleanup_root, pack

REPO = Path(__file__).resolve().parents[1]


def _signals_as_on_a_terminal() -> None:
    """A suite started under ``nohup`` or as a script's background job inherits HUP, or INT
    and QUIT, ignored, and so would every command a test starts: ctkit keeps an ignored signal
    ignored, and the tests that interrupt a command could not. Their default dispositions
    (Python's KeyboardInterrupt for INT) come back here, for this process and its children."""
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
        if signal.getsignal(sig) is signal.SIG_IGN:
            default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, default)


_signals_as_on_a_terminal()
# The team's handbook folder sits beside the checkout; tests that read it skip without it.
HANDBOOK = Path(os.environ.get("CTKIT_HANDBOOK", REPO.parent / "shared"))


@pytest.fixture
def ctroot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh CTKIT_ROOT for one test; containers, mounts and loop devices below it are
    cleaned up afterwards even when the test fails."""
    root = tmp_path / "root"
    root.mkdir()
    # pytest makes its temp dirs 0700; unprivileged containers' tar and rsync run as uid
    # 100000 and must be able to traverse to the volumes and dump directories below the root
    for parent in (tmp_path, *tmp_path.parents):
        if parent == Path("/tmp") or parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o755)
    monkeypatch.setenv("CTKIT_ROOT", str(root))
    try:
        yield root
    finally:
        cleanup_root(root)


@pytest.fixture
def restic_store(ctroot: Path, tmp_path: Path) -> ResticStorage:
    """Storage ``offsite``: a new local restic repository in the temp dir (password ``pw``)."""
    from shared.storage import resticadmin
    from shared.storage.config import load_config

    pw = tmp_path / "restic.pw"
    pw.write_text("pw\n")
    resticadmin.add("offsite", {"repository": str(tmp_path / "repo")}, password=pw, init=True)
    store = load_config().get("offsite")
    assert isinstance(store, ResticStorage)
    return store


# container ids: a high range (900000000+), unique within a session so that a container left
# over by a failed test can never collide with the next one (cgroup names are global)
_VMIDS = itertools.count(900_000_000 + random.Random().randrange(0, 90_000_000, 1000))


@pytest.fixture
def mount_tmpfs() -> Iterator[Callable[[Path, str], Path]]:
    """``mount_tmpfs(path, size)``: a tmpfs of ``size`` (``"8m"``) at ``path`` (made if need
    be), for a file system of its own or a disk that fills up; unmounted after the test."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        argv = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
        subprocess.run(argv, check=True)
        mounted.append(path)
        return path

    try:
        yield mount
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """``umask(mask)`` sets this process's umask (its children inherit it) and returns the one
    before; the test's own mask comes back afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    try:
        yield os.umask
    finally:
        os.umask(old)


@pytest.fixture
def new_vmid() -> Callable[[], int]:
    return lambda: next(_VMIDS)


@pytest.fixture
def vmid() -> int:
    return next(_VMIDS)


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy from the environment: the test servers on 127.0.0.1 are reached directly."""
    for var in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    return monkeypatch


@pytest.fixture(scope="session")
def busybox_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small template without os-release (ostype unmanaged), ``.tar.zst``; built once."""
    base = tmp_path_factory.mktemp("tpl-busybox")
    return pack(build_busybox_rootfs(base / "rootfs"), base / "busybox_1.0-1_amd64.tar.zst")


@pytest.fixture(scope="session")
def debian_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox template that identifies as Debian 12 (so the Debian guest setup runs)."""
    base = tmp_path_factory.mktemp("tpl-debianlike")
    rootfs = build_busybox_rootfs(base / "rootfs", debian_like=True)
    return pack(rootfs, base / "debian-12-busybox_12.0-1_amd64.tar.zst")


def reference_file(name: str) -> Path:
    """A file of ../shared/reference, or skip the test when the folder is absent."""
    path = HANDBOOK / "reference" / name
    if not path.exists():
        pytest.skip(f"reference data not available: {path}")
    return path


@pytest.fixture
def reference() -> object:
    return reference_file
