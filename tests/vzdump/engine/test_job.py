"""Job-level behaviour: the node lock and --lockwait, guest selection and order, the job
header, options that are accepted and ignored, --pool, --quiet, --node, ionice and the
progress display on a terminal (vzdump §1, §6, §10 case 30)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from shared import paths

from .conftest import (
    BIN,
    Host,
    archives,
    log_messages,
    logfile,
    only_archive,
    random_file,
    start_vzdump,
    vzdump,
    wait_for_line,
)

pytestmark = pytest.mark.lxc


def test_node_lock(host: Host) -> None:
    """Case 30: a second vzdump waits for the first one's node lock and then runs; with
    --lockwait 0 it fails at once."""
    first = host.create()
    # long enough (12 s at the limit) that a loaded machine still starts the other two meanwhile
    random_file(first, "big", 12 << 20)
    second = host.create()
    lock = host.root / "run/vzdump.lock"
    proc = start_vzdump(str(first.vmid), "--dumpdir", str(host.dumpdir), "--bwlimit", "1024")
    try:
        wait_for_line(proc, "creating vzdump archive")
        waiting = start_vzdump(str(second.vmid), "--dumpdir", str(host.dumpdir))
        at_once = vzdump(str(second.vmid), "--dumpdir", str(host.dumpdir), "--lockwait", "0")
        assert proc.poll() is None, "the first job ended too early for this test"
        _out, err = waiting.communicate(timeout=60)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert at_once.rc == 5 and at_once.seconds < 10  # no waiting, only start-up time
    assert at_once.lines[-2:] == [
        f"ERROR: Backup job failed - can't acquire lock '{lock}' (wait = 0)",
        f"can't acquire lock '{lock}' (wait = 0)",
    ]
    lines = err.decode().splitlines()
    assert waiting.returncode == 0, lines
    assert lines[1:3] == ["INFO: trying to get global lock - waiting...", "INFO: got global lock"]
    assert proc.returncode == 0
    assert len(archives(host.dumpdir, first.vmid)) == len(archives(host.dumpdir, second.vmid)) == 1


def test_all_exclude_order_header_and_ignored_options(host: Host) -> None:
    """--all minus --exclude, guests in VMID order; the header rebuilds the command line;
    VM/PBS-only options are accepted with a note; ionice applies to the tools it runs."""
    cts = [host.create() for _ in range(3)]
    script = host.root / "ionice.sh"
    script.write_text('#!/bin/sh\n[ "$1" = backup-start ] && echo "io: $(ionice)"\nexit 0\n')
    script.chmod(0o755)
    res = vzdump(
        "--all", "1", "--exclude", str(cts[1].vmid), "--dumpdir", str(host.dumpdir),
        "--ionice", "8", "--performance", "max-workers=2", "--fleecing", "0",
        "--pbs-change-detection-mode", "data", "--exclude-path", "/a b", "--script", str(script),
    )  # fmt: skip
    assert res.rc == 0, res.err
    assert res.lines[0] == (
        f"INFO: starting new backup job: vzdump --all 1 --exclude {cts[1].vmid} --dumpdir "
        f"{host.dumpdir} --ionice 8 --performance 'max-workers=2' --fleecing 0 "
        f"--pbs-change-detection-mode data --exclude-path '/a b' --script {script}"
    )
    for option in ("performance", "fleecing", "pbs-change-detection-mode"):
        assert f"INFO: option '{option}' only concerns VMs or Proxmox Backup Server - ignored" in (
            res.lines
        )
    starts = [ln for ln in res.lines if ln.startswith("INFO: Starting Backup")]
    assert starts == [f"INFO: Starting Backup of VM {cts[i].vmid} (lxc)" for i in (0, 2)]
    assert not archives(host.dumpdir, cts[1].vmid)
    msgs = log_messages(logfile(only_archive(host.dumpdir, cts[2].vmid)))
    assert "INFO: ionice priority: 8" in msgs and "INFO: io: idle" in msgs


def test_pool_quiet_and_node(host: Host) -> None:
    """--pool backs up the pool's guests of this host, as user.cfg's ``pool:`` line lists them
    (an unknown pool fails before the task). --quiet silences stdout and stderr but keeps the
    logs (and the archive on stdout with --stdout). --node of another host is a silent no-op."""
    res = vzdump("--pool", "web")
    assert res.rc == 3 and "pool 'web' does not exist" in res.err
    ct = host.create()
    (host.root / "etc/pve/user.cfg").write_text(
        f"user:root@pam:1:0:::::\npool:web:front ends:900000998,{ct.vmid}::\n"
    )
    res = vzdump("--pool", "web", "--dumpdir", str(host.dumpdir))
    assert res.rc == 0, res.err
    assert [ln for ln in res.lines if ln.startswith("INFO: Starting Backup of VM")] == [
        f"INFO: Starting Backup of VM {ct.vmid} (lxc)"
    ]
    only_archive(host.dumpdir, ct.vmid).unlink()
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--quiet", "1")
    assert (res.rc, res.out, res.err) == (0, b"", "")
    assert log_messages(logfile(only_archive(host.dumpdir, ct.vmid)))[-1].startswith(
        "INFO: Finished Backup"
    )
    res = vzdump(str(ct.vmid), "--stdout", "--quiet", "1")
    assert res.rc == 0 and res.err == "" and res.out[257:262] == b"ustar"
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--node", "not-this-node")
    assert (res.rc, res.out, res.err) == (0, b"", "")
    assert len(archives(host.dumpdir, ct.vmid)) == 1


def test_progress_on_a_terminal(host: Host) -> None:
    """A progress display when stderr is a terminal (plain log lines otherwise)."""
    ct = host.create()
    random_file(ct, "big", 3 << 20)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN / "vzdump"), str(ct.vmid), "--dumpdir", str(host.dumpdir), "--bwlimit", "4096"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _w, _x = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal closed: vzdump exited
                    break
                if not chunk:
                    break
                screen += chunk
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    text = screen.decode(errors="replace")
    assert f"backup of CT {ct.vmid}" in text and "MiB" in text
    assert "Backup job finished successfully" in text


def test_setup_errors(host: Host) -> None:
    """§7 job level: target problems end the job before any guest, with Proxmox's prefixes."""
    host.storage_cfg("dir: local\n\tpath /var/lib/vz\n\tcontent rootdir,vztmpl,backup\n\n"
                     "dir: tpl\n\tpath /srv/tpl\n\tcontent vztmpl\n")  # fmt: skip
    cases = [
        (["--dumpdir", "/nonexistent/dir/"], "dumpdir '/nonexistent/dir' does not exist"),
        (["--dumpdir="], "dumpdir '' does not exist"),  # was storage 'None' does not exist
        (["--tmpdir", "/nonexistent"], "tmpdir '/nonexistent' does not exist"),
        # longer than a path may be: Path.is_dir() raised ENAMETOOLONG (a traceback)
        (["--dumpdir", "/" + "x" * 5000], f"dumpdir '/{'x' * 5000}' does not exist"),
        (["--tmpdir", "/" + "x" * 5000], f"tmpdir '/{'x' * 5000}' does not exist"),
        (["--storage", "tpl"], "could not get storage information for 'tpl': can't use "
                               "storage 'tpl' for backups - wrong content type"),
        (["--storage", "nosuch"], "could not get storage information for 'nosuch': "),
    ]  # fmt: skip
    for args, message in cases:
        res = vzdump("100", *args)
        assert res.rc != 0
        assert res.lines[1].startswith(f"ERROR: Backup job failed - {message}"), res.lines
        assert not any("Starting Backup" in ln for ln in res.lines)


