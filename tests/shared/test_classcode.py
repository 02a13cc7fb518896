"""The dataclass methods kept compiled: the code a command runs is the kept code, classes made
with it behave as compiled ones, a changed class still gets its methods, and a file that is not
to be trusted is never run."""

from __future__ import annotations

import dataclasses
import marshal
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import CodeType

import pytest

from shared import classcode

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ["shared", "index", "pveam", "vzdump", "pct"]


def _texts(make: object) -> dict[str, CodeType]:
    """The texts dataclasses compiles for the classes ``make()`` defines, with their code."""
    compiled: dict[str, CodeType] = {}
    dataclasses.exec = classcode._executor({}, compiled)  # type: ignore[attr-defined]
    try:
        make()  # type: ignore[operator]
    finally:
        del dataclasses.exec  # type: ignore[attr-defined]
    return compiled


def _made_with(
    codes: dict[str, bytes], make: Callable[[], type]
) -> tuple[object, dict[str, CodeType]]:
    """An instance of the class ``make()`` defines with ``codes`` kept, and the texts missed."""
    missed: dict[str, CodeType] = {}
    dataclasses.exec = classcode._executor(codes, missed)  # type: ignore[attr-defined]
    try:
        return make()(1), missed
    finally:
        del dataclasses.exec  # type: ignore[attr-defined]


def _point() -> type:
    @dataclasses.dataclass(frozen=True)
    class Point:
        x: int
        y: int = 2

    return Point


def _write(path: Path, codes: dict[str, CodeType], header: bytes | None = None) -> None:
    kept = {text: marshal.dumps(code) for text, code in codes.items()}
    path.write_bytes((classcode._header() if header is None else header) + marshal.dumps(kept))
    path.chmod(0o644)


def test_a_class_runs_the_kept_code_not_a_new_compile(tmp_path: Path) -> None:
    texts = _texts(_point)
    names = ("__init__", "__repr__", "__eq__", "__setattr__", "__delattr__", "__hash__")
    assert sorted(n for n in names for t in texts if f" def {n}(" in t) == sorted(names)
    # the kept __repr__ is marked: a class made with the file must show it
    marked = {
        text: compile(text.replace("return", "return 'kept:' +", 1), "<string>", "exec")
        if " def __repr__(" in text
        else code
        for text, code in texts.items()
    }
    path = tmp_path / "methods.bin"
    _write(path, marked)
    codes = classcode.load(path)
    assert codes is not None and len(codes) == len(texts)
    point, missed = _made_with(codes, _point)
    assert missed == {}
    assert repr(point).startswith("kept:")


