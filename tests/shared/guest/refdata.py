"""Parse Proxmox's setup test vectors from the team's reference markdown (read in place).

The markdown describes each vector's config, the files of its root file system and the files
expected after the post-create hook. Some files are only described ("stock account list",
"stock distro file (N lines)"); their full text is in Part D of the same document, and the
stated line counts are checked when a fixture is rebuilt from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

K1 = "# --- BEGIN PVE ---\nssh-rsa ABCDEFG ABC@DEF\n# --- END PVE ---\n"
ITEM_RE = re.compile(r"- `([^`]+)`( \(no trailing newline\))?:\s*(.*)$")
TICKS_RE = re.compile(r"`([^`]*)`")
# 20 bytes of an x86-64 ELF header: magic, 64-bit, little endian, ET_DYN, EM_X86_64
ELF_AMD64_HEADER = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x03\x00\x3e\x00"
# Files the markdown only names ("present"); any plausible content does, they are not compared.
PRESENT = {
    "/usr/lib/systemd/system/container-getty@.service": (
        "[Unit]\nDescription=Container Getty on /dev/pts/%I\n\n[Service]\n"
        "ExecStart=-/sbin/agetty --noclear --keep-baud pts/%I 115200,38400,9600 $TERM\n"
    ),
    "/etc/SuSE-release": "openSUSE 42.2 (x86_64)\nVERSION = 42.2\nCODENAME = Malachite\n",
}
# CentOS 6's rc.sysinit is not reproduced in the reference (its result is not compared).
RC_SYSINIT = (
    "#!/bin/bash\n#\n# /etc/rc.d/rc.sysinit - run once at boot time\n"
    '. /etc/init.d/functions\n/sbin/start_udev\necho "done"\n'
)


@dataclass
class Expect:
    path: str
    kind: str  # exact | unchanged | diff | skip
    text: str = ""
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)


@dataclass
class Vector:
    name: str
    config: dict[str, str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    expects: list[Expect] = field(default_factory=list)


def _code_block(lines: list[str], i: int) -> tuple[str, int]:
    """The fenced block starting at line ``i`` (``\\`\\`\\```), and the index after it."""
    assert lines[i] == "```", f"expected a code block at line {i + 1}: {lines[i]!r}"
    end = lines.index("```", i + 1)
    return "\n".join(lines[i + 1 : end]), end + 1


def _stock(markdown: list[str]) -> dict[str, tuple[str, str]]:
    """Part D: ``{"D.1": (heading + note text, block)}``."""
    out: dict[str, tuple[str, str]] = {}
    i = 0
    while i < len(markdown):
        match = re.match(r"### (D\.\d+) (.*)$", markdown[i])
        if match:
            j = i + 1
            notes = [match.group(2)]
            while markdown[j] != "```":
                notes.append(markdown[j])
                j += 1
            block, i = _code_block(markdown, j)
            out[match.group(1)] = ("\n".join(notes), block)
            continue
        i += 1
    return out


def parse(path: Path) -> list[Vector]:
    lines = path.read_text(encoding="utf-8").split("\n")
    stock = _stock(lines)
    vectors: list[Vector] = []
    starts = [i for i, line in enumerate(lines) if line.startswith("### test-")]
    part_d = next(i for i, line in enumerate(lines) if line.startswith("## Part D"))
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else part_d
        vectors.append(_vector(lines[start:end], stock))
    return vectors


def _vector(lines: list[str], stock: dict[str, tuple[str, str]]) -> Vector:
    name = lines[0][len("### ") :]
    i = lines.index("Config (`<id>.conf`):")
    config_text, _ = _code_block(lines, i + 1)
    config = {}
    for line in config_text.split("\n"):
        key, _, value = line.partition(": ")
        config[key] = value
    vector = Vector(name, config)
    section = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("Pre-existing files"):
            section = "input"
        elif line.startswith("Expected files"):
            section = "expected"
        match = ITEM_RE.match(line)
        if section and match:
            path, no_newline, desc = match.group(1), bool(match.group(2)), match.group(3)
            block = None
            if desc == "":
                block, i = _code_block(lines, i + 1)
                block = block if no_newline else block + "\n"
            else:
                i += 1
            if section == "input":
                _add_input(vector, path, desc, block, stock)
            else:
                vector.expects.append(_expect(path, desc, block))
            continue
        i += 1
    return vector


def _add_input(
    vector: Vector, path: str, desc: str, block: str | None, stock: dict[str, tuple[str, str]]
) -> None:
    if block is not None:
        vector.files[path] = block
    elif desc == "empty file":
        vector.files[path] = ""
    elif match := re.fullmatch(r"symlink to `([^`]+)`", desc):
        vector.symlinks[path] = match.group(1)
    elif desc.startswith("stock account list"):
        vector.files[path] = _account_list(path, desc, stock)
    elif match := re.match(r"stock distro file \((\d+) lines", desc):
        vector.files[path] = _stock_file(path, int(match.group(1)), stock)
    elif desc.startswith("present"):
        vector.files[path] = PRESENT[path]
    elif desc.startswith("truncated ELF header (x86-64)"):
        vector.files[path] = ELF_AMD64_HEADER
    else:
        values = TICKS_RE.findall(desc)
        assert values, f"{vector.name}: cannot understand input {path}: {desc}"
        vector.files[path] = "\n".join(values) + "\n"


def _account_list(path: str, desc: str, stock: dict[str, tuple[str, str]]) -> str:
    root_line = TICKS_RE.findall(desc)[0]
    key = {"/etc/passwd": "D.5", "/etc/shadow": "D.6"}[path]
    body = stock[key][1].split("\n")
    assert body[0].startswith("root:")
    text = "\n".join([root_line, *body[1:]]) + "\n"
    count = int(re.search(r"\((\d+) lines\)", desc).group(1))  # type: ignore[union-attr]
    assert text.count("\n") == count
    return text


def _stock_file(path: str, count: int, stock: dict[str, tuple[str, str]]) -> str:
    if path == "/etc/rc.d/rc.sysinit":
        text = RC_SYSINIT
    elif path == "/etc/crontab":
        text = stock["D.2"][1] + "\n"
    elif path == "/etc/securetty":
        notes, block = stock["D.3"] if count == 23 else stock["D.4"]
        text = block if "no trailing newline" in notes else block + "\n"
    elif path == "/etc/inittab":
        notes, block = stock["D.1"]
        assert "ends with one empty line" in notes
        text = block + "\n\n"
        if count != 68 + 1:  # debian-010's variant: the getty block is one line
            single = TICKS_RE.findall(notes.split("getty block is the single line", 1)[1])[0]
            text = re.sub(r"(?m)^1:2345:.*\n(?:\d:23:respawn:.*\n)+", single + "\n", text)
    else:
        raise AssertionError(f"no stock file for {path}")
    lines = len(text.split("\n")) - (1 if text.endswith("\n") else 0)
    assert lines == count, f"{path}: rebuilt {lines} lines, the reference says {count}"
    return text


def _expect(path: str, desc: str, block: str | None) -> Expect:
    if block is not None:
        return Expect(path, "exact", block)
    if desc == "unchanged":
        return Expect(path, "unchanged")
    if desc.startswith("standard key block"):
        return Expect(path, "exact", K1)
    if "NOT compared" in desc:
        return Expect(path, "skip")
    if desc.startswith(("removed lines:", "added lines:")):
        removed_part, _, added_part = desc.partition("added lines:")
        removed = removed_part.removeprefix("removed lines:")
        return Expect(
            path, "diff", removed=TICKS_RE.findall(removed), added=TICKS_RE.findall(added_part)
        )
    raise AssertionError(f"cannot understand expectation for {path}: {desc}")
