"""Benchmark ``pveam download`` against ``curl -o f URL && sha512sum f`` (not part of the tests).

    .venv/bin/python bench/pveam_download.py [--dir /var/tmp] [--sizes 100,500] [--reps 3]

Writes a template of each size (random 16 MiB blocks, each made unique by a counter) under
``--dir``, serves it from a threaded HTTP server on 127.0.0.1 (``sendfile``, so the server costs
both clients the same little CPU), and times, side by side and interleaved in one run:

- ``pveam download local <template>`` (the real console script, under a scratch CTKIT_ROOT whose
  stored index holds the template's sha512: transfer, streaming sha512, verify, rename);
- ``curl -s -o f URL && sha512sum f`` into the same directory.

Both are started the same way, by a small launcher that forks them, waits (``os.wait4``) and
reports the wall time from fork to exit and the peak RSS of what it waited for. The launcher is
needed for the RSS: Linux carries a parent's peak into a child that it forks and that then
execs, so this script's own peak (its buffers for the templates) would show as pveam's.

The ratio is curl's time / pveam's time (median of ``--reps``, run in turn; target >= 1.0).
``fixed`` is the same pair on a 4 KiB template: pveam's start-up (interpreter, imports, index and
config) against two small processes, the part of the time that does not grow with the size.
pveam runs with its bytecode cached (see ``clean_env``), after one warm-up run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
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


def hash_file(path: Path) -> str:
    return hashlib.sha512(path.read_bytes()).hexdigest()


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
    """No proxies; Python's bytecode cached (as in any installed package) under the scratch
    directory, even where the caller's environment says PYTHONDONTWRITEBYTECODE: else every run
    would compile ctkit's modules from source again, a cost that no installed copy pays."""
    proxies = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
    env = {k: v for k, v in os.environ.items() if k.lower() not in proxies}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(root.parent / "pycache")
    env["CTKIT_ROOT"] = str(root)
    return env


# Fork the command (stdout to /dev/null), wait for it; print "<seconds> <peak RSS KiB> <exit code>".
LAUNCH = """
import os, sys, time
devnull = os.open(os.devnull, os.O_WRONLY)
start = time.monotonic()
pid = os.fork()
if pid == 0:
    os.dup2(devnull, 1)
    try:
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(time.monotonic() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def launch(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one run of ``argv``; a failure ends the benchmark."""
    os.sync()  # start with no dirty pages of the previous run left to write back
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCH, *argv], env=env, capture_output=True, text=True, check=True
    )
    seconds, rss, code = proc.stdout.split()
    if code != "0":
        raise SystemExit(f"{argv[0]} failed ({code}): {proc.stderr.strip()}")
    return float(seconds), int(rss)


def run_pveam(root: Path, name: str) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one ``pveam download``."""
    target = root / "var/lib/vz/template/cache" / name
    target.unlink(missing_ok=True)
    result = launch([str(PVEAM), "download", "local", name], clean_env(root))
    if not target.exists():
        raise SystemExit(f"pveam download did not create {target}")
    target.unlink()
    return result


def run_curl(work: Path, url: str, sha: str) -> float:
    out, sums = work / "curl.out", work / "curl.sha512"
    out.unlink(missing_ok=True)
    cmd = f"curl -s -o {out} {url} && sha512sum {out} >{sums}"
    seconds, _rss = launch(["/bin/sh", "-c", cmd], clean_env(work / "root"))
    if not sums.read_text().startswith(sha):
        raise SystemExit("curl + sha512sum: unexpected checksum")
    out.unlink()
    return seconds


def compare(work: Path, root: Path, base: str, name: str, sha: str, reps: int) -> dict[str, float]:
    """curl + sha512sum and pveam in turn, ``reps`` times each: medians and the peak RSS."""
    curl_times, pveam_times, rss = [], [], 0
    for _ in range(reps):
        curl_times.append(run_curl(work, f"{base}/tpl/{name}", sha))
        elapsed, maxrss = run_pveam(root, name)
        pveam_times.append(elapsed)
        rss = max(rss, maxrss)
    curl_s, pveam_s = statistics.median(curl_times), statistics.median(pveam_times)
    return {"curl": curl_s, "pveam": pveam_s, "ratio": curl_s / pveam_s, "rss_mib": rss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--sizes", default="100,500", help="template sizes in MiB")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="pveam-bench-", dir=args.dir))
    try:
        www = work / "www" / "tpl"
        www.mkdir(parents=True)
        templates = {"fixed": ("bench_0-1_amd64.tar.zst", "")}
        (www / templates["fixed"][0]).write_bytes(os.urandom(4096))
        templates["fixed"] = (templates["fixed"][0], hash_file(www / templates["fixed"][0]))
        for size in sizes:
            name = f"bench_{size}-1_amd64.tar.zst"
            t0 = time.monotonic()
            templates[f"{size}MiB"] = (name, make_template(www / name, size))
            print(f"generated {name} ({size} MiB) in {time.monotonic() - t0:.1f}s", flush=True)
        with serve(work / "www") as base:
            stanzas = "\n".join(
                STANZA.format(version=n.split("_")[1], name=n, sha=sha)
                for n, sha in templates.values()
            )
            root = scratch_root(work, base, stanzas)
            run_pveam(root, templates["fixed"][0])  # warm-up: fills the bytecode cache
            print(f"{'size':>8} {'curl+sha512sum':>15} {'pveam':>8} {'ratio':>6} {'pveam RSS':>10}")
            for metric, (name, sha) in templates.items():
                got = compare(work, root, base, name, sha, args.reps)
                print(
                    f"{metric:>8} {got['curl']:>14.2f}s {got['pveam']:>7.2f}s "
                    f"{got['ratio']:>5.2f}x {got['rss_mib']:>7.1f} MiB",
                    flush=True,
                )
                # the start-up alone has no target: it is what the sizes have to make up for
                ratio = None if metric == "fixed" else got["ratio"]
                record("pveam-download", metric, ratio, pveam_s=got["pveam"],
                       curl_sha512sum_s=got["curl"], time_ratio=round(got["ratio"], 3),
                       reps=args.reps, peak_rss_mib=got["rss_mib"])  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
