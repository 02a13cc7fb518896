"""A Ctrl-C at either end of a command: while it is still loading (nothing done yet) it ends in
one line and exit 130; once its outcome is decided, it no longer cuts the output or the exit
short. Both ended in a Python traceback and a death by SIGINT before."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# a SIGINT ignored by whoever started the test (a background job) would stay ignored
DEFAULT_INT = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"

# an app whose import takes long: it says when it has started, then loads for 30 s
SLOW_APP = """\
import os, pathlib, time
pathlib.Path(os.environ["MARKER"]).write_text("loading")
time.sleep(30)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=str)
def test_a_signal_while_a_command_is_still_loading_ends_it_in_one_line(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """TERM and HUP as Ctrl-C: they killed a command still loading, silently (exit 143/129)."""
    app = tmp_path / "slowapp"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "cli.py").write_text(SLOW_APP)
    marker = tmp_path / "marker"
    code = DEFAULT_INT + "from shared.entry import run_app\nrun_app('slowapp')\n"
    env = dict(os.environ, MARKER=str(marker), PYTHONPATH=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.01)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert (proc.returncode, out, err) == (130, "", "interrupted by signal\n")


def test_a_hangup_ignored_by_the_caller_stays_ignored_while_loading(tmp_path: Path) -> None:
    """``nohup pct ...``: the command must outlive the terminal, also while it loads."""
    app = tmp_path / "quickapp"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "cli.py").write_text(
        "import os, signal\ndef main():\n    os.kill(os.getpid(), signal.SIGHUP)\n    print('on')\n"
    )
    code = (
        "import signal; signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "from shared.entry import run_app\nrun_app('quickapp')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, text=True,
                         capture_output=True, timeout=30)  # fmt: skip
    assert (res.returncode, res.stdout, res.stderr) == (0, "on\n", "")


# records the collector's state while the app loads and while its command runs
GC_APP = """\
import gc, json
LOADING = gc.isenabled()
def main():
    print(json.dumps([LOADING, gc.isenabled(), gc.get_threshold()[0], gc.get_freeze_count()]))
"""


def test_the_collector_waits_while_the_app_loads_and_runs_for_the_command(tmp_path: Path) -> None:
    """No collection while the app's modules load; what they made is set aside (frozen), and the
    command runs with the collector on, at the entry's young threshold."""
    from shared.entry import YOUNG_THRESHOLD

    app = tmp_path / "gcapp"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "cli.py").write_text(GC_APP)
    code = "from shared.entry import run_app\nrun_app('gcapp')\n"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, text=True,
                         capture_output=True, timeout=30, check=True)  # fmt: skip
    loading, running, young, frozen = json.loads(res.stdout)
    assert (loading, running, young) == (False, True, YOUNG_THRESHOLD)
    assert frozen > 1000  # the interpreter's and the app's objects, typer's among them


@pytest.mark.parametrize("argv", [["pct", "create", "--help"], ["vzdump", "--help"]], ids=str)
def test_a_command_makes_no_collection_before_its_work(argv: list[str]) -> None:
    """Loading the app and typer and building the command: with the collector's default
    threshold that made young collections (see ``YOUNG_THRESHOLD``), now none."""
    code = textwrap.dedent(f"""\
        import gc, os, sys
        from shared.entry import {argv[0]}
        counts = []
        gc.callbacks.append(lambda phase, info: phase == "stop" and counts.append(info))
        real_exit = os._exit
        os._exit = lambda code: print(len(counts), file=sys.stderr) or real_exit(code)
        sys.argv = {argv!r}
        {argv[0]}()
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, text=True,
                         capture_output=True, timeout=30)  # fmt: skip
    assert res.stderr.strip().splitlines()[-1] == "0", res.stderr


# what an app's load leaves behind that quickexit would have to flush or wait for
LEFT_OPEN = """\
import gc, sys
gc.disable()
import shared.classcode as classcode
classcode.install()
import {app}.cli
from shared.quickexit import _SUSPENDABLE, _WATCHED, _closed, _suspended
def standard(stream):
    try:
        return stream.fileno() in (0, 1, 2)
    except (OSError, ValueError):
        return False
for obj in gc.get_objects():
    if issubclass(type(obj), _SUSPENDABLE) and _suspended(obj):
        print(repr(obj))
    elif issubclass(type(obj), _WATCHED) and not _closed(obj) and not standard(obj):
        print(repr(obj))
"""


@pytest.mark.parametrize("app", ["pct", "vzdump", "pveam"])
def test_an_apps_load_leaves_no_open_file_and_no_suspended_generator(app: str) -> None:
    """The entry freezes what the app's load made, and quickexit's walk of the heap does not see
    frozen objects: a file left open (unflushed data) or a generator suspended (a ``finally`` to
    run) by an import would be missed at the exit. Only the standard streams may be there."""
    res = subprocess.run([sys.executable, "-c", LEFT_OPEN.format(app=app)], cwd=REPO, text=True,
                         capture_output=True, timeout=30, check=True)  # fmt: skip
    assert res.stdout == ""


@pytest.mark.parametrize("name", ["pct", "vzdump", "pveam"])
def test_the_console_scripts_start_through_the_entry(name: str) -> None:
    (point,) = importlib.metadata.entry_points(group="console_scripts", name=name)
    assert point.value == f"shared.entry:{name}"
    script = Path(sys.executable).parent / name
    assert f"from shared.entry import {name}" in script.read_text()


# a command that is done (or failed) when the Ctrl-C comes: at the flush of its output, the
# last thing the CLI does before its exit
END_SIGNAL = """
import os, signal, sys
from shared.cli import new_app, run
from shared.errors import CtkitError

app = new_app("test")
state = {"done": False}

@app.command()
def work(fail: bool = False) -> None:
    print("done")
    state["done"] = True
    if fail:
        raise CtkitError("it failed")

@app.command()
def other() -> None:
    pass

class Stdout:
    def __init__(self, real):
        self.real, self.sent = real, False
    def write(self, text):
        return self.real.write(text)
    def flush(self):
        self.real.flush()
        if state["done"] and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)

sys.stdout = Stdout(sys.stdout)
sys.argv = ["prog", *sys.argv[1:]]
run(app, "prog")
"""


@pytest.mark.parametrize(
    ("args", "code", "err"),
    [(["work"], 0, ""), (["work", "--fail"], 1, "it failed\n")],
    ids=["done", "failed"],
)
def test_a_ctrl_c_after_the_command_keeps_its_outcome(args: list[str], code: int, err: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", DEFAULT_INT + textwrap.dedent(END_SIGNAL), *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout, proc.stderr) == (code, "done\n", err)
