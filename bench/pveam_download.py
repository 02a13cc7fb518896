"""Benchmark ``pveam download`` against ``curl -o f URL && sha512sum f`` (not part of the tests).

    .venv/bin/python bench/pveam_download.py [--dir /var/tmp] [--sizes 100,500] [--reps 3]

Writes a template of each size (random 16 MiB blocks, each made unique by a counter) under
``--dir``, serves it from a threaded HTTP server on 127.0.0.1 (``sendfile``, so the server costs
both clients the same little CPU), and times, side by side and interleaved in one run:

- ``pveam download local <template>`` (the real console script, under a scratch CTKIT_ROOT whose
  stored index holds the template's sha512: transfer, streaming sha512, verify, rename);
- ``curl -s -o f URL && sha512sum f`` into the same directory.

The ratio is curl's time / pveam's time (best of ``--reps``; target >= 1.0). pveam's peak RSS
comes from ``os.wait4`` on its process (the kernel's rusage of that child after waiting).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PVEAM = Path(sys.executable).parent / "pveam"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: bench.results

from bench.results import record  # noqa: E402

BLOCK = 16 << 20
STANZA = """Package: bench
Version: {version}
Type: lxc
OS: debian-12
Section: system
Architecture: amd64
Location: tpl/{name}
sha512sum: {sha}
Infopage: https://example.org/
Description: benchmark template
"""


def make_template(path: Path, size_mb: int) -> str:
    """Write ``size_mb`` MiB of random-ish data; return its sha512."""
    base = os.urandom(BLOCK)
    digest = hashlib.sha512()
    remaining = size_mb << 20
    with open(path, "wb") as fh:
        n = 0
        while remaining > 0:
            block = (n.to_bytes(8, "little") + base[8:])[:remaining]
            fh.write(block)
            digest.update(block)
            remaining -= len(block)
            n += 1
    return digest.hexdigest()


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def copyfile(self, source: Any, outputfile: Any) -> None:
        outputfile.flush()
        self.connection.sendfile(source)


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    def handler(*args: Any, **kw: Any) -> _Handler:
        return _Handler(*args, directory=str(directory), **kw)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def scratch_root(work: Path, base_url: str, stanzas: str) -> Path:
    """A CTKIT_ROOT with one source whose stored index lists the benchmark templates."""
    root = work / "root"
    (root / "etc/pveam").mkdir(parents=True)
    (root / "etc/pveam/sources.cfg").write_text(
        f"source: bench\n\turl {base_url}\n\tindex aplinfo.dat\n\tfingerprints {'AB' * 20}\n"
    )
    store = root / "var/lib/pve-manager/apl-info"
    store.mkdir(parents=True)
    (store / "bench").write_text(stanzas)
    return root


def clean_env(root: Path) -> dict[str, str]:
    proxies = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
    env = {k: v for k, v in os.environ.items() if k.lower() not in proxies}
    env["CTKIT_ROOT"] = str(root)
    return env


def run_pveam(root: Path, name: str) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one ``pveam download``."""
    target = root / "var/lib/vz/template/cache" / name
    target.unlink(missing_ok=True)
    os.sync()  # start with no dirty pages of the previous run left to write back
    start = time.monotonic()
    proc = subprocess.Popen(
        [str(PVEAM), "download", "local", name],
        env=clean_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not target.exists():
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"pveam download failed ({proc.returncode}): {err}")
    if proc.stderr:
        proc.stderr.close()
    target.unlink()
    return elapsed, usage.ru_maxrss


def run_curl(work: Path, url: str, sha: str) -> float:
    out = work / "curl.out"
    out.unlink(missing_ok=True)
    cmd = f"curl -s -o {out} {url} && sha512sum {out}"
    os.sync()
    start = time.monotonic()
    proc = subprocess.run(
        ["sh", "-c", cmd], env=clean_env(work), capture_output=True, text=True, check=True
    )
    elapsed = time.monotonic() - start
    if not proc.stdout.startswith(sha):
        raise SystemExit("curl + sha512sum: unexpected checksum")
    out.unlink()
    return elapsed


def startup(root: Path, reps: int) -> float:
    """The fixed cost of one pveam run: interpreter, imports, config (``pveam list local``)."""
    best = float("inf")
    for _ in range(reps):
        start = time.monotonic()
        subprocess.run(
            [str(PVEAM), "list", "local"], env=clean_env(root), capture_output=True, check=True
        )
        best = min(best, time.monotonic() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--sizes", default="100,500", help="template sizes in MiB")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="pveam-bench-", dir=args.dir))
    try:
        www = work / "www" / "tpl"
        www.mkdir(parents=True)
        templates = {}
        for size in sizes:
            name = f"bench_{size}-1_amd64.tar.zst"
            t0 = time.monotonic()
            templates[size] = (name, make_template(www / name, size))
            print(f"generated {name} ({size} MiB) in {time.monotonic() - t0:.1f}s", flush=True)
        with serve(work / "www") as base:
            stanzas = "\n".join(
                STANZA.format(version=f"{s}-1", name=n, sha=sha)
                for s, (n, sha) in templates.items()
            )
            root = scratch_root(work, base, stanzas)
            print(f"{'size':>8} {'curl+sha512sum':>15} {'pveam':>8} {'ratio':>6} {'pveam RSS':>10}")
            for size, (name, sha) in templates.items():
                curl_times, pveam_times, rss = [], [], 0
                for _ in range(args.reps):
                    curl_times.append(run_curl(work, f"{base}/tpl/{name}", sha))
                    elapsed, maxrss = run_pveam(root, name)
                    pveam_times.append(elapsed)
                    rss = max(rss, maxrss)
                best_curl, best_pveam = min(curl_times), min(pveam_times)
                print(
                    f"{size:>5} MiB {best_curl:>14.2f}s {best_pveam:>7.2f}s "
                    f"{best_curl / best_pveam:>5.2f}x {rss / 1024:>7.1f} MiB",
                    flush=True,
                )
                record("pveam-download", f"{size}MiB", best_curl / best_pveam,
                       pveam_s=best_pveam, curl_sha512sum_s=best_curl, reps=args.reps,
                       peak_rss_mib=rss / 1024)  # fmt: skip
            start_s = startup(root, args.reps)
            print(f"pveam start-up (pveam list local): {start_s:.2f}s")
            record("pveam-download", "startup", None, seconds=start_s)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
