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
