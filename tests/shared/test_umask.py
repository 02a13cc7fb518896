"""shared.umask: ctkit under a hardening umask (027, 077) that root's shell may have."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.umask import keep_directories_searchable


@pytest.mark.parametrize(("given", "kept"), [(0o022, 0o022), (0o027, 0o026), (0o077, 0o066)])
def test_only_the_search_bits_leave_the_mask(
    umask: Callable[[int], int], given: int, kept: int
) -> None:
    umask(given)
    keep_directories_searchable()
    assert umask(given) == kept
