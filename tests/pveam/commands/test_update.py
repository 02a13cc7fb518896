"""``pveam update`` through the console script (acceptance tests 6, 7, 11-19; ctkit's pinning
and replay protection), with ctkit's non-zero exit on failure."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from index import store
from index.sources import Transfer
from shared import paths
from shared.errors import DownloadError, Interrupted
from tests.index.conftest import Publisher, index_text, stanza
from tests.pveam.conftest import Pveam, add_source, store_index
from tests.shared.http_server import ForwardProxy, TestServer, make_self_signed

GOOD = index_text(stanza("alpha"), stanza("beta", section="mail"))
OLD = "previous index\n"


@pytest.fixture
def setup(pveam: Pveam, publisher: Publisher, no_sources: Path) -> Publisher:
    """Source ``a`` at ``/a`` pinning the ``trusted`` key, with a previous stored index."""
    add_source("a", publisher.srv.url("/a"), (publisher.keys.fprs["trusted"],))
    store_index("a", OLD)
    return publisher


def failed_message() -> str:
    return f"update failed - see {paths.pveam_log()} for details\n"


def leftovers() -> list[str]:
    return sorted(p.name for p in paths.aplinfo_dir().iterdir() if ".tmp." in p.name)


def assert_failed_and_kept(pveam: Pveam, log_fragment: str, name: str = "a") -> None:
    res = pveam("update")
    assert (res.code, res.out) == (DownloadError.exit_code, "")
    # the failing source and its reason on stderr, then upstream's line
    reason, last = res.err.splitlines()
    assert reason.startswith(f"source '{name}': ")
    assert last + "\n" == failed_message()
    assert store.index_path(name).read_text() == OLD
    assert log_fragment in paths.pveam_log().read_text()
    assert leftovers() == []


def test_success(pveam: Pveam, setup: Publisher) -> None:  # test 11
    raw = setup.publish("/a", GOOD)
    res = pveam("update")
    assert (res.code, res.out, res.err) == (0, "update successful\n", "")
    assert store.index_path("a").read_bytes() == raw
    assert leftovers() == []


def test_signature_by_an_unknown_key(pveam: Pveam, setup: Publisher) -> None:  # test 12
    setup.publish("/a", GOOD, signer="stranger")
    assert_failed_and_kept(pveam, "unable to verify signature")


def test_data_modified_after_signing(pveam: Pveam, setup: Publisher) -> None:  # test 13
    setup.publish("/a", GOOD, tamper=True)
    assert_failed_and_kept(pveam, "unable to verify signature")


@pytest.mark.parametrize("extra", ["compressed", "flood"])
def test_a_signature_file_holding_more_than_signatures_never_reaches_gpg(
    pveam: Pveam, setup: Publisher, extra: str
) -> None:
    """gpg unpacks compressed packets in an ``.asc`` (nested, a 230 KB file held it for hours
    on terabytes of zeros) and checks every one of thousands of signatures (minutes, and
    python-gnupg kept each status line): a detached signature is one or a few signature
    packets, and anything else is refused before gpg reads it."""
    setup.publish("/a", GOOD)
    armoured = setup.srv.routes["/a/aplinfo.dat.asc"].data
    assert isinstance(armoured, bytes)
    sig = subprocess.run(["gpg", "--dearmor"], input=armoured, capture_output=True,
                         check=True).stdout  # fmt: skip
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = deflate.compress(b"\0" * (64 << 20)) + deflate.flush()
    bomb = bytes([0xC8, 255]) + (len(zeros) + 1).to_bytes(4, "big") + b"\x01" + zeros
    setup.srv.add("/a/aplinfo.dat.asc", sig + bomb if extra == "compressed" else sig * 17)
    reason = "an OpenPGP packet of type 8" if extra == "compressed" else "more than 16 signatures"
    assert_failed_and_kept(pveam, f"unable to verify signature - the signature file holds {reason}")
    setup.srv.add("/a/aplinfo.dat.asc", sig * 2)  # a key rollover's two signatures: fine
    assert pveam("update").code == 0


def test_key_in_keyring_but_not_pinned(pveam: Pveam, setup: Publisher) -> None:
    setup.publish("/a", GOOD, signer="other")  # 'other' is trusted, but source a pins only one
    assert_failed_and_kept(pveam, "which is not pinned for source 'a'")


def test_missing_signature(pveam: Pveam, setup: Publisher) -> None:  # test 14
    setup.publish("/a", GOOD)
    del setup.srv.routes["/a/aplinfo.dat.asc"]
    assert_failed_and_kept(pveam, "download failed: 404 Not Found")
    assert "no signature file" in paths.pveam_log().read_text()
    assert setup.srv.requests_for("/a/aplinfo.dat.gz") == []


def test_invalid_gzip(pveam: Pveam, setup: Publisher) -> None:  # test 15
    setup.publish("/a", GOOD, bad_gzip=True)
    assert_failed_and_kept(pveam, "unable to unpack")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (stanza("x").replace("Infopage: https://example.org/\n", ""), "incomplete appliance"),
        (stanza("x", "v1.0"), "unable to parse appliance record: version = 'v1.0'"),
        (stanza("x").replace("Type: lxc", "Type: qemu"), "unknown type 'qemu'"),
        (stanza("x") + "Trailer: field\n", "unable to parse appliance record: Trailer"),
    ],
    ids=["incomplete", "version", "type", "description-not-last"],
)
def test_bad_record_rejects_the_whole_index(  # tests 6, 7, 16
    pveam: Pveam, setup: Publisher, text: str, message: str
) -> None:
    setup.publish("/a", index_text(stanza("good"), text))
    assert_failed_and_kept(pveam, message)


def test_one_source_fails_the_other_succeeds(pveam: Pveam, setup: Publisher) -> None:  # 17
    add_source("b", setup.srv.url("/b"), (setup.keys.fprs["trusted"],))
    store_index("b", OLD)
    setup.publish("/a", GOOD, signer="stranger")
    raw = setup.publish("/b", GOOD)
    assert_failed_and_kept(pveam, "unable to verify signature")
    assert store.index_path("b").read_bytes() == raw


@pytest.fixture
def small_store(setup: Publisher) -> Iterator[Path]:
    """The index store on a 24 MiB tmpfs (a disk to fill at will), holding the old index."""
    where = paths.aplinfo_dir()
    argv = ["mount", "-t", "tmpfs", "-o", "size=24m,mode=0755", "ctkit-test", str(where)]
    subprocess.run(argv, check=True)
    try:
        store_index("a", OLD)
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_a_disk_full_at_the_commit_keeps_the_previous_index(
    pveam: Pveam, setup: Publisher, small_store: Path
) -> None:
    """The store fills up as the new index is unpacked (the downloads keep 16 MiB free; the
    unpacked index, 17 MiB, takes the last page): the new index was renamed into place first,
    and the source then failed with it in use, without its signature copy and its state (the
    replay floor). Now all three are written before any takes its name."""
    long = "\n".join(" " + "x" * 70 for _ in range(17 << 20 >> 6))
    raw = setup.publish("/a", index_text(stanza("alpha", description=f"Big\n{long}")))
    held = [setup.srv.routes[f"/a/aplinfo.dat{ext}"].data for ext in (".asc", ".gz")] + [raw]
    pages = sum(-(-len(data) // 4096) for data in held if isinstance(data, bytes))
    fs = os.statvfs(small_store)
    (small_store / "filler").write_bytes(b"\0" * (fs.f_bavail * fs.f_bsize - pages * 4096))
    assert_failed_and_kept(pveam, "update failed: unable to store data: No space left on device")
    assert not store.signature_path("a").exists() and not store.state_path("a").exists()
    (small_store / "filler").unlink()
    assert pveam("update").code == 0
    assert store.index_path("a").read_bytes() == raw
    assert store.read_state("a").sig_timestamp is not None
    names = sorted(p.name for p in small_store.iterdir())
    assert names == [".a.asc", ".a.state", ".update.lock", "a"]


def test_log_lines_and_rotation(pveam: Pveam, setup: Publisher) -> None:  # test 18
    setup.publish("/a", GOOD)
    log = paths.pveam_log()
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("old line\n" * 30000)  # > 256 KiB
    assert pveam("update").code == 0
    assert log.with_name("pveam.log.0").read_text().startswith("old line\n")
    lines = log.read_text().splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S", ln) for ln in lines)
    assert lines[0].endswith(" starting update") and lines[-1].endswith(" update successful")


def test_replayed_older_index_is_refused(pveam: Pveam, setup: Publisher) -> None:
    now = int(time.time())
    newer = setup.publish("/a", GOOD, when=now - 100)
    assert pveam("update").code == 0
    setup.publish("/a", index_text(stanza("old")), when=now - 5000)
    res = pveam("update")
    assert res.code == DownloadError.exit_code
    assert store.index_path("a").read_bytes() == newer
    assert "refusing a possible replay" in paths.pveam_log().read_text()


def test_proxy_used_for_http_and_https(  # test 19
    pveam: Pveam, setup: Publisher, tmp_path: Path
) -> None:
    tls = make_self_signed(tmp_path)
    raw = setup.publish("/a", GOOD)
    with TestServer(tls.context) as secure, ForwardProxy() as proxy:
        for path, route in setup.srv.routes.items():
            secure.routes[path] = route
        add_source("tls", secure.url("/a"), (setup.keys.fprs["trusted"],))
        env = {"http_proxy": proxy.url, "https_proxy": proxy.url}
        res = pveam("update", env={**env, "REQUESTS_CA_BUNDLE": str(tls.cert)})
        assert (res.code, res.out) == (0, "update successful\n"), res
        url = setup.srv.url("/a")
        assert ("GET", f"{url}/aplinfo.dat.asc") in proxy.seen
        assert ("GET", f"{url}/aplinfo.dat.gz") in proxy.seen
        assert ("CONNECT", secure.base_url.removeprefix("https://")) in proxy.seen
        assert secure.requests_for("/a/aplinfo.dat.gz")  # reached through the tunnel
    assert store.index_path("tls").read_bytes() == raw == store.index_path("a").read_bytes()


def test_stalled_server_gives_up_per_the_sources_timeouts(
    pveam: Pveam, srv: TestServer, no_sources: Path
) -> None:
    # a server that accepts and never answers: read-timeout and retries from sources.cfg
    srv.add("/slow/aplinfo.dat.asc", stall=60)
    add_source("slow", srv.url("/slow"), transfer=Transfer(read_timeout=0.5, retries=1))
    started = time.monotonic()
    res = pveam("update")
    assert time.monotonic() - started < 10
    assert res.code == DownloadError.exit_code
    assert res.err.splitlines()[0] == (
        "source 'slow': update failed - no signature file "
        f"'{paths.aplinfo_dir()}/pveam-slow.tmp.{res.err.split('.tmp.')[1].split('.')[0]}.asc' "
        f"({srv.url('/slow/aplinfo.dat.asc')}: connection timed out)"
    )
    assert len(srv.requests_for("/slow/aplinfo.dat.asc")) == 2


def test_default_source_failure_hints_at_removing_it(pveam: Pveam, no_sources: Path) -> None:
    # a host without internet: the default sources fail; say which and what to do
    paths.sources_cfg().write_text(
        "source: proxmox\n\turl http://127.0.0.1:9/images\n\tindex aplinfo-pve-9.dat\n"
        "\tfingerprints F4E136C67CDCE41AE6DE6FC81140AF8F639E0C39\n\tretries 0\n"
    )
    res = pveam("update")
    assert res.code == DownloadError.exit_code
    lines = res.err.splitlines()
    assert lines[0].startswith("source 'proxmox': update failed - no signature file")
    assert "Connection refused" in lines[0]
    assert lines[-1] == (
        "hint: on a host without internet access, remove the default sources "
        "('pveam source remove proxmox') or set 'enabled 0' in sources.cfg"
    )


def test_sigterm_during_update(pveam: Pveam, srv: TestServer, no_sources: Path) -> None:
    srv.add("/slow/aplinfo.dat.asc", stall=60)
    add_source("slow", srv.url("/slow"))
    proc = pveam.popen("update", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not srv.requests_for("/slow/aplinfo.dat.asc"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err) == (Interrupted.exit_code, "interrupted by signal\n")
    assert leftovers() == []


def test_an_update_killed_mid_download_leaves_nothing_after_the_next(
    pveam: Pveam, setup: Publisher
) -> None:
    """SIGKILL runs no cleanup: what the update had fetched (here the signature, while it waits
    for the index) stayed in the store under the killed run's pid, for good. The next update
    removes it."""
    setup.publish("/a", GOOD)
    setup.srv.routes["/a/aplinfo.dat.gz"].stall = 60
    proc = pveam.popen("update", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not setup.srv.requests_for("/a/aplinfo.dat.gz"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert leftovers() == [f"pveam-a.tmp.{proc.pid}.asc"]
    setup.srv.routes["/a/aplinfo.dat.gz"].stall = 0.0
    assert pveam("update").code == 0
    assert leftovers() == []
