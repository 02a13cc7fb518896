"""shared.umask: ctkit under a hardening umask (027, 077) that root's shell may have."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from shared.umask import keep_directories_searchable


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize(("given", "kept"), [(0o022, 0o022), (0o027, 0o026), (0o077, 0o066)])
def test_only_the_search_bits_leave_the_mask(umask: None, given: int, kept: int) -> None:
    os.umask(given)
    keep_directories_searchable()
    assert os.umask(given) == kept
