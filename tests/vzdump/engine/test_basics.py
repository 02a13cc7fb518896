"""A stopped container backed up to a dump directory or a storage: files on the target, names,
codecs, the log, the config members, and the archive read back with GNU tar (vzdump §10 cases
1-5, 7, 28, 27, 31, 32, 35, 38)."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .conftest import (
    Host,
    log_messages,
    logfile,
    member_text,
    names,
    only_archive,
    pct,
    random_file,
    run,
    tar_list,
    vzdump,
)

pytestmark = pytest.mark.lxc

TS = r"\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d"


def test_stopped_ct_to_dumpdir(host: Host) -> None:
    """Case 1 and 4: exactly archive + log; the log is stop mode without stop/restart lines,
    every line timestamped; the first members are pct.conf and an empty pct.fw."""
    ct = host.create(hostname="web")
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir))
    assert res.rc == 0, res.err
    files = sorted(p.name for p in host.dumpdir.iterdir())
    assert len(files) == 2
    assert re.fullmatch(rf"vzdump-lxc-{ct.vmid}-{TS}\.log", files[0])
    assert re.fullmatch(rf"vzdump-lxc-{ct.vmid}-{TS}\.tar", files[1])
    archive = host.dumpdir / files[1]
    msgs = log_messages(host.dumpdir / files[0])
    assert msgs[:7] == [
        f"INFO: Starting Backup of VM {ct.vmid} (lxc)",
        "INFO: status = stopped",
        "INFO: backup mode: stop",
        "INFO: ionice priority: 7",
        "INFO: CT Name: web",
        "INFO: including mount point rootfs ('/') in backup",
        f"INFO: creating vzdump archive '{archive}'",
    ]
    assert re.fullmatch(r"INFO: Total bytes written: \d+ \(.*\)", msgs[7])
    assert re.fullmatch(r"INFO: archive file size: \d+MB", msgs[8])
    assert re.fullmatch(rf"INFO: Finished Backup of VM {ct.vmid} \(00:00:0\d\)", msgs[9])
    assert len(msgs) == 10
    assert not any("stopping" in m or "restarting" in m for m in msgs)
    # the task log (stderr) has no timestamps, and the job lines only it carries
    assert (
        res.lines[0] == f"INFO: starting new backup job: vzdump {ct.vmid} --dumpdir {host.dumpdir}"
    )
    assert res.lines[-1] == "INFO: Backup job finished successfully"
    assert any(re.fullmatch(r"INFO: Backup started at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", ln)
               for ln in res.lines)  # fmt: skip
    assert not any("Backup started at" in m or "Backup finished at" in m for m in msgs)
    assert (host.root / f"var/log/vzdump/lxc-{ct.vmid}.log").read_text() == (
        logfile(archive).read_text()
    )
    listing = tar_list(archive)
    assert [m.name for m in listing[:3]] == ["./etc/vzdump/pct.conf", "./etc/vzdump/pct.fw", "./"]
    assert listing[1].size == 0
    assert "hostname: web" in member_text(archive, "./etc/vzdump/pct.conf").splitlines()


def test_options_before_the_vmids(host: Host) -> None:
    """A cron line written options first, as Proxmox's option parser takes it: the first
    option was taken for the VMID list ("400 too many arguments"), and nothing was backed up."""
    ct = host.create()
    res = vzdump("--mode", "stop", "--compress", "zstd", "--dumpdir", str(host.dumpdir),
                 "--quiet", "0", str(ct.vmid), "--remove", "0")  # fmt: skip
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    assert archive.name.endswith(".tar.zst") and "./etc/vzdump/pct.conf" in names(archive)


def test_a_repeated_exclude_takes_every_list(host: Host) -> None:
    """``--exclude A --exclude B`` was refused ("duplicate option"); Proxmox joins the lists
    of a ``-list`` option given more than once."""
    cts = [host.create() for _ in range(3)]
    res = vzdump("--all", "--exclude", str(cts[0].vmid), "--dumpdir", str(host.dumpdir),
                 "--exclude", str(cts[2].vmid))  # fmt: skip
    assert res.rc == 0, res.err
    assert [p.name.split("-")[2] for p in host.dumpdir.glob("*.tar")] == [str(cts[1].vmid)]


def test_config_members(host: Host) -> None:
    """Case 4 and 5: pct.conf without lock/parent/snapshots/pending but with bind mount and
    lxc.* lines; pct.fw is the firewall file; the CT's own /etc/vzdump appears again."""
    bind = host.root / "srv-share"
    bind.mkdir()
    ct = host.create(extra=["--mp0", f"{bind},mp=/srv/share"])
    ct.write("etc/vzdump/pct.conf", b"the guest's own file\n")
    conf = ct.conf()
    ct.conf_path.write_text(
        "#my description\n" + conf + "lxc.apparmor.profile: unconfined\nparent: before\n"
        "\n[pve:pending]\nmemory: 1024\n\n[before]\narch: amd64\nhostname: old\n"
        "rootfs: local:1/x.subvol\nsnaptime: 1700000000\n"
    )
    fw = host.root / f"etc/pve/firewall/{ct.vmid}.fw"
    fw.parent.mkdir(parents=True)
    fw.write_text("[OPTIONS]\nenable: 1\n")
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir))
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    text = member_text(archive, "./etc/vzdump/pct.conf")
    lines = text.splitlines()
    assert lines[0] == "#my description"
    assert f"mp0: {bind},mp=/srv/share" in lines
    assert lines[-1] == "lxc.apparmor.profile: unconfined"
    for gone in ("parent:", "lock:", "[", "snaptime", "memory: 1024"):
        assert not any(ln.startswith(gone) for ln in lines), gone
    assert member_text(archive, "./etc/vzdump/pct.fw") == "[OPTIONS]\nenable: 1\n"
    all_names = names(archive)
    assert all_names[:2] == ["./etc/vzdump/pct.conf", "./etc/vzdump/pct.fw"]
    assert all_names.count("./etc/vzdump/pct.conf") == 2  # the guest's own copy in the tree
    assert "./etc/" not in all_names[:2] and "./srv/share/" in all_names


