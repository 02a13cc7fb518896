"""Read ``etc/os-release`` from a template archive without unpacking it.

The archive is streamed through a decompressor chosen by its magic bytes (zstd, gzip, xz,
bzip2 or plain tar) into :mod:`tarfile` in stream mode; reading stops as soon as the file is
found. Debian's ``etc/os-release`` is a symlink to ``../usr/lib/os-release``: both members are
remembered on the way, whichever order the archive has them in. Nothing is written to disk.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import posixpath
import shlex
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import zstandard

from shared.errors import ArchiveError

OS_RELEASE = "etc/os-release"
FALLBACK = "usr/lib/os-release"
MAX_OS_RELEASE = 64 * 1024
ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError)


@contextlib.contextmanager
def open_decompressed(path: Path) -> Iterator[IO[bytes]]:
    """A readable stream of the tar data inside ``path``, whatever its compression."""
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(open(path, "rb"))
        magic = raw.read(6)
        raw.seek(0)
        stream: Any = raw
        if magic.startswith(b"\x28\xb5\x2f\xfd"):
            stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        elif magic.startswith(b"\x1f\x8b"):
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
        elif magic.startswith(b"\xfd7zXZ\x00"):
            stream = lzma.LZMAFile(raw, "rb")  # noqa: SIM115 - on the exit stack below
        elif magic.startswith(b"BZh"):
            stream = bz2.BZ2File(raw, "rb")
        if stream is not raw:
            stack.enter_context(stream)
        yield stream


def _norm(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def find_os_release(path: Path) -> str | None:
    """The text of the archive's os-release file, or None if it has none."""
    found: dict[str, str] = {}
    want = OS_RELEASE
    try:
        with open_decompressed(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = _norm(member.name)
                if name == OS_RELEASE and member.issym():
                    target = posixpath.join(posixpath.dirname(name), member.linkname)
                    want = _norm(target)
                elif name in (OS_RELEASE, FALLBACK, want) and member.isfile():
                    fh = tar.extractfile(member)
                    if fh is not None:
                        data = fh.read(MAX_OS_RELEASE)
                        found[name] = data.decode("utf-8", errors="replace")
                if want in found:
                    return found[want]
    except ARCHIVE_ERRORS as err:
        raise ArchiveError(f"unable to read template archive '{path}': {err}") from None
    return found.get(want) or found.get(FALLBACK)


def parse_os_release(text: str) -> dict[str, str]:
    """``KEY=value`` lines with shell quoting, as os-release(5) defines them."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:
            continue
        values[key.strip()] = parts[0] if parts else ""
    return values