def test_vzdump_conf_defaults_and_precedence(host: Host) -> None:
    """§1.3: the conf's values apply unless the command line gives one; bad lines warn and are
    skipped; storage wins over dumpdir in the conf."""
    ct = host.create()
    conf = "/etc/vzdump.conf"  # the messages name the file as Proxmox does, whatever the root
    host.vzdump_conf(
        "# node defaults\ncompress: gzip\nbwlimit: 65536\nionice: 5\nbogus: 1\nno colon here\n"
        f"storage: local\ndumpdir: {host.dumpdir}\n"
    )
    res = vzdump(str(ct.vmid), "--compress", "zstd", "--ionice", "6")
    assert res.rc == 0, res.err
    assert res.lines[1:4] == [  # (lines without a colon while reading, key errors after)
        "WARN: ignore config line: no colon here",
        f"WARN: parse error in '{conf}' - 'bogus': property is not defined in schema and the "
        "schema does not allow additional properties",
        f"WARN: both 'storage' and 'dumpdir' defined in '{conf}' - ignoring 'dumpdir'",
    ]
    archive = only_archive(host.root / "var/lib/vz/dump", ct.vmid)
    assert archive.name.endswith(".tar.zst")  # the command line beats the conf
    msgs = log_messages(logfile(archive))
    assert "INFO: bandwidth limit: 65536 KiB/s" in msgs and "INFO: ionice priority: 6" in msgs
    assert not list(host.dumpdir.iterdir())


@pytest.mark.parametrize("what", ["fifo", "directory"])
def test_stop_with_no_pid_file_of_ours_in_place_is_a_no_op(ctroot: Path, what: str) -> None:
    """``vzdump --stop`` read the pid file as it found it: a FIFO there held it for good, a
    directory ended in a traceback. Neither is a running vzdump's."""
    pid_file = paths.vzdump_pid()
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(pid_file) if what == "fifo" else pid_file.mkdir()
    res = vzdump("--stop", timeout=20)
    assert (res.rc, res.err) == (0, "")
