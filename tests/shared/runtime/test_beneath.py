"""Walking below a container root without following its symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.errors import StorageError
from shared.runtime.beneath import ensure_dir, open_beneath


def test_open_beneath_refuses_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "ct"
    (root / "real/dir").mkdir(parents=True)
    (root / "link").symlink_to("/etc")
    (root / "rel").symlink_to("real")
    fd = open_beneath(root, "/real/dir")
    os.close(fd)
    fd = open_beneath(root, "/", os.O_RDONLY | os.O_DIRECTORY)
    assert os.path.samestat(os.fstat(fd), os.stat(root))
    os.close(fd)
    for rel in ("/link", "/link/passwd", "/rel/dir"):
        with pytest.raises(StorageError, match="crosses a symlink"):
            open_beneath(root, rel)
    with pytest.raises(StorageError, match="invalid path"):
        open_beneath(root, "/real/../..")


def test_ensure_dir_creates_owned_dirs_and_refuses_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "ct"
    root.mkdir()
    (root / "etc").symlink_to("/etc")
    made = ensure_dir(root, "/srv/data/deep", 100000, 100001)
    assert made == root / "srv/data/deep"
    for sub in ("srv", "srv/data", "srv/data/deep"):
        st = (root / sub).lstat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (100000, 100001, 0o755)
    with pytest.raises(StorageError, match="crosses a symlink"):
        ensure_dir(root, "/etc/evil", 0, 0)
    assert not Path("/etc/evil").exists()