@pytest.mark.parametrize(
    ("compress", "ext", "tool"),
    [("zstd", ".tar.zst", "zstd"), ("gzip", ".tar.gz", "gzip"), ("lzo", ".tar.lzo", "lzop"),
     ("1", ".tar.lzo", "lzop"), ("0", ".tar", None)],
)  # fmt: skip
def test_compressors(host: Host, compress: str, ext: str, tool: str | None) -> None:
    """Case 2: extensions, and the files decompress with the matching tool."""
    ct = host.create()
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--compress", compress)
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    assert archive.name.endswith(ext) and not archive.name.endswith(".tar" + ext)
    raw = (
        subprocess.run([tool, "-dc", str(archive)], capture_output=True, check=True).stdout
        if tool
        else archive.read_bytes()
    )
    listing = run(["tar", "-tf", "-"], stdin=raw)
    assert listing.rc == 0
    assert listing.out.decode().splitlines()[:2] == ["./etc/vzdump/pct.conf", "./etc/vzdump/pct.fw"]


def test_dat_file_then_atomic_rename(host: Host) -> None:
    """Case 3: while the pipeline runs only <base>.tar.dat (and the temp dir) exist; the final
    name appears by the rename at the end."""
    ct = host.create()
    random_file(ct, "big", 6 << 20)
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(p.name for p in host.dumpdir.iterdir())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        res = vzdump(
            str(ct.vmid), "--dumpdir", str(host.dumpdir), "--compress", "zstd",
            "--bwlimit", "8192",
        )  # fmt: skip
    finally:
        done.set()
        watcher.join()
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    base = archive.name.removesuffix(".tar.zst")
    assert f"{base}.tar.dat" in seen and f"{base}.tmp" in seen
    assert sorted(p.name for p in host.dumpdir.iterdir()) == [f"{base}.log", archive.name]
    msgs = log_messages(logfile(archive))
    assert "INFO: bandwidth limit: 8192 KiB/s" in msgs
    # the in-process limit holds: the stream took at least its size / rate (less the
    # token bucket's quarter-second burst)
    total = next(m for m in msgs if m.startswith("INFO: Total bytes written: "))
    nbytes = int(total.split()[4])
    assert nbytes > 6 << 20 and res.seconds > nbytes / (8192 * 1024) - 0.3


def test_unprivileged_archive_in_ct_id_space(host: Host) -> None:
    """Case 7: host owner 100000 is stored as 0, 100033 as 33; no lost+found anywhere."""
    ct = host.create()
    ct.write("srv/www/index.html", b"<html/>", uid=33)
    ct.write("lost+found/orphan", b"x")
    ct.write("srv/lost+found/deep", b"x")
    assert ct.volume().joinpath("srv/www/index.html").stat().st_uid == 100033
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--compress", "zstd")
    assert res.rc == 0, res.err
    listing = {m.name: m for m in tar_list(only_archive(host.dumpdir, ct.vmid))}
    assert (listing["./srv/www/index.html"].uid, listing["./srv/www/index.html"].gid) == (33, 33)
    assert (listing["./etc/hostname"].uid, listing["./"].uid) == (0, 0)
    assert all(m.uid < 65536 for m in listing.values())
    assert not [n for n in listing if "lost+found" in n]


def test_privileged_ct_keeps_lost_and_found(host: Host) -> None:
    ct = host.create(unprivileged=False)
    ct.write("lost+found/orphan", b"x")
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir))
    assert res.rc == 0, res.err
    assert "./lost+found/orphan" in names(only_archive(host.dumpdir, ct.vmid))


