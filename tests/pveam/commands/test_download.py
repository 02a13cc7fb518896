"""``pveam download`` through the console script (acceptance tests 9, 23-31 with ctkit's exit
codes; prefix lookup, resume, interrupt, proxy, progress bar on a terminal)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from index.download import temp_path
from index.sources import Transfer
from shared import paths
from shared.errors import (
    DownloadError,
    Interrupted,
    NotFoundError,
    ParamError,
    StorageError,
    VerifyError,
)
from tests.index.conftest import index_text, stanza
from tests.pveam.conftest import (
    PVEAM,
    Pveam,
    add_source,
    store_index,
    template_cache,
    write_storage_cfg,
)
from tests.shared.http_server import ForwardProxy, TestServer

NAME = "demo_1.0-1_amd64.tar.zst"
DATA = os.urandom(5 * (1 << 20) + 4321)
SHA = hashlib.sha512(DATA).hexdigest()
MD5 = hashlib.md5(DATA).hexdigest()
USAGE = "pveam download <storage> <template>\n"


def publish(srv: TestServer, *stanzas: str, source: str = "a", prefix: str = "") -> None:
    add_source(source, srv.url(prefix))
    store_index(source, index_text(*stanzas))


def demo(version: str = "1.0-1", **kw: str | None) -> str:
    kw.setdefault("sha512", SHA)
    name = f"demo_{version}_amd64.tar.zst"
    return stanza("demo", version, location=f"tpl/{name}", **kw)  # type: ignore[arg-type]


@pytest.fixture
def srv_demo(pveam: Pveam, srv: TestServer, no_sources: Path) -> TestServer:
    srv.add(f"/tpl/{NAME}", DATA)
    publish(srv, demo())
    return srv


def files() -> list[str]:
    directory = template_cache()
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_happy_path(pveam: Pveam, srv_demo: TestServer) -> None:  # test 25
    res = pveam("download", "local", NAME)
    url, dest = srv_demo.url(f"/tpl/{NAME}"), template_cache() / NAME
    assert (res.code, res.err) == (0, "")
    assert res.out == (
        f"downloading {url} to {dest}\n"
        "calculating checksum...OK, checksum verified\n"
        f"download of '{url}' to '{dest}' finished\n"
    )
    assert hashlib.sha512(dest.read_bytes()).hexdigest() == SHA
    assert files() == [NAME]
    listed = pveam("list", "local").out.splitlines()
    assert listed[1] == f"{'local:vztmpl/' + NAME:<60} 5.00MB"


def test_unknown_template(pveam: Pveam, srv_demo: TestServer) -> None:  # test 23
    res = pveam("download", "local", "other_1_amd64.tar.zst")
    assert (res.code, res.out) == (NotFoundError.exit_code, "")
    assert res.err == "\n400 Parameter verification failed.\ntemplate: no such template\n" + USAGE
    assert files() == [] and srv_demo.seen == []


def test_vanished_version_names_the_available_ones(pveam: Pveam, srv_demo: TestServer) -> None:
    res = pveam("download", "local", "demo_0.9-1_amd64.tar.zst")
    assert res.code == NotFoundError.exit_code
    assert res.err.endswith(USAGE + f"hint: available: {NAME}\n")


def test_prefix_picks_the_newest_version(pveam: Pveam, srv: TestServer, no_sources: Path) -> None:
    newest = "demo_1.10-1_amd64.tar.zst"
    srv.add(f"/tpl/{newest}", DATA)
    publish(srv, demo("1.9-1"), demo("1.10-1"), demo("1.2-1"))
    res = pveam("download", "local", "demo")
    assert res.code == 0, res
    assert res.out.splitlines()[0] == (
        f"using '{newest}', the newest template matching 'demo' (source 'a')"
    )
    assert files() == [newest]
    other = stanza("debby", sha512=SHA)
    publish(srv, other, source="b")
    res = pveam("download", "local", "de")  # demo and debby: not one package
    assert res.code == ParamError.exit_code
    assert res.err.endswith(USAGE + "hint: 'de' matches several packages: debby, demo\n")


def test_parameter_and_storage_checks(pveam: Pveam, srv_demo: TestServer) -> None:  # test 24
    write_storage_cfg(
        "dir: local\n\tpath /var/lib/vz\n\tcontent vztmpl,iso\n\n"
        "dir: novz\n\tpath /srv/novz\n\tcontent backup\n\tcreate-base-path 1\n"
    )
    res = pveam("download", "x", NAME)
    assert res.code == ParamError.exit_code
    assert "storage: invalid format - storage ID 'x' cannot be shorter than 2" in res.err
    res = pveam("download", "novz", NAME)
    assert (res.code, res.err) == (
        StorageError.exit_code,
        "storage 'novz' does not support templates\n",
    )
    res = pveam("download", "nope", NAME)
    assert (res.code, res.err) == (NotFoundError.exit_code, "storage 'nope' does not exist\n")
    res = pveam("download", "local")
    assert (res.code, res.err) == (ParamError.exit_code, "400 not enough arguments\n" + USAGE)
    assert srv_demo.seen == []


def test_server_sends_other_bytes(pveam: Pveam, srv_demo: TestServer) -> None:  # test 26
    bad = bytearray(DATA)
    bad[12345] ^= 1
    srv_demo.add(f"/tpl/{NAME}", bytes(bad))
    res = pveam("download", "local", NAME)
    got = hashlib.sha512(bad).hexdigest()
    assert res.code == VerifyError.exit_code
    assert res.err == f"checksum mismatch: got '{got}' != expect '{SHA}'\n"
    assert res.out.endswith("calculating checksum...\n")
    assert files() == []  # no target, no temp file


def test_existing_correct_file(pveam: Pveam, srv_demo: TestServer) -> None:  # test 27
    template_cache().mkdir(parents=True)
    (template_cache() / NAME).write_bytes(DATA)
    res = pveam("download", "local", NAME)
    assert (res.code, res.err) == (0, "")
    assert res.out == (
        "calculating checksum of existing file...\n"
        "OK, got correct file already, no need to download\n"
    )
    assert srv_demo.seen == []


def test_existing_wrong_file_is_left_alone(pveam: Pveam, srv_demo: TestServer) -> None:  # 28
    template_cache().mkdir(parents=True)
    target = template_cache() / NAME
    target.write_bytes(b"something else")
    res = pveam("download", "local", NAME)
    got = hashlib.sha512(b"something else").hexdigest()
    assert res.code == VerifyError.exit_code
    assert res.err == f"checksum mismatch: got '{got}' != expect '{SHA}', aborting\n"
    assert target.read_bytes() == b"something else" and srv_demo.seen == []


def test_md5_only_upper_case_and_no_checksum(  # tests 29, 30
    pveam: Pveam, srv: TestServer, no_sources: Path
) -> None:
    srv.add("/tpl/demo_2-1_amd64.tar.zst", DATA)
    srv.add("/tpl/demo_3-1_amd64.tar.zst", DATA)
    publish(
        srv,
        demo("2-1", sha512=None, md5=MD5.upper()),
        demo("3-1", sha512=SHA.upper()),
        demo("4-1", sha512=None),
    )
    assert pveam("download", "local", "demo_2-1_amd64.tar.zst").code == 0
    assert pveam("download", "local", "demo_3-1_amd64.tar.zst").code == 0
    res = pveam("download", "local", "demo_4-1_amd64.tar.zst")
    assert (res.code, res.err) == (VerifyError.exit_code, "checksum required but not specified\n")
    assert [n for n in files() if not n.startswith(".")] == [
        "demo_2-1_amd64.tar.zst",
        "demo_3-1_amd64.tar.zst",
    ]


def test_second_source_wins(pveam: Pveam, srv: TestServer, no_sources: Path) -> None:  # test 9
    other = os.urandom(1000)
    srv.add(f"/a/tpl/{NAME}", other)
    srv.add(f"/b/tpl/{NAME}", DATA)
    publish(srv, demo(sha512=hashlib.sha512(other).hexdigest()), source="a", prefix="/a")
    publish(srv, demo(), source="b", prefix="/b")
    res = pveam("download", "local", NAME)
    assert res.code == 0, res
    assert [s.path for s in srv.seen] == [f"/b/tpl/{NAME}"]
    assert (template_cache() / NAME).read_bytes() == DATA


def test_dropped_connections_resume(pveam: Pveam, srv_demo: TestServer) -> None:  # test 31
    # The server drops every connection after 1 MB, three times: the run resumes twice (the
    # default retries) and gives up (non-zero, nothing under the final name, the partial file
    # kept); the next run continues from where it stopped.
    srv_demo.add(f"/tpl/{NAME}", DATA, drop_after=1_000_000, drop_times=3)
    res = pveam("download", "local", NAME)
    assert res.code == DownloadError.exit_code
    assert res.err.startswith("download failed: ")
    tmp = temp_path(template_cache() / NAME)
    assert not (template_cache() / NAME).exists()
    assert DATA.startswith(tmp.read_bytes()) and tmp.stat().st_size == 3_000_000
    ranges = [s.headers.get("range") for s in srv_demo.seen]
    assert ranges == [None, "bytes=1000000-", "bytes=2000000-"]
    res = pveam("download", "local", NAME)
    assert res.code == 0, res
    assert f"resuming from byte 3000000 of the partial file '{tmp}'" in res.out
    assert (template_cache() / NAME).read_bytes() == DATA and not tmp.exists()


def wait_for(cond: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_interrupt(pveam: Pveam, srv_demo: TestServer, sig: signal.Signals) -> None:  # test 31
    # TERM and HUP (a closed terminal, a stopped service) end the download as Ctrl-C does:
    # one line, exit 130, the partial file kept for the next run, the lock released
    srv_demo.routes[f"/tpl/{NAME}"].chunk_delay = 0.5
    tmp = temp_path(template_cache() / NAME)
    proc = pveam.popen("download", "local", NAME, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: tmp.exists() and tmp.stat().st_size > 0)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == Interrupted.exit_code
    assert err == "interrupted by signal\n"
    assert not (template_cache() / NAME).exists() and tmp.stat().st_size > 0
    srv_demo.routes[f"/tpl/{NAME}"].chunk_delay = 0
    assert pveam("download", "local", NAME).code == 0
    assert srv_demo.seen[-1].headers["range"].startswith("bytes=")
    assert (template_cache() / NAME).read_bytes() == DATA


def test_killed_mid_transfer_resumes_with_the_right_digest(pveam: Pveam, srv_demo: TestServer):
    # SIGKILL leaves no chance to clean up: whatever reached the partial file is a prefix of
    # the template, and the next run hashes it again before it continues with a Range request
    srv_demo.routes[f"/tpl/{NAME}"].chunk_delay = 0.3
    tmp = temp_path(template_cache() / NAME)
    proc = pveam.popen("download", "local", NAME, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: tmp.exists() and tmp.stat().st_size >= 2 << 20)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    kept = tmp.read_bytes()
    assert DATA.startswith(kept) and len(kept) >= 2 << 20
    assert not (template_cache() / NAME).exists()
    srv_demo.routes[f"/tpl/{NAME}"].chunk_delay = 0
    res = pveam("download", "local", NAME)
    assert res.code == 0, res
    assert f"resuming from byte {len(kept)} of the partial file" in res.out
    assert (template_cache() / NAME).read_bytes() == DATA and not tmp.exists()


def test_proxy_from_the_environment(pveam: Pveam, srv_demo: TestServer) -> None:
    with ForwardProxy() as proxy:
        res = pveam("download", "local", NAME, env={"http_proxy": proxy.url})
    assert res.code == 0, res
    assert proxy.seen == [("GET", srv_demo.url(f"/tpl/{NAME}"))]


def read_all(fd: int) -> bytes:
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 30)
        assert ready, "no output from pveam for 30 s"
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return out
        if not chunk:
            return out
        out += chunk


def test_progress_bar_on_a_terminal(pveam: Pveam, srv_demo: TestServer) -> None:
    srv_demo.routes[f"/tpl/{NAME}"].chunk_delay = 0.25
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(PVEAM), "download", "local", NAME],
        env=pveam.env({"COLUMNS": "120", "TERM": "xterm"}),
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    try:
        screen = read_all(master).decode(errors="replace")
        assert proc.wait(timeout=30) == 0
    finally:
        with contextlib.suppress(OSError):
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "\x1b[" in screen and "MiB" in screen and "━" in screen  # rich's bar
    assert NAME in screen and "calculating checksum...OK, checksum verified" in screen


def test_endless_body_is_bounded_by_the_sources_max_size(
    pveam: Pveam, srv: TestServer, no_sources: Path
) -> None:
    # a server that never ends the body and sends no Content-Length: the source's max-size
    # (set in sources.cfg) stops it, and the partial file is removed
    srv.add(f"/tpl/{NAME}", endless=True)
    add_source("a", srv.url(""), transfer=Transfer(max_size=2 << 20, retries=0))
    assert "\tmax-size 2M\n" in paths.sources_cfg().read_text()
    store_index("a", index_text(demo()))
    res = pveam("download", "local", NAME, timeout=60)
    assert (res.code, res.err) == (
        DownloadError.exit_code,
        "download failed: file too large (limit 2097152 bytes)\n",
    )
    assert files() == []
    assert len(srv.requests_for(f"/tpl/{NAME}")) == 1


def test_symlinked_partial_file_is_refused(
    pveam: Pveam, srv_demo: TestServer, tmp_path: Path
) -> None:
    victim = tmp_path / "host-file"
    victim.write_bytes(b"precious\n")
    template_cache().mkdir(parents=True)
    temp_path(template_cache() / NAME).symlink_to(victim)
    res = pveam("download", "local", NAME)
    assert res.code == StorageError.exit_code
    assert res.err.startswith(f"refusing to write '{temp_path(template_cache() / NAME)}'")
    assert len(res.err.splitlines()) == 1 and "resuming" not in res.out
    assert victim.read_bytes() == b"precious\n" and srv_demo.seen == []


def test_no_room_in_the_template_cache(pveam: Pveam, srv_demo: TestServer) -> None:
    # a 4 MiB file system for a 5 MiB template: refused before a byte is written, one line
    cache = template_cache()
    cache.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(cache)], check=True)
    try:
        res = pveam("download", "local", NAME)
        assert res.code == StorageError.exit_code
        assert res.err.startswith(f"not enough free space in '{cache}': {len(DATA)} more bytes")
        assert len(res.err.splitlines()) == 1
        assert files() == []
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)


def test_partial_files_of_templates_no_index_offers_are_removed(
    pveam: Pveam, srv_demo: TestServer
) -> None:
    """An abandoned download of a template that left the index (a newer version replaced it)
    would stay forever: the next download into the directory removes it, and only it."""
    from index.download import lock_path
    from shared.locks import flock

    cache = template_cache()
    cache.mkdir(parents=True)
    gone, busy = "demo_0.9-1_amd64.tar.zst", "demo_0.8-1_amd64.tar.zst"
    for name in (gone, busy, NAME):
        temp_path(cache / name).write_bytes(b"partial")
    (cache / "notes.tmp_dwnl").mkdir()  # not a template's partial file: left alone
    with flock(lock_path(cache / busy), 0):  # its download runs: left alone
        res = pveam("download", "local", NAME)
    assert res.code == 0, res
    assert f"removed the partial download of '{gone}': no index offers it any more\n" in res.out
    assert busy not in res.out
    assert files() == sorted([NAME, f"{busy}.tmp_dwnl", "notes.tmp_dwnl"])
