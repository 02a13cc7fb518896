"""Regular expressions kept compiled: every kept program is the pattern ``re`` itself compiles,
the commands' imports compile none of theirs, an unknown or damaged entry is compiled as before,
and a file of another Python (or not to be trusted) is not used."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from re import _compiler  # type: ignore[attr-defined]

import pytest

from shared import classcode, regexcode

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ["shared", "index", "pveam", "vzdump", "pct"]

SAMPLES: list[tuple[str | bytes, int]] = [
    (r"^(?P<key>[a-z][a-z0-9_]*):\s*(?P<value>.*)$", 0),
    (r"(\d+)(?:\.(\d+))?", re.ASCII),
    (r"vzdump-lxc-(\d+)-(\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d)\.tar(\.(gz|zst|lzo))?$", 0),
    (r" (?P<name>[^=,]+)  # a key\n =(?P<v>[^,]*)  # its value\n", re.VERBOSE),
    (r"(?i)caf\u00e9|STRASSE", 0),
    (r"(a)(b)?\2|(?<=x)y(?!z)|(?>c+)d", re.MULTILINE | re.DOTALL),
    (rb"^\x00+[\x01-\x7f]{2,}?$", 0),
    (rb"(?P<magic>\x28\xb5\x2f\xfd)", re.IGNORECASE),
]
TEXTS: list[str] = ["key_1: some value", "12.5 and 7", "vzdump-lxc-100-2026_12_05-10_00_00.tar.zst",
                    "a=b,c=d", "Café strasse", "ab\nxy c+cd", "ccd"]  # fmt: skip
DATA: list[bytes] = [b"\x00\x00ab", b"\x28\xb5\x2f\xfd", b"zz"]


@pytest.fixture(autouse=True)
def _restored() -> Iterator[None]:
    """``re`` as it was after each test: its own compile step and an empty cache."""
    before = _compiler.compile
    re.purge()
    try:
        yield
    finally:
        _compiler.compile = before
        re.purge()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The programs file of a real build (in a fresh interpreter, as ``make bytecode`` runs);
    the dataclass methods' file beside it is ``methods.bin``."""
    where = tmp_path_factory.mktemp("kept")
    methods, programs = where / "methods.bin", where / "programs.bin"
    build = (
        f"from pathlib import Path; from shared import classcode; "
        f"classcode.build({PACKAGES!r}, Path({str(methods)!r}), Path({str(programs)!r}))"
    )
    subprocess.run([sys.executable, "-c", build], cwd=REPO, check=True, capture_output=True)
    return programs


def _file(path: Path, entries: dict[str, bytes], fmt: bytes = regexcode.FORMAT) -> Path:
    classcode._write(path, classcode._header(fmt), entries)
    return path


@pytest.mark.parametrize(("pattern", "flags"), SAMPLES)
def test_a_kept_program_makes_the_pattern_re_makes(pattern: str | bytes, flags: int) -> None:
    kept = regexcode.pattern_of(pattern, regexcode.program(pattern, flags))
    fresh = regexcode._ORIGINAL(pattern, flags)
    assert kept is not None
    # patterns compare by text, flags and program
    assert kept == fresh
    for attr in ("groups", "groupindex", "flags"):
        assert getattr(kept, attr) == getattr(fresh, attr)
    samples: list[str] | list[bytes] = DATA if isinstance(pattern, bytes) else TEXTS
    for text in samples:
        found, expected = kept.search(text), fresh.search(text)  # type: ignore[arg-type]
        assert (found and found.groups()) == (expected and expected.groups())


def test_every_program_of_the_build_is_the_pattern_re_compiles(built: Path) -> None:
    programs = classcode.load(built, regexcode.FORMAT)
    assert programs is not None and len(programs) > 100
    for name, data in programs.items():
        pattern, flags = ast.literal_eval(name)
        assert regexcode.pattern_of(pattern, data) == regexcode._ORIGINAL(pattern, flags), name


# what the commands' imports compile, counted in a fresh interpreter set up as the entry sets up a
# command: none from its text
COUNT_COMPILES = """\
import sys
from pathlib import Path
from shared import classcode, regexcode
compiled = []
real = regexcode._ORIGINAL
def counting(pattern, flags=0):
    compiled.append(pattern)
    return real(pattern, flags)
regexcode._ORIGINAL = counting
assert regexcode.install(Path(sys.argv[1]))
classcode.install(Path(sys.argv[2]))  # as a command does: its methods' annotations are kept too
import pct.cli, pct.ops.create, vzdump.cli, vzdump.engine.job, pveam.cli
print(len(compiled), compiled[:5])
"""


def test_the_commands_imports_compile_no_pattern_of_their_own(built: Path) -> None:
    methods = built.parent / "methods.bin"
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(COUNT_COMPILES), str(built), str(methods)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split()[0] == "0", out


def test_install_gives_re_the_kept_program(tmp_path: Path) -> None:
    pattern, flags = SAMPLES[0]
    path = _file(tmp_path / "p.bin", regexcode.programs({(pattern, flags)}))
    made: list[object] = []
    regexcode._ORIGINAL, real = (lambda p, f=0: made.append(p) or real(p, f)), regexcode._ORIGINAL
    try:
        assert regexcode.install(path)
        assert re.compile(pattern, flags) == real(pattern, flags)
        assert made == []
        # one it does not know is compiled as before
        assert re.compile("not kept (x)").match("not kept x")
        assert made == ["not kept (x)"]
    finally:
        regexcode._ORIGINAL = real


@pytest.mark.parametrize(
    "data",
    [b"\xffgarbage", b"", b"\xe9\x03\x00\x00\x00", None],
    ids=["garbage", "empty", "wrong-shape", "invalid-program"],
)
def test_a_damaged_program_is_compiled_instead(tmp_path: Path, data: bytes | None) -> None:
    pattern = r"(\d+)-(\w+)"
    if data is None:  # well formed, but a program the engine refuses
        import marshal

        data = marshal.dumps((32, [17, 99999, 1], 2, {}, (None, None, None)))
    path = _file(tmp_path / "p.bin", {regexcode.key(pattern, 0): data})
    assert regexcode.install(path)
    found = re.compile(pattern).match("12-ab")
    assert found is not None and found.groups() == ("12", "ab")


def test_a_file_of_another_python_is_not_used(tmp_path: Path) -> None:
    entries = regexcode.programs({(r"\d+", 0)})
    other = regexcode.FORMAT.replace(f"{sys.hexversion:x}".encode(), b"30b00f0")
    assert other != regexcode.FORMAT
    before = _compiler.compile
    assert not regexcode.install(_file(tmp_path / "p.bin", entries, other))
    # nor the dataclass methods' file, nor one that is not to be trusted
    assert not regexcode.install(_file(tmp_path / "m.bin", entries, classcode._FORMAT))
    untrusted = _file(tmp_path / "w.bin", entries)
    untrusted.chmod(0o666)
    assert not regexcode.install(untrusted)
    assert not regexcode.install(tmp_path / "absent.bin")
    assert _compiler.compile is before


def test_the_kept_file_is_the_one_make_writes() -> None:
    path = classcode.cache_path(regexcode.KIND)
    assert path.parent == REPO / "shared/__pycache__"
    assert path.name == f"regex-programs.{sys.implementation.cache_tag}.bin"
