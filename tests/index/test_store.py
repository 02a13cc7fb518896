"""index.store: what stands in the store in place of a stored index or a source's state."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from index import store
from index.sources import Source, Transfer
from shared import paths
from tests.bounded import returns_within
from tests.index.conftest import index_text, stanza

SRC = Source("a", "http://a.example.org/images", "aplinfo.dat", ("AB" * 20,))


@pytest.mark.parametrize("what", ["fifo", "zero", "directory"])
def test_no_regular_file_in_place_of_a_stored_index_is_a_warning(ctroot: Path, what: str) -> None:
    """A FIFO there held pveam available (and every download) for good; a symlink to
    /dev/zero was read until the memory ran out."""
    paths.aplinfo_dir().mkdir(parents=True)
    path = store.index_path("a")
    {"fifo": os.mkfifo, "zero": lambda p: p.symlink_to("/dev/zero"), "directory": os.mkdir}[what](
        path
    )
    warned: list[str] = []
    index = returns_within(5, lambda: store.load_index([SRC], warn=warned.append))
    assert len(index) == 0
    assert warned == [f"unable to open file '{path}' - is not a regular file"]


def test_a_stored_index_larger_than_the_sources_bound_is_not_read(ctroot: Path) -> None:
    paths.aplinfo_dir().mkdir(parents=True)
    store.index_path("a").write_text(index_text(stanza("alpha")) + " " * 4096)
    small = dataclasses.replace(SRC, transfer=Transfer(max_index_size=1024))
    warned: list[str] = []
    store.load_index([small], warn=warned.append)
    assert warned == [f"unable to open file '{store.index_path('a')}' - is too large (more than "
                      "1024 bytes)"]  # fmt: skip
    assert len(store.load_index([SRC])) == 1


def test_a_fifo_in_place_of_a_sources_state_reads_as_none(ctroot: Path) -> None:
    paths.aplinfo_dir().mkdir(parents=True)
    os.mkfifo(store.state_path("a"))
    assert returns_within(5, lambda: store.read_state("a")) == store.SourceState()
