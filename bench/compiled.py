"""Prepare a checkout as an install is prepared before its commands are timed: byte-compiled
(with PYTHONDONTWRITEBYTECODE set, as in some shells, a checkout would compile every module on
every run, and whole-process figures would measure the compiler), and with its dataclass
methods and regular expressions kept compiled (``shared/classcode.py``,
``shared/regexcode.py``), as ``make bytecode`` and ``make install`` do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("shared", "index", "pveam", "vzdump", "pct")


def precompile() -> None:
    for argv in (["compileall", "-q", *PACKAGES], ["shared.classcode", *PACKAGES]):
        subprocess.run(
            [sys.executable, "-m", *argv], cwd=REPO, check=True, stdout=subprocess.DEVNULL
        )
