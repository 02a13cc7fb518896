"""A tiny terminal for tests: replays what a program wrote to a pseudo-terminal and returns the
screen lines a user would see (cursor moves, carriage returns and line erasing as rich uses
them; colours and other modes ignored)."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import termios

CSI = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])")
ANSI = re.compile(r"\x1b\[[?0-9;]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


def open_pty(columns: int = 160, rows: int = 50) -> tuple[int, int]:
    """(master, slave) with a window size, so programs size their output to it."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    return master, slave


def read_all(master: int) -> str:
    """Everything written to the pty until the last writer closed it."""
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: no writer left
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def plain(raw: str) -> str:
    """The text without escape sequences (every frame of a bar, one after another)."""
    return ANSI.sub("", raw)


def screen(raw: str) -> list[str]:
    lines: list[list[str]] = [[]]
    row = col = 0
    pos = 0
    while pos < len(raw):
        char = raw[pos]
        if char == "\x1b":
            match = CSI.match(raw, pos)
            pos = match.end() if match else pos + 2
            if match:
                row, col = _control(lines, row, col, match.group(1), match.group(2))
            continue
        pos += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            row, col = row + 1, 0
        elif char.isprintable():
            while len(lines) <= row:
                lines.append([])
            line = lines[row]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = char
            col += 1
        while len(lines) <= row:
            lines.append([])
    text = ["".join(line).rstrip() for line in lines]
    while text and not text[-1]:
        text.pop()
    return text


def _control(
    lines: list[list[str]], row: int, col: int, params: str, final: str
) -> tuple[int, int]:
    num = int(params) if params.isdigit() else None
    while len(lines) <= row:
        lines.append([])
    if final == "A":
        row = max(0, row - (num or 1))
    elif final == "B":
        row += num or 1
    elif final == "G":
        col = (num or 1) - 1
    elif final == "K":
        line = lines[row]
        if num == 2:
            lines[row] = []
        elif num == 1:
            lines[row] = [" "] * col + line[col:]
        else:
            del line[col:]
    return row, col
