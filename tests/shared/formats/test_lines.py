"""shared.formats.lines: a config file that is not UTF-8 is one line naming it (read here, and
end to end through the commands that read storage.cfg, jobs.cfg, remotes.cfg, sources.cfg)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.formats.lines import MAX_CONFIG_FILE, read_config_text

BIN = Path(sys.executable).parent


def test_utf8_text_is_read(tmp_path: Path) -> None:
    path = tmp_path / "x.cfg"
    path.write_bytes("dir: local\n\tpath /var/lib/caf\u00e9\n".encode())
    assert read_config_text(path, "x.cfg") == "dir: local\n\tpath /var/lib/caf\u00e9\n"


def test_a_byte_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "x.cfg"
    path.write_bytes(b"dir: local\n# caf\xe9 \x1b[2J\n")
    with pytest.raises(ConfigError) as info:
        read_config_text(path, "x.cfg")
    assert str(info.value) == "x.cfg: line 2 is not valid UTF-8: # caf\\xe9 \\x1b[2J"
    assert info.value.hint == "x.cfg is UTF-8 text: fix or remove that line"


def test_a_directory_or_fifo_in_its_place_is_named(tmp_path: Path) -> None:
    (tmp_path / "dir.cfg").mkdir()
    os.mkfifo(tmp_path / "fifo.cfg")  # read as it is, it would block every command
    for name in ("dir.cfg", "fifo.cfg"):
        with pytest.raises(ConfigError) as info:
            read_config_text(tmp_path / name, name)
        assert str(info.value) == f"{name}: '{tmp_path / name}' is not a regular file"


def test_a_file_too_large_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.cfg"
    with open(path, "wb") as fh:
        fh.truncate(MAX_CONFIG_FILE + 1)
    with pytest.raises(ConfigError, match=r"^big\.cfg: '.*big\.cfg' is too large \(more than"):
        read_config_text(path, "big.cfg")


def test_a_missing_file_is_still_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_config_text(tmp_path / "none.cfg", "none.cfg")


@pytest.mark.parametrize(
    ("rel", "argv"),
    [
        ("etc/pve/storage.cfg", ["pveam", "list", "local"]),
        ("etc/pve/jobs.cfg", ["vzdump", "job", "list"]),
        ("etc/pve/ctkit-remotes.cfg", ["pct", "remote", "list"]),
        ("etc/pveam/sources.cfg", ["pveam", "source", "list"]),
    ],
)
def test_the_commands_say_so_in_one_line(ctroot: Path, rel: str, argv: list[str]) -> None:
    """Each ended with a UnicodeDecodeError traceback on a Latin-1 comment."""
    path = ctroot / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"# caf\xe9\n")
    proc = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, check=False
    )
    name = path.name
    assert proc.returncode == ConfigError.exit_code, proc.stderr
    assert proc.stderr == (
        f"{name}: line 1 is not valid UTF-8: # caf\\xe9\nhint: {name} is UTF-8 text: fix or "
        "remove that line\n"
    )