def test_classes_made_with_kept_code_behave_as_compiled_ones(tmp_path: Path) -> None:
    path = tmp_path / "methods.bin"
    _write(path, _texts(_point))
    assert classcode.install(path)
    try:
        kept = _point()
    finally:
        del dataclasses.exec  # type: ignore[attr-defined]
    plain = _point()
    assert repr(kept(1)) == repr(plain(1)) == "_point.<locals>.Point(x=1, y=2)"
    assert kept(1, 3) == kept(1, 3) and kept(1) != kept(2)
    assert hash(kept(1)) == hash(kept(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        kept(1).x = 5
    with pytest.raises(TypeError):
        kept()


def test_a_class_changed_since_the_build_is_compiled_as_before(tmp_path: Path) -> None:
    path = tmp_path / "methods.bin"
    _write(path, _texts(_point))

    def changed() -> type:
        @dataclasses.dataclass(frozen=True)
        class Point:
            x: int
            y: int = 2
            z: int = 3

        return Point

    codes = classcode.load(path)
    assert codes is not None
    point, missed = _made_with(codes, changed)
    assert repr(point).endswith("Point(x=1, y=2, z=3)")
    assert any("z" in text for text in missed)


def _box() -> type:
    @dataclasses.dataclass
    class Box:
        size: int
        label: str = "x"

    return Box


def test_kept_methods_carry_the_annotations_dataclasses_gives() -> None:
    # this module's annotations are text, as most of ctkit's: the methods' annotations are that
    # text, and the class's generated docstring names it (not the names the code uses inside)
    stock = _box()
    codes = {text: marshal.dumps(code) for text, code in _texts(_box).items()}
    dataclasses.exec = classcode._executor(codes, None)  # type: ignore[attr-defined]
    try:
        kept = _box()
    finally:
        del dataclasses.exec  # type: ignore[attr-defined]
    assert kept.__init__.__annotations__ == stock.__init__.__annotations__  # type: ignore[misc]
    assert kept.__init__.__annotations__["size"] == "int"  # type: ignore[misc]
    assert kept.__doc__ == stock.__doc__ == "Box(size: 'int', label: 'str' = 'x')"


def _valid(path: Path) -> Path:
    _write(path, _texts(_point))
    assert classcode.load(path)
    return path


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    real = _valid(tmp_path / "real.bin")
    link = tmp_path / "methods.bin"
    link.symlink_to(real)
    assert classcode.load(link) is None
    assert not classcode.install(link)


@pytest.mark.parametrize("mode", [0o664, 0o646])
def test_a_file_others_may_write_is_not_run(tmp_path: Path, mode: int) -> None:
    path = _valid(tmp_path / "methods.bin")
    path.chmod(mode)
    assert classcode.load(path) is None


def test_a_file_of_another_user_is_not_run(tmp_path: Path) -> None:
    path = _valid(tmp_path / "methods.bin")
    os.chown(path, 1000, 1000)
    assert classcode.load(path) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 64,  # another Python's magic number
        b"garbage after the header",
        marshal.dumps({"text": 1}),  # not marshalled code
        marshal.dumps(["text"]),
    ],
    ids=["empty", "other-python", "garbage", "wrong-values", "not-a-dict"],
)
def test_a_damaged_or_foreign_file_is_not_run(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "methods.bin"
    header = b"" if data.startswith(b"\x00") else classcode._header()
    path.write_bytes(header + data)
    path.chmod(0o644)
    assert classcode.load(path) is None


def test_a_kept_entry_that_is_no_code_is_compiled_instead(tmp_path: Path) -> None:
    texts = _texts(_point)
    path = tmp_path / "methods.bin"
    path.write_bytes(classcode._header() + marshal.dumps({t: b"\xffbroken" for t in texts}))
    path.chmod(0o644)
    assert classcode.install(path)
    try:
        point = _point()(1)
    finally:
        del dataclasses.exec  # type: ignore[attr-defined]
    assert repr(point).endswith("Point(x=1, y=2)")


def test_absent_file_changes_nothing(tmp_path: Path) -> None:
    assert not classcode.install(tmp_path / "nothing.bin")
    assert "exec" not in vars(dataclasses)


# what a command imports, counted in a fresh interpreter: every method comes from the file
COUNT_MISSES = """\
import sys
from pathlib import Path
from shared import classcode
misses = []
real = compile
def counting(source, *args, **kw):
    misses.append(source)
    return real(source, *args, **kw)
classcode.compile = counting
assert classcode.install(Path(sys.argv[1]))
import pct.cli, pct.ops.create, vzdump.cli, pveam.cli
print(len(misses))
"""


def test_the_build_keeps_every_method_the_commands_make(tmp_path: Path) -> None:
    path, programs = tmp_path / "methods.bin", tmp_path / "programs.bin"
    build = (
        f"from pathlib import Path; from shared import classcode; {PACKAGES=}; "
        f"print(classcode.build(PACKAGES, Path({str(path)!r}), Path({str(programs)!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", build], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert int(out) > 300
    assert path.stat().st_mode & 0o022 == 0
    misses = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(COUNT_MISSES), str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert misses.strip() == "0"
