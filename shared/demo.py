"""``make demo``: ctkit's main job end to end, on built-in defaults, narrated and timed.

Everything happens below its own root (``CTKIT_ROOT``, default ``/var/tmp/ctkit-demo``), so the
host's real configuration is never touched. The apps run as separate processes, exactly as a
user would type them. The Debian root file system made by debootstrap is cached between runs.
``KEEP=1`` leaves the demo root to explore (containers stopped, file systems unmounted).
The containers' ids are ``DEMO_VMID`` and the next one; the default is from the range the
tests use, far above any real container's id (cgroup names are host-wide).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(os.environ.get("CTKIT_ROOT") or "/var/tmp/ctkit-demo")
CACHE = Path(os.environ.get("CTKIT_CACHE", "/var/tmp/ctkit-cache"))
VMID = int(os.environ.get("DEMO_VMID", "900009100"))
SECOND_VMID = VMID + 1  # the suspend-mode backup restored beside the original, then a clone
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
TEMPLATE = "debian-12-ctkitdemo_12.0-1_amd64.tar.zst"
BIN = Path(sys.executable).parent
BTRFS = "demo-btrfs"
STEPS = 10


class DemoError(Exception):
    pass


@dataclass
class Demo:
    root: Path = ROOT
    keep: bool = os.environ.get("KEEP", "") not in ("", "0")
    timings: list[tuple[str, float]] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    step_no: int = 0
    gnupghome: Path | None = None

    def __post_init__(self) -> None:
        self.env = {**os.environ, "CTKIT_ROOT": str(self.root)}
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            self.env.pop(var, None)

    # --- narration ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.step_no += 1
        print(f"\n\033[1m==> [{self.step_no}/{STEPS}] {title}\033[0m", flush=True)
        started = time.monotonic()
        yield
        secs = time.monotonic() - started
        self.timings.append((title, secs))
        print(f"    ({secs:.1f} s)", flush=True)

    def run(self, argv: Sequence[str], *, show: bool = True, check: bool = True) -> str:
        """Run a command the way a user would, show it and its output."""
        shown = shlex.join(argv)
        if show:
            print(f"  $ {shown}", flush=True)
        cmd = [str(BIN / argv[0]) if (BIN / argv[0]).exists() else argv[0], *argv[1:]]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=False)
        out = (proc.stdout + proc.stderr).rstrip("\n")
        if show and out:
            print("\n".join("    " + line for line in out.splitlines()), flush=True)
        if check and proc.returncode != 0:
            raise DemoError(f"'{shown}' failed with exit code {proc.returncode}")
        return proc.stdout + proc.stderr

    def ct(self, script: str, vmid: int = VMID) -> str:
        return self.run(["pct", "exec", str(vmid), "--", "sh", "-c", script])


# --- step 1: the appliance ------------------------------------------------------------------


def debian_rootfs(demo: Demo) -> Path:
    """A minimal Debian 12 with sysvinit, made by debootstrap once and cached."""
    rootfs = CACHE / "debian-12-rootfs"
    if (rootfs / "sbin/init").exists():
        print(f"  using the cached Debian root file system in {rootfs}")
        return rootfs
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / "debian-12-rootfs.tmp"
    shutil.rmtree(work, ignore_errors=True)
    packages = "sysvinit-core,procps,ifupdown,iproute2"
    demo.run(["debootstrap", "--variant=minbase", f"--include={packages}", "bookworm", str(work),
              MIRROR])  # fmt: skip
    work.rename(rootfs)
    return rootfs


def pack_template(demo: Demo, rootfs: Path, catalog: Path) -> Path:
    cached = CACHE / TEMPLATE
    if not cached.exists() or cached.stat().st_mtime < (rootfs / "sbin/init").stat().st_mtime:
        tmp = cached.with_suffix(".part")
        demo.run(["tar", "-C", str(rootfs), "--numeric-owner", "--zstd", "-cf", str(tmp), "."])
        tmp.rename(cached)
    target = catalog / TEMPLATE
    shutil.copyfile(cached, target)
    size = target.stat().st_size
    print(f"  template {TEMPLATE}: {size / 2**20:.1f} MiB")
    demo.facts["template size"] = f"{size / 2**20:.1f} MiB"
    return target


def gnupg_home(demo: Demo) -> Path:
    """The publisher's keyring: a short path of its own, since gpg-agent's sockets live in it
    and a socket path holds at most 107 bytes (a deep CTKIT_ROOT, as under pytest, would
    not); removed again by :func:`cleanup`."""
    if demo.gnupghome is None:
        demo.gnupghome = Path(tempfile.mkdtemp(prefix="ctkit-demo-gpg-", dir="/tmp"))
    return demo.gnupghome


def demo_key(demo: Demo, catalog: Path) -> str:
    home = gnupg_home(demo)
    env = {**demo.env, "GNUPGHOME": str(home)}
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", "ctkit demo catalog <demo@localhost>",
                    "ed25519", "sign", "1d"], env=env, check=True, capture_output=True)  # fmt: skip
    listing = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--list-secret-keys"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    with open(catalog / "demo-key.asc", "wb") as out:
        subprocess.run(["gpg", "--batch", "--armor", "--export", fpr], env=env, stdout=out,
                       check=True)  # fmt: skip
    print(f"  demo signing key {fpr} (generated now, valid one day)")
    return fpr


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """The catalog on 127.0.0.1 (a plain web server is all a catalog needs)."""
    handler = partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


# --- steps 2-6 ------------------------------------------------------------------------------


def pveam_steps(demo: Demo, url: str, catalog: Path) -> None:
    demo.run(["pveam", "key", "add", str(catalog / "demo-key.asc")])
    for source in ("proxmox", "turnkey"):  # the demo never leaves this host
        demo.run(["pveam", "source", "remove", source])
    fpr = demo.facts["key"]
    demo.run(["pveam", "source", "add", "demo", url, "--index", "aplinfo.dat",
              "--fingerprints", fpr])  # fmt: skip
    demo.run(["pveam", "source", "list"])
    demo.run(["pveam", "update"])
    demo.run(["pveam", "available"])
    demo.run(["pveam", "download", "local", "debian-12-ctkitdemo"])
    demo.run(["pveam", "list", "local"])


def make_btrfs(demo: Demo) -> Path:
    """A btrfs file system on a loop device, registered as storage ``demo-btrfs``."""
    image = demo.root / "demo-btrfs.img"
    mnt = demo.root / "mnt" / BTRFS
    mnt.mkdir(parents=True, exist_ok=True)
    if not _mounted(mnt):
        if not image.exists():
            with open(image, "wb") as fh:
                fh.truncate(4 << 30)
            demo.run(["mkfs.btrfs", "-q", str(image)], show=False)
        demo.run(["mount", "-o", "loop", str(image), str(mnt)], show=False)
    cfg = demo.root / "etc/pve/storage.cfg"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        "dir: local\n\tpath /var/lib/vz\n\tcontent vztmpl,backup,rootdir,iso,snippets\n\n"
        f"btrfs: {BTRFS}\n\tpath {mnt}\n\tcontent rootdir,images,backup\n"
    )
    print(f"  storage '{BTRFS}': btrfs on a loop device at {mnt} (see {cfg})")
    return mnt


def _mounted(path: Path) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        return any(line.split()[1] == real for line in fh)


def container_steps(demo: Demo) -> None:
    tpl = f"local:vztmpl/{TEMPLATE}"
    demo.run(["pct", "create", str(VMID), tpl, "--hostname", "demo", "--rootfs", f"{BTRFS}:2",
              "--memory", "512", "--swap", "256"])  # fmt: skip
    demo.run(["pct", "start", str(VMID)])
    demo.run(["pct", "list"])
    demo.ct("mkdir -p /srv/demo && dd if=/dev/urandom of=/srv/demo/blob bs=1M count=32 2>/dev/null"
            " && echo 'hello from ctkit' > /srv/demo/hello.txt"
            " && sha256sum /srv/demo/* /etc/hostname | tee /root/checksums")  # fmt: skip
    demo.facts["checksums"] = demo.ct("cat /root/checksums")
    demo.run(["pct", "set", str(VMID), "--memory", "1024"])
    limit = _memory_limit(VMID)
    print(f"  the container's cgroup now says: memory limit {limit} bytes (live, no restart)")
    demo.run(["pct", "pending", str(VMID)])


def _memory_limit(vmid: int) -> str:
    for path in (f"/sys/fs/cgroup/lxc/{vmid}/memory.max",
                 f"/sys/fs/cgroup/memory/lxc/{vmid}/memory.limit_in_bytes"):  # fmt: skip
        with contextlib.suppress(OSError):
            return Path(path).read_text().strip()
    return "?"


def backup_steps(demo: Demo) -> None:
    out = demo.run(["vzdump", str(VMID), "--mode", "suspend", "--storage", "local",
                    "--compress", "zstd"])  # fmt: skip
    _collect(demo, "suspend", out)
    for run in (1, 2, 3):
        out = demo.run(["vzdump", str(VMID), "--mode", "snapshot", "--storage", BTRFS,
                        "--compress", "zstd", "--prune-backups", "keep-last=2",
                        "--notes-template", "{{guestname}} demo run " + str(run)],
                       show=run == 1 or run == 3)  # fmt: skip
        _collect(demo, "snapshot", out)
        time.sleep(1.1)  # backup names have one-second resolution
    demo.run(["vzdump", "prune", BTRFS, "--vmid", str(VMID), "--prune-backups", "keep-last=2",
              "--dry-run"])  # fmt: skip


def verify_steps(demo: Demo) -> None:
    """Know the backup: verify it end to end, list it with the result, look inside it and get
    one file back."""
    volid = newest_backup(demo, BTRFS)
    demo.run(["vzdump", "verify", volid])
    demo.run(["vzdump", "list", BTRFS, "--vmid", str(VMID)])
    demo.run(["vzdump", "browse", volid, "/srv/demo"])
    target = demo.root / "extracted"
    demo.run(["vzdump", "extract", volid, "/srv/demo/hello.txt", "--target", str(target)])
    if (target / "srv/demo/hello.txt").read_text() != "hello from ctkit\n":
        raise DemoError("the file extracted from the backup differs from the original")
    print("  one file back from the backup, identical to the original")


def _collect(demo: Demo, mode: str, log: str) -> None:
    for label, pattern in (("frozen window", r"frozen window: ([\d.]+ s)"),
                           ("written", r"Total bytes written: \d+ \(([^)]*)\)"),
                           ("archive", r"archive file size: (\S+)")):  # fmt: skip
        m = re.search(pattern, log)
        if m:
            demo.facts[f"{mode}: {label}"] = m.group(1)


def newest_backup(demo: Demo, storage: str) -> str:
    listing = demo.run(["vzdump", "prune", storage, "--vmid", str(VMID), "--dry-run",
                        "--output-format", "json"], show=False)  # fmt: skip
    rows = json.loads(listing)
    return str(max(rows, key=lambda r: r["ctime"])["volid"])


def restore_steps(demo: Demo) -> None:
    snapshot_backup = newest_backup(demo, BTRFS)
    suspend_backup = newest_backup(demo, "local")
    demo.run(["pct", "destroy", str(VMID), "--force"])
    demo.run(["pct", "restore", str(VMID), snapshot_backup, "--storage", BTRFS])
    demo.run(["pct", "start", str(VMID)])
    check_data(demo, VMID)
    # the suspend-mode backup too, as a second container beside the first: a first try is
    # killed half-way, and the next command undoes it
    killed_restore(demo, suspend_backup)
    demo.run(["pct", "restore", str(SECOND_VMID), suspend_backup, "--storage", BTRFS])
    demo.run(["pct", "start", str(SECOND_VMID)])
    check_data(demo, SECOND_VMID)
    demo.run(["pct", "destroy", str(SECOND_VMID), "--force"])


def killed_restore(demo: Demo, archive: str) -> None:
    """SIGKILL runs no cleanup: the restore leaves a locked config and half-filled volumes,
    which the next command that meets the id (here ``pct list``) frees and removes."""
    argv = ["pct", "restore", str(SECOND_VMID), archive, "--storage", BTRFS, "--bwlimit", "2048"]
    print(f"  $ {shlex.join(argv)}   # killed with SIGKILL once it extracts", flush=True)
    proc = subprocess.Popen(
        [str(BIN / "pct"), *argv[1:]], env=demo.env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(b"extracting archive"):
                break
        time.sleep(1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    out = demo.run(["pct", "list"])
    if "removed the config of the unfinished pct restore" not in out:
        raise DemoError("the killed restore was not undone")


def check_data(demo: Demo, vmid: int) -> None:
    now = demo.ct("sha256sum -c /root/checksums && cat /root/checksums", vmid)
    if demo.facts["checksums"].strip() not in now:
        raise DemoError(f"restored data of CT {vmid} differs from what was backed up")
    print(f"  data intact: every checksum matches what was written before the backup (CT {vmid})")


def host_steps(demo: Demo) -> None:
    """The host runs its containers: a full clone from a snapshot of the running CT, its volume
    moved to another storage, a volume hot-plugged into the running CT, both by onboot order."""
    demo.run(["pct", "snapshot", str(VMID), "demo"])
    demo.run(["pct", "clone", str(VMID), str(SECOND_VMID), "--snapname", "demo", "--full",
              "--storage", "local", "--hostname", "demo-clone"])  # fmt: skip
    demo.run(["pct", "delsnapshot", str(VMID), "demo"])
    demo.run(["pct", "move-volume", str(SECOND_VMID), "rootfs", BTRFS, "--delete"])
    demo.run(["pct", "set", str(VMID), "--mp0", f"{BTRFS}:1,mp=/srv/extra"])
    out = demo.ct("echo plugged in > /srv/extra/hello && grep ' /srv/extra ' /proc/mounts")
    if "/srv/extra" not in out:
        raise DemoError("the hot-plugged volume is not mounted in the container")
    print("  /srv/extra: a new volume, mounted in the running container without a restart")
    for vmid, startup in ((VMID, "order=1"), (SECOND_VMID, "order=2,up=1")):
        demo.run(["pct", "set", str(vmid), "--onboot", "1", "--startup", startup])
    demo.run(["pct", "startall"])  # the clone starts; the first CT runs already
    demo.run(["pct", "list"])
    out = demo.ct(CLONE_CHECK, SECOND_VMID)
    if "FAILED" in out or "hostname: demo-clone" not in out:
        raise DemoError("the clone's data or hostname is not what was cloned")
    print("  the clone: the data of the snapshot, its own hostname")


# the clone's data checked against the original's checksums (its hostname is its own)
CLONE_CHECK = (
    "grep ' /srv/demo/' /root/checksums | sha256sum -c && echo hostname: $(cat /etc/hostname)"
)


def job_steps(demo: Demo) -> None:
    """A nightly job of both containers, two at once: each guest's lines are prefixed."""
    vmids = f"{VMID},{SECOND_VMID}"
    demo.run(["vzdump", "job", "add", "demo-nightly", "--schedule", "02:00", "--vmid", vmids,
              "--storage", BTRFS, "--mode", "snapshot", "--compress", "zstd", "--parallel", "2",
              "--prune-backups", "keep-daily=7,keep-last=3"])  # fmt: skip
    demo.run(["vzdump", "job", "run", "demo-nightly"])
    demo.run(["vzdump", "job", "list"])
    demo.run(["cat", str(demo.root / "etc/pve/jobs.cfg")])