def test_storage_target_notes_and_protected(host: Host) -> None:
    """Case 27/28 and the default storage: the archive lands in local's dump dir with
    <archive>.notes (two lines) and <archive>.protected."""
    ct = host.create(hostname="web")
    res = vzdump(
        str(ct.vmid), "--notes-template", r"{{guestname}}\n{{vmid}}", "--protected", "1",
        "--compress", "zstd",
    )  # fmt: skip
    assert res.rc == 0, res.err
    dump = host.root / "var/lib/vz/dump"
    archive = only_archive(dump, ct.vmid)
    assert Path(f"{archive}.notes").read_text() == f"web\n{ct.vmid}"
    assert Path(f"{archive}.protected").read_bytes() == b""
    msgs = log_messages(logfile(archive))
    assert msgs.index("INFO: adding notes to backup") < msgs.index(
        "INFO: marking backup as protected"
    )


def test_notes_template_with_unknown_variable_is_a_parameter_error(host: Host) -> None:
    res = vzdump("100", "--notes-template", "{{foo}}")
    assert res.rc == 2
    assert "notes-template: found unknown: variable 'foo' at char 4" in res.err
    assert not (host.root / "var/log/vzdump").exists()


def test_stdout(host: Host) -> None:
    """Case 31: the archive on stdout lists pct.conf first; logs on stderr; only the .log is
    left in the dump dir, and nothing is pruned."""
    ct = host.create()
    dump = host.root / "var/lib/vz/dump"
    dump.mkdir(parents=True, exist_ok=True)
    old = dump / f"vzdump-lxc-{ct.vmid}-2020_01_01-00_00_00.tar.zst"
    old.write_bytes(b"")
    res = vzdump(str(ct.vmid), "--stdout", "--compress", "zstd", "--prune-backups", "keep-last=1")
    assert res.rc == 0, res.err
    listing = run(["tar", "--zstd", "-tf", "-"], stdin=res.out)
    assert listing.rc == 0, listing.err
    assert listing.out.decode().splitlines()[:3] == [
        "./etc/vzdump/pct.conf", "./etc/vzdump/pct.fw", "./",
    ]  # fmt: skip
    assert "INFO: sending archive to stdout" in res.lines
    assert not any("prune older" in ln or "pruned" in ln for ln in res.lines)
    left = sorted(p.name for p in dump.iterdir())
    assert len(left) == 2 and left[0] == old.name, left
    assert re.fullmatch(rf"vzdump-lxc-{ct.vmid}-{TS}\.log", left[1])


def test_stdout_holds_the_archive_alone(host: Host) -> None:
    """Stop mode of a running container with a hookscript that prints (in pre-stop,
    pre-start, post-start): its lines went into the archive stream, which did not decompress,
    and vzdump exited 0. Everything but the archive goes to stderr, as on Proxmox."""
    ct = host.create()
    snippets = host.root / "var/lib/vz/snippets"
    snippets.mkdir(parents=True, exist_ok=True)
    hook = snippets / "say.sh"
    hook.write_text('#!/bin/sh\necho "hook says $2"\n')
    hook.chmod(0o755)
    pct("set", str(ct.vmid), "--hookscript", "local:snippets/say.sh")
    ct.start()
    res = vzdump(str(ct.vmid), "--stdout", "--mode", "stop", "--compress", "zstd")
    assert res.rc == 0, res.err
    listing = run(["tar", "--zstd", "-tf", "-"], stdin=res.out)
    assert listing.rc == 0 and "./etc/vzdump/pct.conf" in listing.out.decode(), listing.err
    assert "hook says pre-stop" in res.err and "hook says post-start" in res.err
    assert ct.running()


def test_stdout_needs_exactly_one_guest(host: Host) -> None:
    """Case 32."""
    res = vzdump("101", "102", "--stdout")
    assert res.rc == 2
    assert "vmid: you can only backup a single VM with option --stdout" in res.lines
    res = vzdump("--all", "--stdout")
    assert res.rc == 2


def test_missing_guest_and_job_errors(host: Host) -> None:
    """Case 38 and 19: a VMID that does not exist fails alone, the others are archived; the job
    ends with errors and a non-zero exit status."""
    first = host.create()
    missing = host.new_vmid()
    last = host.create()
    res = vzdump(f"{last.vmid},{missing};{first.vmid}", "--dumpdir", str(host.dumpdir))
    assert res.rc == 13, res.err
    assert f"ERROR: Backup of VM {missing} failed - unable to find VM '{missing}'" in res.lines
    starts = [ln for ln in res.lines if ln.startswith("INFO: Starting Backup of VM")]
    assert starts == [
        f"INFO: Starting Backup of VM {first.vmid} (lxc)",
        f"INFO: Starting Backup of VM {last.vmid} (lxc)",
    ]  # a guest that fails before its log is opened never "starts" (as Proxmox)
    order = [ln for ln in res.lines if "Backup of VM" in ln]
    assert str(missing) in order[2] and str(last.vmid) in order[3]
    assert res.lines[-2:] == ["INFO: Backup job finished with errors", "job errors"]
    only_archive(host.dumpdir, first.vmid)
    only_archive(host.dumpdir, last.vmid)
    assert not list(host.dumpdir.glob(f"*{missing}*"))
