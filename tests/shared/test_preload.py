"""Modules loaded in a thread while a block runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(code: str, tmp_path: Path) -> str:
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                         env={"PYTHONPATH": f"{REPO}:{tmp_path}"}, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    return res.stdout


def test_the_modules_load_while_the_block_runs_and_the_thread_is_over_after_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "slowmod.py").write_text("import time\ntime.sleep(0.3)\nVALUE = 42\n")
    out = _run(
        """\
        import sys, threading, time
        from shared import preload
        with preload.loading("slowmod", "json"):
            start = time.monotonic()
            while "slowmod" not in sys.modules:
                time.sleep(0.001)
            print("started in the block")
            import slowmod  # waits for the thread's import to finish, does not run it twice
            print(slowmod.VALUE)
        print(threading.active_count(), "json" in sys.modules)
        """,
        tmp_path,
    )
    assert out.splitlines() == ["started in the block", "42", "1 True"]


def test_a_failing_import_is_reported_by_the_commands_own_import(tmp_path: Path) -> None:
    (tmp_path / "brokenmod.py").write_text("raise RuntimeError('broken on purpose')\n")
    out = _run(
        """\
        import sys, threading
        from shared import preload
        with preload.loading("brokenmod", "json"):
            pass
        print(threading.active_count(), "brokenmod" in sys.modules)
        try:
            import brokenmod
        except RuntimeError as err:
            print(err)
        """,
        tmp_path,
    )
    assert out.splitlines() == ["1 False", "broken on purpose"]