def migrate_steps(demo: Demo) -> None:
    """A second host (a network namespace with its own sshd and ctkit root): its host key
    pinned, the running clone moved there with a short downtime, its data checked there."""
    from .fakehost import fake_host  # the test bed's second host; only the demo needs it

    workdir = demo.root / "far"
    workdir.mkdir(exist_ok=True)
    with fake_host(workdir, BIN / "pct", btrfs_size=2 << 30) as far:
        print(f"  a second host: network namespace {far.netns}, sshd on {far.address}")
        demo.run(["pct", "remote", "add", "far", "--host", far.address, "--hostkey-file",
                  str(far.hostkey), "--identity", str(far.identity), "--command",
                  str(far.pct_path), "--root", str(far.root)])  # fmt: skip
        demo.run(["pct", "remote", "check", "far", "--vmid", str(SECOND_VMID)])
        out = demo.run(["pct", "migrate", str(SECOND_VMID), "far", "--restart",
                        "--target-storage", f"{BTRFS}:fbt"])  # fmt: skip
        m = re.search(r"migration downtime ([\d.]+ s)", out)
        if m:
            demo.facts["migration downtime"] = m.group(1)
        there = far.run_pct("exec", SECOND_VMID, "--", "sh", "-c", shlex.quote(CLONE_CHECK))
        if there.returncode != 0 or "FAILED" in there.stdout:
            raise DemoError(f"the migrated container's data differs:\n{there.stdout}{there.stderr}")
        status = far.run_pct("status", SECOND_VMID).stdout.strip()
        print(f"  on the second host: CT {SECOND_VMID} {status}; every checksum matches")
        demo.run(["pct", "list"])


