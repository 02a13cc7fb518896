"""The README's two entry points and its exit-code table stay true, also for the failures
that pveam reports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from index import store
from shared import paths
from tests.index.conftest import stanza
from tests.pveam.conftest import clean_env
from tests.shared.test_errors import exit_code_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_starts_with_the_two_commands() -> None:
    head = README.read_text().split("\n## ", 1)[0]
    assert "make demo" in head and "make test" in head
    first_lines = [ln.strip() for ln in head.splitlines() if ln.strip()][1:3]
    assert first_lines[0].startswith("make demo") and first_lines[1].startswith("make test")


def test_exit_code_table_matches_the_code() -> None:
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| (.+?) \|$", README.read_text(), re.M)
    documented = [(int(code), name, meaning) for code, name, meaning in rows]
    assert documented == exit_code_table()


def documented_code(words: tuple[str, ...]) -> int:
    """The README table's code whose meaning mentions every word."""
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| (.+?) \|$", README.read_text(), re.M)
    codes = [int(code) for code, _name, meaning in rows if all(w in meaning for w in words)]
    assert len(codes) == 1, (words, codes)
    return codes[0]


NOT_FOUND = ("template", "file", "does not exist")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["download", "local", "gone_1.0-1_amd64.tar.zst"], NOT_FOUND),
        (["key", "add", "/nonexistent/release-key.gpg"], NOT_FOUND),
        (["key", "remove", "AB" * 20], NOT_FOUND),
        (["source", "remove", "nosuchsource"], NOT_FOUND),
        (["available"], NOT_FOUND),  # an enabled source without a stored index
        (["remove", "local:vztmpl/gone_1.0-1_amd64.tar.zst"], NOT_FOUND),
        (["list", "nostorage"], ("storage", "does not exist")),
        (["download", "local", "demo_1.0-1_amd64.tar.zst"], ("download", "failed")),
        (["update"], ("download", "update", "failed")),
    ],
    ids=["gone-template", "missing-key-file", "unknown-key", "unknown-source", "no-index",
         "removed-template", "unknown-storage", "download-failed", "update-failed"],
)  # fmt: skip
def test_pveam_failures_exit_with_the_documented_code(
    ctroot: Path, argv: list[str], words: tuple[str, ...]
) -> None:
    # one source on a closed local port, with a stored index naming one template
    cfg = paths.sources_cfg()
    cfg.parent.mkdir(parents=True)
    cfg.write_text(
        "source: a\n\turl http://127.0.0.1:9/x\n\tindex aplinfo.dat\n"
        f"\tfingerprints {'AB' * 20}\n\tretries 0\n\tconnect-timeout 2\n"
    )
    if argv != ["available"]:
        paths.aplinfo_dir().mkdir(parents=True)
        store.index_path("a").write_text(stanza("demo", sha512="0" * 128))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "pveam"), *argv],
        env=clean_env(ctroot),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == documented_code(words), proc.stderr
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
