"""The fork-and-setns helper of ``pct push``/``pull``: work runs in the entered namespace, its
errors come back, and the child can load no Python module from disk (it may be inside a
container's file system by then). Entering this process's own mount namespace needs no
container."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

from shared.errors import CtkitError
from shared.runtime.nsenter import in_container

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="setns needs root")


def test_work_runs_and_errors_come_back(tmp_path: Path) -> None:
    target = tmp_path / "written"
    in_container(os.getpid(), lambda: target.write_text("ok"), userns=False)
    assert target.read_text() == "ok"

    def fail() -> None:
        raise CtkitError("no such file inside")

    with pytest.raises(CtkitError, match="no such file inside"):
        in_container(os.getpid(), fail, userns=False)


def test_child_cannot_import_from_disk() -> None:
    # a stdlib module nothing has imported yet in this worker (other test files share it)
    name = next(
        m for m in ("tabnanny", "pyclbr", "netrc", "sched", "colorsys") if m not in sys.modules
    )

    def lazy_import() -> None:
        importlib.import_module(name)

    with pytest.raises(CtkitError, match=f"No module named '{name}'"):
        in_container(os.getpid(), lazy_import, userns=False)


FORKED = """
import sys, time
from pathlib import Path
from shared.runtime.nsenter import run_forked
marker = Path(sys.argv[1])
print("forking", flush=True)
run_forked(lambda: (time.sleep(1.5), marker.write_text("done")) and None, "work")
"""


def test_a_forked_child_ends_with_its_killed_parent(tmp_path: Path) -> None:
    """SIGKILLed, pct left its forked child to finish its work: a hot-plug mounted the volume
    in the container while the config, never saved, said it was still pending."""
    import signal
    import subprocess
    import time

    marker = tmp_path / "marker"
    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen([sys.executable, "-c", FORKED, str(marker)], cwd=repo,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "forking\n"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2.0)
    assert not marker.exists()


INTERRUPTED = """
import sys, time
from pathlib import Path
from shared import signals
from shared.runtime.nsenter import run_forked
marker, held = Path(sys.argv[1]), sys.argv[2] == "held"
with signals.interruptible():
    try:
        with signals.held() if held else signals.interruptible():
            print("forking", flush=True)
            run_forked(lambda: (time.sleep(1.5), marker.write_text("done")) and None, "work")
        signals.raise_if_interrupted()
    except KeyboardInterrupt:
        time.sleep(2.5)  # time for a child left running to finish its work
        print("interrupted", marker.exists(), flush=True)
"""


@pytest.mark.parametrize(
    ("held", "whom"), [("held", "group"), ("not-held", "parent"), ("not-held", "group")]
)
def test_a_signal_is_the_parent_s_to_act_on(tmp_path: Path, held: str, whom: str) -> None:
    """The parent acts on a Ctrl-C or TERM: holding a step, it waits for its child's work and
    acts after; else it ends the child at once. A TERM to the parent alone left the child to
    finish its work beside the parent's own cleanup; a Ctrl-C raised in the middle of the
    child's work (pyroute2's event loop printed its half-closed generators)."""
    import signal
    import subprocess
    import time

    marker = tmp_path / "marker"
    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(marker), held], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "forking\n"
        time.sleep(0.3)
        if whom == "group":
            os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C does
        else:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert out == f"interrupted {held == 'held'}\n", (out, err)
    assert err == ""
