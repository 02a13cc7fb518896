"""Check a generated LXC config with LXC's own parser before it is installed.

A config LXC cannot load (``lxc.arch = amd64x``, ``lxc.cap.drop = bogus_cap``, the pre-LXC-3
``lxc.init_cmd``) would make every python-lxc handle of the container fail, and with it every
listing of the node. So the text is loaded first from a scratch lxcpath with ``lxc-info``, whose
error log names the rejected line and why; only a config that loads is put in place.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .. import atomic, paths
from ..ctconfig.rawlxc import DEPRECATED_KEYS
from ..errors import ConfigError

_LINE_RE = re.compile(r'Failed to parse config file ".*" at line "(.*)"')
_REASON_RE = re.compile(r"confile\.c: \w+: \d+ (.*)$")
CHECK_TIMEOUT = 30


def check_config(vmid: int, text: str) -> None:
    """Raise ConfigError naming the line LXC rejects in ``text`` (a generated config)."""
    try:
        paths.run_dir().mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"lxccheck-{vmid}-", dir=paths.run_dir()))
    except OSError as err:  # a full or read-only run directory: one line, not a traceback
        raise atomic.write_error(paths.run_dir(), err) from None
    try:
        try:
            (scratch / str(vmid)).mkdir()
            (scratch / str(vmid) / "config").write_text(text, encoding="utf-8")
        except OSError as err:
            raise atomic.write_error(scratch / str(vmid) / "config", err) from None
        argv = ["lxc-info", "-P", str(scratch), "-n", str(vmid), "-s", "-l", "ERROR"]
        proc = subprocess.run(
            [*argv, "-o", "/dev/stderr"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=CHECK_TIMEOUT,
            check=False,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if proc.returncode != 0:
        raise rejected(vmid, proc.stderr)


def rejected(vmid: int, log: str) -> ConfigError:
    """The one-line error for LXC's parse failure log ``log``."""
    line = reason = None
    for entry in log.splitlines():
        if m := _LINE_RE.search(entry):
            line = m.group(1)
        elif m := _REASON_RE.search(entry):
            reason = m.group(1).removeprefix("Invalid argument - ")
    if line is None:
        return ConfigError(f"vm {vmid} - LXC cannot load the generated config")
    key = line.split("=", 1)[0].strip()
    hint = None
    if key in DEPRECATED_KEYS:
        hint = f"'{key}' is the pre-LXC-3 name; LXC 5 calls it '{DEPRECATED_KEYS[key]}'"
    detail = f": {reason}" if reason else ""
    return ConfigError(f"vm {vmid} - LXC rejects config line '{line}'{detail}", hint=hint)
