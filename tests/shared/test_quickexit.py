"""A program's quick exit keeps everything the interpreter's teardown would have done that
matters: exit handlers, data buffered in files left open, threads still at work, the
``finally`` of a generator suspended halfway."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = "import sys\nfrom shared import quickexit\n" + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_it_exits_at_once_with_the_code_after_the_exit_handlers(tmp_path: Path) -> None:
    proc = run(
        """
        import atexit
        atexit.register(lambda: print("handler"))
        print("before", end="")
        quickexit.leave(3)
        print("after")
        """,
        tmp_path,
    )
    assert proc.returncode == 3
    assert proc.stdout == "beforehandler\n"


def test_data_buffered_in_a_file_left_open_is_written(tmp_path: Path) -> None:
    proc = run(
        """
        kept = open(sys.argv[1] + "/out", "w")
        kept.write("all of it")
        quickexit.leave(0)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out").read_text() == "all of it"


def test_a_file_an_exit_handler_leaves_open_is_written(tmp_path: Path) -> None:
    """The files are found before the exit handlers run; one that a handler opens and leaves
    open, its data still buffered, is written too."""
    proc = run(
        """
        import atexit
        kept = []
        # handlers run last registered first: the second opens the file, the first writes
        atexit.register(lambda: kept[0].write("from the handler"))
        atexit.register(lambda: kept.append(open(sys.argv[1] + "/late", "w")))
        quickexit.leave(0)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "late").read_text() == "from the handler"


def test_a_file_class_of_python_code_is_flushed_too(tmp_path: Path) -> None:
    """File classes written in Python (gzip, a library's own stream) derive from io.IOBase
    like the built-in ones; their buffered data is written as well."""
    proc = run(
        """
        import io

        class Batched(io.RawIOBase):
            def __init__(self, path):
                self.path, self.held = path, []
            def writable(self):
                return True
            def write(self, data):
                self.held.append(bytes(data))
                return len(data)
            def flush(self):
                with open(self.path, "ab") as fh:
                    fh.write(b"".join(self.held))
                self.held = []

        kept = Batched(sys.argv[1] + "/out")
        kept.write(b"held back")
        quickexit.leave(0)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out").read_bytes() == b"held back"


def test_a_thread_at_work_is_left_to_the_normal_exit(tmp_path: Path) -> None:
    proc = run(
        """
        import threading, time
        def work():
            time.sleep(0.3)
            open(sys.argv[1] + "/done", "w").close()
        threading.Thread(target=work).start()
        quickexit.leave(0)
        print("went on")
        """,
        tmp_path,
    )
    assert proc.stdout == "went on\n"
    assert (tmp_path / "done").exists()


def test_a_suspended_generator_is_left_to_the_normal_exit(tmp_path: Path) -> None:
    proc = run(
        """
        def held():
            try:
                yield
            finally:
                open(sys.argv[1] + "/released", "w").close()
        gen = held()
        next(gen)
        quickexit.leave(0)
        print("went on")
        gen.close()
        """,
        tmp_path,
    )
    assert proc.stdout == "went on\n"
    assert (tmp_path / "released").exists()


def test_a_signal_while_leaving_ends_in_the_exit_not_a_traceback(tmp_path: Path) -> None:
    # Ctrl-C pressed twice: the second one arrives while the first one's exit runs
    proc = run(
        """
        import atexit, os, signal, time
        def late():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
        atexit.register(late)
        quickexit.leave(130)
        """,
        tmp_path,
    )
    assert proc.returncode == 130
    assert proc.stderr == ""


def test_a_weak_proxy_whose_object_is_gone_does_not_end_in_a_traceback(tmp_path: Path) -> None:
    """Its isinstance() check asks the proxy for its class, and a dead one raises
    ReferenceError: a remote's ``pct migrate-target info`` (pyroute2 leaves such proxies)
    ended in a traceback instead of its answer's exit code."""
    proc = run(
        """
        import weakref
        class Thing:
            pass
        thing = Thing()
        proxies = [weakref.proxy(thing)]  # kept alive in a list, as a library keeps one
        del thing
        quickexit.leave(4)
        """,
        tmp_path,
    )
    assert (proc.returncode, proc.stderr) == (4, "")


def test_a_detached_text_wrapper_does_not_slow_the_exit(tmp_path: Path) -> None:
    """stdio moves stdout's buffer to a wrapper of its own: the old one, detached, cannot even
    say whether it is closed (ValueError), and every command fell back to the slow exit."""
    proc = run(
        """
        import io
        old = io.TextIOWrapper(open(sys.argv[1] + "/out", "wb"))
        new = io.TextIOWrapper(old.detach())
        new.write("moved")
        quickexit.leave(4)
        print("after")
        """,
        tmp_path,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (4, "", "")
    assert (tmp_path / "out").read_text() == "moved"
