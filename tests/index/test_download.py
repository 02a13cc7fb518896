"""download_template against a real HTTP server (acceptance tests 23, 25-31 with ctkit's
behaviour, resume, the per-target lock, proxy and mirrors)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from index.aplinfo import Appliance, parse_aplinfo
from index.collection import ApplianceIndex
from index.download import DownloadResult, download_template, lock_path, temp_path
from index.lookup import NoSuchTemplate, find_template
from index.sources import Transfer
from shared.errors import DownloadError, StorageError, VerifyError
from shared.http import RetryPolicy, hash_file
from tests.index.conftest import FAST, stanza
from tests.shared.http_server import ForwardProxy, TestServer

NAME = "demo_1.0-1_amd64.tar.zst"
DATA = os.urandom(5 * (1 << 20) + 4321)
SHA = hashlib.sha512(DATA).hexdigest()
MD5 = hashlib.md5(DATA).hexdigest()


def appliance(srv: TestServer, *, mirrors: tuple[str, ...] = (), **kw: str | None) -> Appliance:
    kw.setdefault("sha512", SHA)
    text = stanza("demo", location=f"tpl/{NAME}", **kw)  # type: ignore[arg-type]
    (app,) = parse_aplinfo(text, srv.url(""), strict=True, mirrors=mirrors).appliances
    return app


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)


def fetch(
    app: Appliance, target: Path, log: Recorder | None = None, **kw: object
) -> DownloadResult:
    kw.setdefault("retry", FAST)
    return download_template(app, target, log=log or Recorder(), **kw)  # type: ignore[arg-type]


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def target(ctroot: Path, tmp_path: Path) -> Path:
    """(Under a test root: the per-target locks live in its run directory, not the host's.)"""
    return tmp_path / "storage" / "template" / "cache"


def test_unknown_template(srv: TestServer, target: Path) -> None:  # test 23
    index = ApplianceIndex()
    index.add(appliance(srv))
    with pytest.raises(NoSuchTemplate, match=r"^no such template$"):
        find_template(index, "other_1_amd64.tar.zst")
    assert not target.exists() and srv.seen == []


def test_happy_path(srv: TestServer, target: Path) -> None:  # test 25
    srv.add(f"/tpl/{NAME}", DATA)
    app, log = appliance(srv), Recorder()
    result = fetch(app, target, log)
    dest = target / NAME
    assert result == DownloadResult(dest, app.url, True, "sha512", SHA)
    assert log.lines == [
        f"downloading {app.url} to {dest}",
        "calculating checksum...OK, checksum verified",
        f"download of '{app.url}' to '{dest}' finished",
    ]
    assert hash_file(dest, "sha512") == SHA
    assert listing(target) == [NAME]


def test_wrong_bytes_from_the_server(srv: TestServer, target: Path) -> None:  # test 26
    bad = DATA[:-1] + bytes([DATA[-1] ^ 0xFF])  # (a fixed byte was DATA's own 1 time in 256)
    srv.add(f"/tpl/{NAME}", bad)
    with pytest.raises(VerifyError) as exc:
        fetch(appliance(srv), target)
    got = hashlib.sha512(bad).hexdigest()
    assert str(exc.value) == f"checksum mismatch: got '{got}' != expect '{SHA}'"
    assert listing(target) == []  # neither the target nor a temp file


def test_existing_correct_file(srv: TestServer, target: Path) -> None:  # test 27
    target.mkdir(parents=True)
    (target / NAME).write_bytes(DATA)
    log = Recorder()
    result = fetch(appliance(srv), target, log)
    assert not result.downloaded and result.digest == SHA
    assert log.lines == [
        "calculating checksum of existing file...",
        "OK, got correct file already, no need to download",
    ]
    assert srv.seen == []


def test_existing_wrong_file_is_left_alone(srv: TestServer, target: Path) -> None:  # test 28
    target.mkdir(parents=True)
    (target / NAME).write_bytes(b"something else")
    with pytest.raises(VerifyError) as exc:
        fetch(appliance(srv), target)
    got = hashlib.sha512(b"something else").hexdigest()
    assert str(exc.value) == f"checksum mismatch: got '{got}' != expect '{SHA}', aborting"
    assert (target / NAME).read_bytes() == b"something else" and srv.seen == []


def test_md5_only_and_no_checksum(srv: TestServer, target: Path) -> None:  # test 29
    srv.add(f"/tpl/{NAME}", DATA)
    result = fetch(appliance(srv, sha512=None, md5=MD5), target)
    assert (result.algorithm, result.digest) == ("md5", MD5)
    with pytest.raises(VerifyError, match=r"^checksum required but not specified$"):
        fetch(appliance(srv, sha512=None), target / "other")
    assert not (target / "other").exists()


def test_upper_case_digest(srv: TestServer, target: Path) -> None:  # test 30
    srv.add(f"/tpl/{NAME}", DATA)
    assert fetch(appliance(srv, sha512=SHA.upper()), target).digest == SHA


def test_dropped_connection_keeps_partial_then_resumes(srv: TestServer, target: Path) -> None:
    # test 31 with ctkit's behaviour: nothing under the final name, non-zero (an exception),
    # and the partial file is kept under its fixed temp name to be resumed next time.
    route = srv.add(f"/tpl/{NAME}", DATA, drop_after=3_000_000)
    app = appliance(srv)
    with pytest.raises(DownloadError, match=r"^download failed: "):
        fetch(app, target, retry=RetryPolicy(retries=0))
    tmp = temp_path(target / NAME)
    assert not (target / NAME).exists()
    kept = tmp.stat().st_size
    assert 0 < kept <= 3_000_000 and DATA.startswith(tmp.read_bytes())
    log = Recorder()
    result = fetch(app, target, log)
    assert result.digest == SHA and (target / NAME).read_bytes() == DATA
    assert srv.requests_for(f"/tpl/{NAME}")[-1].headers["range"] == f"bytes={kept}-"
    assert f"resuming from byte {kept} of the partial file '{tmp}'" in log.lines
    assert listing(target) == [NAME] and route.hits == 2


def test_interrupt_keeps_partial_and_releases_the_lock(srv: TestServer, target: Path) -> None:
    srv.add(f"/tpl/{NAME}", DATA)

    def interrupt(done: int, total: int | None) -> None:
        if done >= 2 << 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch(appliance(srv), target, progress=interrupt)
    assert not (target / NAME).exists() and temp_path(target / NAME).exists()
    assert fetch(appliance(srv), target).digest == SHA  # the lock was released; resumed
    assert "range" in srv.seen[-1].headers


def test_stale_partial_file_is_restarted(srv: TestServer, target: Path) -> None:
    srv.add(f"/tpl/{NAME}", DATA)
    target.mkdir(parents=True)
    temp_path(target / NAME).write_bytes(b"\xff" * 100_000)  # left over from another build
    log = Recorder()
    assert fetch(appliance(srv), target, log).digest == SHA
    assert any("checksum mismatch after resuming" in line for line in log.lines)
    assert [r.headers.get("range") for r in srv.seen] == ["bytes=100000-", None]
    assert listing(target) == [NAME]


@pytest.mark.parametrize("second", ["same path", "symlinked path"])
def test_two_concurrent_downloads_make_one_file(
    srv: TestServer, target: Path, tmp_path: Path, second: str
) -> None:
    # two storages can lead to one directory: the second one's path a symlink to the first
    other = target
    if second == "symlinked path":
        other = tmp_path / "alias"
        other.symlink_to(target)
    srv.add(f"/tpl/{NAME}", DATA, chunk_delay=0.05)
    app = appliance(srv)
    results: list[DownloadResult] = []
    errors: list[BaseException] = []
    logs = [Recorder(), Recorder()]

    def worker(log: Recorder, where: Path) -> None:
        try:
            results.append(fetch(app, where, log))
        except BaseException as err:
            errors.append(err)

    threads = [
        threading.Thread(target=worker, args=(log, where))
        for log, where in zip(logs, (target, other), strict=True)
    ]
    threads[0].start()
    deadline = time.monotonic() + 30
    while not temp_path(target / NAME).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    threads[1].start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(results) == 2
    assert sorted(r.downloaded for r in results) == [False, True]
    assert len(srv.requests_for(f"/tpl/{NAME}")) == 1
    assert (target / NAME).read_bytes() == DATA
    assert any("waiting for another download" in line for log in logs for line in log.lines)
    assert listing(target) == [NAME]
    assert lock_path(target / NAME).exists()


def test_mirror_used_when_the_main_url_fails(srv: TestServer, target: Path) -> None:
    srv.add(f"/mirror/tpl/{NAME}", DATA)
    app = appliance(srv, mirrors=(srv.url("/mirror"),))
    log = Recorder()
    result = fetch(app, target, log)
    assert result.url == srv.url(f"/mirror/tpl/{NAME}") and result.digest == SHA
    assert "download failed: 404 Not Found" in log.lines  # the mirror's turn is explained


def test_the_last_failure_is_said_once(srv: TestServer, target: Path) -> None:
    """Only as the command's error: the log line before it printed the same text again."""
    log = Recorder()
    with pytest.raises(DownloadError, match=r"^download failed: 404 Not Found$"):
        fetch(appliance(srv), target, log)
    assert not [line for line in log.lines if "failed" in line]


def test_all_urls_fail(srv: TestServer, target: Path) -> None:
    with pytest.raises(DownloadError, match=r"^download failed: 404 Not Found$"):
        fetch(appliance(srv), target)
    assert listing(target) == []


def test_proxy_used_for_templates(srv: TestServer, target: Path, no_proxy_env) -> None:
    srv.add(f"/tpl/{NAME}", DATA)
    with ForwardProxy() as proxy:
        no_proxy_env.setenv("http_proxy", proxy.url)
        assert fetch(appliance(srv), target).digest == SHA
    assert proxy.seen == [("GET", srv.url(f"/tpl/{NAME}"))]


def test_memory_stays_flat(srv: TestServer, target: Path, tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as fh:
        for _ in range(40):
            fh.write(os.urandom(1 << 20))
    srv.add(f"/tpl/{NAME}", big)
    tracemalloc.start()
    try:
        fetch(appliance(srv, sha512=hash_file(big, "sha512")), target)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20, f"peak {peak} bytes for a 40 MiB template"


def test_unknown_type_and_bad_digest(srv: TestServer, target: Path) -> None:
    app = appliance(srv)
    app.fields["type"] = "qemu"
    with pytest.raises(Exception, match=r"^unknown template type 'qemu'$"):
        fetch(app, target)
    with pytest.raises(VerifyError, match="invalid sha512sum"):
        fetch(appliance(srv, sha512="abc"), target)


def test_symlinked_target_or_partial_file_is_refused(
    srv: TestServer, target: Path, tmp_path: Path
) -> None:
    # a symlink under the final name is not "the file is already there", even when the file
    # it points to has the right bytes; a symlinked partial file is never written through
    srv.add(f"/tpl/{NAME}", DATA)
    good = tmp_path / "elsewhere"
    good.write_bytes(DATA)
    target.mkdir(parents=True)
    (target / NAME).symlink_to(good)
    with pytest.raises(StorageError, match="exists and is not a regular file"):
        fetch(appliance(srv), target)
    (target / NAME).unlink()
    victim = tmp_path / "host-file"
    victim.write_bytes(b"keep\n")
    temp_path(target / NAME).symlink_to(victim)
    with pytest.raises(StorageError, match="refusing to write"):
        fetch(appliance(srv), target)
    assert victim.read_bytes() == b"keep\n" and not (target / NAME).exists()
    assert srv.seen == []


def test_endless_body_is_bounded_and_leaves_nothing(srv: TestServer, target: Path) -> None:
    srv.add(f"/tpl/{NAME}", endless=True)
    log = Recorder()
    with pytest.raises(DownloadError, match=r"file too large \(limit 1048576 bytes\)"):
        fetch(appliance(srv), target, log, transfer=Transfer(max_size=1 << 20))
    assert listing(target) == []


def test_a_partial_file_that_cannot_be_removed_leaves_one_error(
    srv: TestServer, tmp_path: Path
) -> None:
    """The cache filled up mid-download, and the partial file could not be removed after it (a
    file system gone read-only, here an immutable directory): the second error was chained to
    the first in a traceback."""
    mnt = tmp_path / "cache"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], check=True)
    try:
        srv.add(f"/tpl/{NAME}", DATA, chunk_delay=0.05)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                fetch(appliance(srv), mnt)
            except BaseException as err:
                errors.append(err)

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            temp_path(mnt / NAME).exists() and temp_path(mnt / NAME).stat().st_size > 0
        ):
            time.sleep(0.01)
        with open(mnt / "filler", "wb") as fh, contextlib.suppress(OSError):
            while True:
                fh.write(bytes(1 << 20))
        subprocess.run(["chattr", "+i", str(mnt)], check=True)
        thread.join(60)
        subprocess.run(["chattr", "-i", str(mnt)], check=True)
        assert len(errors) == 1 and isinstance(errors[0], StorageError), errors
        assert "free space" in str(errors[0])
    finally:
        subprocess.run(["chattr", "-i", str(mnt)], check=False)
        subprocess.run(["umount", str(mnt)], check=True)
