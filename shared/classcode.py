"""Ready-compiled code for the methods that ``dataclasses`` writes.

Python 3.11 builds every dataclass's ``__init__``, ``__repr__`` and ``__eq__`` (and a frozen
one's ``__setattr__``, ``__delattr__`` and ``__hash__``) as source text, and compiles each text
on its own at import: 0.3-0.4 ms a class. ``pct create`` imports 55 classes and spent 20 ms of
its 80 ms of imports compiling them; ``pct status``, a quarter of its whole run. A text depends
only on its class's fields and options, so its code is compiled once, at build time
(``make bytecode`` runs :func:`build`), and kept beside the package's bytecode as Python keeps a
module's. A command then reads that one file (:func:`install`, 2 ms) and dataclasses executes
the kept code of every text the file has. A text it lacks (a class changed since the build) is
compiled as before: a stale file costs time, never a wrong method.

The file holds code that root runs, as a ``.pyc`` does: it is used only when it is a regular file
of root's (or of whoever runs the command) that nobody else may write, and was written by this
Python (its bytecode magic number heads it).

The same build keeps the programs of the regular expressions that imports compile
(``regexcode``), in a file of their own that is trusted the same way.
"""

from __future__ import annotations

import _frozen_importlib_external as _bootstrap
import marshal
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import CodeType
from typing import Any

KIND = "dataclass-methods"
_FORMAT = b"ctkit dataclass methods 1\n"
_MAX_BYTES = 8 << 20  # the whole project's 600 methods take 700 KB


def cache_path(kind: str = KIND) -> Path:
    """Where the kept code of ``kind`` is (this one's, or ``regexcode``'s)."""
    tag = sys.implementation.cache_tag or "none"
    return Path(__file__).parent / "__pycache__" / f"{kind}.{tag}.bin"


def _header(fmt: bytes = _FORMAT) -> bytes:
    return bytes(_bootstrap.MAGIC_NUMBER) + fmt


def load(path: Path, fmt: bytes = _FORMAT) -> dict[str, bytes] | None:
    """The kept code by source text, each code object marshalled on its own (a command
    unmarshals the few it runs: the whole file's 600 took 2 ms, this 0.3 ms), or None when
    ``path`` is absent or not to be trusted. ``fmt`` names the kind of code, and its version,
    after the bytecode's magic number."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_uid not in (0, os.geteuid())
            or st.st_mode & 0o022
            or st.st_size > _MAX_BYTES
        ):
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(_MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    header = _header(fmt)
    if not data.startswith(header):
        return None  # another Python's (or a damaged) file
    try:
        codes = marshal.loads(memoryview(data)[len(header) :])
    except (EOFError, ValueError, TypeError):
        return None
    if not isinstance(codes, dict) or not all(
        type(text) is str and type(code) is bytes for text, code in codes.items()
    ):
        return None
    return codes


def _executor(codes: dict[str, bytes], compiled: dict[str, CodeType] | None) -> Callable[..., None]:
    """What dataclasses calls as ``exec``: the kept code for a known text; otherwise the text
    compiled here (and noted in ``compiled`` when building)."""

    def run(source: Any, globals_: Any = None, locals_: Any = None) -> None:
        if type(source) is not str:
            exec(source, globals_, locals_)
            return
        code = _kept(codes.get(source))
        if code is None:
            # without this module's future flags: the annotations are what dataclasses gives
            code = compile(source, "<string>", "exec", dont_inherit=True)
            if compiled is not None:
                compiled[source] = code
        exec(code, globals_, locals_)

    return run


def _kept(data: bytes | None) -> CodeType | None:
    if data is None:
        return None
    try:
        code = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
    return code if type(code) is CodeType else None


def install(path: Path | None = None) -> bool:
    """Give dataclasses the kept code, when there is a file to trust (True); otherwise change
    nothing. Only that module's name ``exec`` is replaced: the builtin stays as it is for
    everyone else."""
    codes = load(path or cache_path())
    if not codes:
        return False
    import dataclasses

    dataclasses.exec = _executor(codes, None)  # type: ignore[attr-defined]
    return True


def build(
    packages: Sequence[str], path: Path | None = None, programs_path: Path | None = None
) -> int:
    """Import every module of ``packages`` (and so of their dependencies) and keep the code of
    every dataclass method compiled meanwhile, and the program of every regular expression
    (``regexcode``, in ``programs_path``); returns how many methods were kept. Run in a fresh
    interpreter: classes and patterns made before are not seen. The caller names the packages
    (the Makefile: this library imports none of the apps)."""
    import importlib
    import pkgutil

    from . import regexcode

    compiled: dict[str, CodeType] = {}
    with regexcode.recording() as patterns:  # from the first import on: dataclasses' too
        import dataclasses

        dataclasses.exec = _executor({}, compiled)  # type: ignore[attr-defined]
        try:
            for name in packages:
                package = importlib.import_module(name)
                for info in pkgutil.walk_packages(package.__path__, f"{name}."):
                    importlib.import_module(info.name)
        finally:
            del dataclasses.exec  # type: ignore[attr-defined]
    kept = {text: marshal.dumps(code) for text, code in compiled.items()}
    _write(path or cache_path(), _header(), kept)
    programs = regexcode.programs(patterns)
    _write(programs_path or cache_path(regexcode.KIND), _header(regexcode.FORMAT), programs)
    return len(compiled)


def _write(target: Path, header: bytes, kept: dict[str, bytes]) -> None:
    from .atomic import write_bytes  # after the walk: its classes (if any) are kept too

    target.parent.mkdir(exist_ok=True)
    write_bytes(target, header + marshal.dumps(kept), mode=0o644, durable=False)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m shared.classcode PACKAGE...")
    build(sys.argv[1:])
