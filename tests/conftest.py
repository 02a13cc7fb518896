"""Fixtures every test package uses: a scratch CTKIT_ROOT and the team's reference data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The team's handbook folder sits beside the checkout; tests that read it skip without it.
HANDBOOK = Path(os.environ.get("CTKIT_HANDBOOK", REPO.parent / "shared"))


@pytest.fixture
def ctroot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh CTKIT_ROOT for one test."""
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("CTKIT_ROOT", str(root))
    yield root


def reference_file(name: str) -> Path:
    """A file of ../shared/reference, or skip the test when the folder is absent."""
    path = HANDBOOK / "reference" / name
    if not path.exists():
        pytest.skip(f"reference data not available: {path}")
    return path


@pytest.fixture
def reference() -> object:
    return reference_file
