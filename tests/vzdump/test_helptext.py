"""The backup command's help describes every option it lists."""

from __future__ import annotations

from vzdump.helptext import DESCRIPTIONS, backup_help
from vzdump.options import CLI_OPTIONS


def test_every_option_has_a_description() -> None:
    missing = [name for name in CLI_OPTIONS if not DESCRIPTIONS.get(name)]
    assert missing == []
    lines = backup_help().splitlines()
    for name in CLI_OPTIONS:
        if name == "vmid":
            continue
        at = next(i for i, line in enumerate(lines) if line.startswith(f"  --{name} "))
        assert lines[at + 1].strip() == DESCRIPTIONS[name]


def test_ctkit_additions_say_so() -> None:
    for name in ("parallel", "verify", "notify-webhook"):
        assert DESCRIPTIONS[name].startswith("ctkit: ")
