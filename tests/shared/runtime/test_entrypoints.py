"""The module paths written into generated LXC configs are an interface: containers created
before an upgrade still name them. Pinned here, so a rename fails this test instead of breaking
existing containers."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from shared.runtime import entrypoints

REPO = Path(__file__).resolve().parents[3]


def test_the_paths_are_pinned() -> None:
    assert entrypoints.HOOK == "shared.runtime.hook"
    assert entrypoints.NET_UPSCRIPT == "shared.net.upscript"
    assert entrypoints.RESTART == "shared.runtime.restart"
    assert entrypoints.command(entrypoints.HOOK, "--root", "/") == (
        f"{sys.executable} -m shared.runtime.hook --root /"
    )


def test_each_runs_as_a_module() -> None:
    """Each is a module with a ``__main__`` entry that parses its arguments (``--help``)."""
    for module in entrypoints.ALL:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        assert 'if __name__ == "__main__":' in Path(spec.origin).read_text(), module
        proc = subprocess.run(
            entrypoints.argv(module, "--help"), cwd=REPO, capture_output=True, text=True
        )
        assert proc.returncode == 0 and "--root" in proc.stdout, (module, proc.stderr)


def test_a_command_is_one_shell_word_per_argument(tmp_path: Path) -> None:
    """LXC runs a hook with ``sh -c``: a root with a space or a ``$`` in its path is passed as
    the one argument it is (the pre-start hook failed, and a ``$(...)`` would have run)."""
    root = "/var/tmp/a root/$(touch " + str(tmp_path / "ran") + ")"
    line = entrypoints.command(entrypoints.HOOK, "--root", root)
    out = subprocess.run(["sh", "-c", f"exec python3 -c 'import sys; print(sys.argv[1:])' {line}"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out == str([sys.executable, "-m", "shared.runtime.hook", "--root", root]) + "\n"
    assert not (tmp_path / "ran").exists()