def restic_steps(demo: Demo, target_storage: str = BTRFS) -> None:
    """Off-site: a nightly job into a restic repository served on 127.0.0.1 (REST, by
    ``rclone serve restic``), run twice; a restore from it into a second CT, data checked."""
    port = _free_port()
    data = demo.root / "restic-rest"
    data.mkdir(parents=True, exist_ok=True)
    secrets = demo.root / "restic-secrets"
    secrets.mkdir(mode=0o700, exist_ok=True)
    (secrets / "pw").write_text(f"demo-{os.urandom(8).hex()}\n")
    rest_pass = os.urandom(8).hex()
    (secrets / "env").write_text(f"RESTIC_REST_USERNAME=demo\nRESTIC_REST_PASSWORD={rest_pass}\n")
    server = subprocess.Popen(
        ["rclone", "serve", "restic", "--addr", f"127.0.0.1:{port}", "--user", "demo",
         "--pass", rest_pass, str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    copy = VMID + 1
    try:
        _wait_port(port, server)
        print(f"  a restic REST server (rclone serve restic) on 127.0.0.1:{port}")
        demo.run(["vzdump", "storage", "add", "restic", "offsite", "--repository",
                  f"rest:http://127.0.0.1:{port}/", "--env-file", str(secrets / "env"),
                  "--password-file", str(secrets / "pw"), "--init"])  # fmt: skip
        stored = sorted(p.name for p in (demo.root / "etc/pve/priv/storage").iterdir())
        print(f"  secrets, 0600 in /etc/pve/priv/storage: {', '.join(stored)} (offsite.key: this "
              "node's own key of the repository, which restic opens in milliseconds)")  # fmt: skip
        started = time.monotonic()
        demo.run(["vzdump", "list", "offsite"], show=False)
        demo.facts["restic listing"] = f"{time.monotonic() - started:.2f}s with this node's key"
        demo.run(["vzdump", "job", "add", "demo-offsite", "--schedule", "03:00", "--vmid",
                  str(VMID), "--storage", "offsite", "--mode", "snapshot",
                  "--prune-backups", "keep-daily=7"])  # fmt: skip
        for night in (1, 2):
            out = demo.run(["vzdump", "job", "run", "demo-offsite"])
            m = re.search(r"restic: (.*)", out)
            if m:
                demo.facts[f"restic night {night}"] = m.group(1)
            time.sleep(1.1)  # snapshot times have one-second resolution
        rows = json.loads(demo.run(["vzdump", "list", "offsite", "--output-format", "json"],
                                   show=False))  # fmt: skip
        demo.run(["vzdump", "list", "offsite"])
        volid = str(max(rows, key=lambda r: r["ctime"])["volid"])
        demo.run(["pct", "restore", str(copy), volid, "--storage", target_storage])
        demo.run(["pct", "start", str(copy)])
        now = demo.run(["pct", "exec", str(copy), "--", "sh", "-c", "sha256sum -c /root/checksums"])
        if "FAILED" in now:
            raise DemoError("the restore from restic differs from what was backed up")
        print("  restored from the restic repository: every checksum matches")
    finally:
        demo.run(["pct", "stop", str(copy)], show=False, check=False)
        demo.run(["pct", "destroy", str(copy)], show=False, check=False)
        server.terminate()
        server.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError("rclone serve restic did not start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise DemoError(f"nothing listens on 127.0.0.1:{port}")


# --- the whole demo -------------------------------------------------------------------------


def summary(demo: Demo) -> None:
    print("\n\033[1m==> Summary\033[0m")
    total = sum(secs for _t, secs in demo.timings)
    for title, secs in demo.timings:
        print(f"  {secs:7.1f} s  {title}")
    print(f"  {total:7.1f} s  in all")
    for key in sorted(demo.facts):
        if key not in ("checksums", "key"):
            print(f"  {key}: {demo.facts[key]}")
    if demo.keep:
        print(f"\n  demo root: {demo.root}  (explore: CTKIT_ROOT={demo.root} .venv/bin/pct list)")
    else:
        print(f"\n  demo root {demo.root} removed again; KEEP=1 make demo keeps it to explore")


def cleanup(demo: Demo) -> None:
    """Stop what the demo started and unmount what it mounted; KEEP=1 keeps the files."""
    lxcpath = demo.root / "var/lib/lxc"
    for vmid in (VMID, SECOND_VMID):
        if (lxcpath / str(vmid) / "config").exists():
            subprocess.run(["lxc-stop", "-P", str(lxcpath), "-n", str(vmid), "-k"],
                           capture_output=True, check=False)  # fmt: skip
    mnt = demo.root / "mnt" / BTRFS
    for _ in range(3):
        if not _mounted(mnt):
            break
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)
        time.sleep(0.2)
    if _mounted(mnt):
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)
    if demo.gnupghome is not None:
        env = {**demo.env, "GNUPGHOME": str(demo.gnupghome)}
        kill = ["gpgconf", "--kill", "gpg-agent"]
        subprocess.run(kill, env=env, capture_output=True, check=False)
        shutil.rmtree(demo.gnupghome, ignore_errors=True)
    if demo.keep:
        print(f"  KEEP=1: kept {demo.root}; to use the btrfs storage again:"
              f" mount -o loop {demo.root / 'demo-btrfs.img'} {mnt}")  # fmt: skip
    else:
        shutil.rmtree(demo.root, ignore_errors=True)


def prepare_root(demo: Demo) -> None:
    cleanup(Demo(root=demo.root, keep=False))  # a previous demo's leftovers
    demo.root.mkdir(parents=True, exist_ok=True)


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root (containers, loop devices, mounts)", file=sys.stderr)
        return 1
    demo = Demo()
    prepare_root(demo)
    catalog = demo.root / "catalog"
    catalog.mkdir(parents=True, exist_ok=True)
    try:
        with serve(catalog) as url:
            with demo.step("Build an appliance and publish a signed catalog"):
                rootfs = debian_rootfs(demo)
                pack_template(demo, rootfs, catalog)
                demo.facts["key"] = demo_key(demo, catalog)
                demo.run(["pveam", "index", "build", str(catalog), "--url", url,
                          "--key", demo.facts["key"], "--section", "system",
                          "--gnupghome", str(gnupg_home(demo))])  # fmt: skip
            with demo.step("pveam: trust the key, add the source, update, download"):
                pveam_steps(demo, url, catalog)
        with demo.step("pct: create a container on btrfs, start it, write data, resize memory"):
            make_btrfs(demo)
            container_steps(demo)
        with demo.step("vzdump: suspend mode to local, snapshot mode to btrfs, retention"):
            backup_steps(demo)
            verify_steps(demo)
        with demo.step("pct destroy, restore the newest backup and the suspend-mode one, check"):
            restore_steps(demo)
        with demo.step("The host runs its containers: clone, move, hot-plug, onboot order"):
            host_steps(demo)
        with demo.step("A scheduled backup job of both containers, two at once, run now"):
            job_steps(demo)
        with demo.step("Move the clone to a second host over SSH, seconds of downtime"):
            migrate_steps(demo)
        with demo.step("Off-site: a nightly job to a restic repository, a restore from it"):
            restic_steps(demo)
        with demo.step("Done"):
            demo.run(["pct", "stopall", "--timeout", "30"])
        summary(demo)
    except (DemoError, subprocess.CalledProcessError) as err:
        print(f"\ndemo failed: {err}", file=sys.stderr)
        return 1
    finally:
        cleanup(demo)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
