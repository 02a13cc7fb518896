"""``vzdump extract`` through the console script: single files stop the read early, a
directory is read to the end; both through the one guarded extraction."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared.backups.conftest import Made, host, made
from tests.vzdump.engine.conftest import vzdump

__all__ = ["host", "made"]

pytestmark = pytest.mark.lxc


def test_extract_files_and_a_directory(made: Made, tmp_path: Path) -> None:
    target = tmp_path / "one"
    res = vzdump("extract", made.volid, "/srv/kinds/regular.txt", "--target", str(target))
    assert res.rc == 0, res.err
    assert res.out.decode().strip() == f"extracted 1 member(s) into '{target}'"
    assert (target / "srv/kinds/regular.txt").read_bytes() == b"hello regular\n" * 100
    both = tmp_path / "both"
    res = vzdump(
        "extract", made.volid, "/srv/kinds/regular.txt", "/srv/kinds/sub", "--target", str(both)
    )
    assert res.rc == 0, res.err
    assert res.out.decode().strip() == f"extracted 3 member(s) into '{both}'"
    assert (both / "srv/kinds/sub/deep.txt").read_bytes() == b"deep\n"
    assert sorted(p.name for p in (both / "srv/kinds").iterdir()) == ["regular.txt", "sub"]
