"""Regular expressions kept compiled, as the dataclass methods are (``classcode``).

Python compiles every regular expression a process uses from its text: ``re`` parses the
pattern and turns it into a program for its matching engine, 50-60 µs a pattern. A command
compiles 50-120 of them (most at import: the modules' pattern constants, typer's, the
stdlib's), 3.4 ms of ``pct status`` and 6.5 ms of ``pct create``. A program depends only on
its pattern, its flags and the Python that made it, so the programs of every pattern the
project's modules compile at import are made once, at build time (:func:`recording` during
``classcode.build``), and kept beside the bytecode. A command then hands ``re`` the kept
program of a known pattern (:func:`install`); an unknown one (compiled only inside a function,
or changed since the build) is compiled as before.

The engine checks every program it is given (``invalid SRE code``); the file is trusted as the
dataclass methods' is (``classcode.load``), and its header names the Python and the engine
version that made it: another Python's file is not used.
"""

from __future__ import annotations

import _sre
import contextlib
import marshal
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from re import _compiler, _parser  # type: ignore[attr-defined]
from typing import Any

from . import classcode

KIND = "regex-programs"
FORMAT = f"ctkit regex programs 1 {sys.hexversion:x} {_sre.MAGIC} {_sre.CODESIZE}\n".encode()
_ORIGINAL = _compiler.compile  # re's own: what an unknown pattern still gets


def key(pattern: str | bytes, flags: int) -> str:
    """The name of a pattern's program in the file: its text (or bytes) and flags."""
    return repr((pattern, flags))


def program(pattern: str | bytes, flags: int) -> bytes:
    """The program ``re`` makes of ``pattern``, marshalled: the steps of its own compile
    (``re._compiler.compile``) up to the engine's call, kept instead of made."""
    parsed = _parser.parse(pattern, flags)
    code = _compiler._code(parsed, flags)
    groupindex = dict(parsed.state.groupdict)
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for name, index in groupindex.items():
        indexgroup[index] = name
    total = int(flags | parsed.state.flags)
    code = [int(op) for op in code]  # its opcodes are named int constants: marshal takes ints
    return marshal.dumps((total, code, parsed.state.groups - 1, groupindex, tuple(indexgroup)))


def pattern_of(pattern: str | bytes, data: bytes) -> re.Pattern[Any] | None:
    """The compiled pattern from its kept program; None when the program is damaged (the
    engine refuses it) or not what :func:`program` writes."""
    try:
        total, code, groups, groupindex, indexgroup = marshal.loads(data)
        return _sre.compile(pattern, total, code, groups, groupindex, indexgroup)  # type: ignore[no-any-return]
    except (EOFError, ValueError, TypeError, RuntimeError, OverflowError):
        return None


def _compile_with(programs: dict[str, bytes]) -> Any:
    """What ``re`` calls to compile a pattern it has not cached: the kept program if there is
    one, otherwise its own compile."""

    def compile_(pattern: Any, flags: int = 0) -> re.Pattern[Any]:
        if type(pattern) in (str, bytes) and not flags & re.DEBUG:
            data = programs.get(key(pattern, flags))
            if data is not None:
                kept = pattern_of(pattern, data)
                if kept is not None:
                    return kept
        return _ORIGINAL(pattern, flags)  # type: ignore[no-any-return]

    return compile_


def install(path: Path | None = None) -> bool:
    """Give ``re`` the kept programs, when there is a file to trust (True); otherwise change
    nothing. Only ``re``'s own name for its compile step is replaced: the parser, the cache
    and every other caller stay as they are."""
    programs = classcode.load(path or classcode.cache_path(KIND), FORMAT)
    if not programs:
        return False
    _compiler.compile = _compile_with(programs)
    return True


@contextlib.contextmanager
def recording() -> Iterator[set[tuple[str | bytes, int]]]:
    """Note every pattern ``re`` compiles meanwhile (build time: the imports of every module)."""
    seen: set[tuple[str | bytes, int]] = set()

    def compile_(pattern: Any, flags: int = 0) -> re.Pattern[Any]:
        if type(pattern) in (str, bytes) and not flags & re.DEBUG:
            seen.add((pattern, flags))
        return _ORIGINAL(pattern, flags)  # type: ignore[no-any-return]

    _compiler.compile = compile_
    try:
        yield seen
    finally:
        _compiler.compile = _ORIGINAL


def programs(patterns: set[tuple[str | bytes, int]]) -> dict[str, bytes]:
    """The file's entries for ``patterns``: each one's program, by :func:`key`."""
    return {key(pattern, flags): program(pattern, flags) for pattern, flags in patterns}
