"""vzdump.conf parsing (vzdump §1.3) with a schema of the test's own (shared owns no options)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.formats import vzdumpconf
from shared.formats.types import Bool, Enum, Int, ListOf, Str, ValueType

UNKNOWN = "property is not defined in schema and the schema does not allow additional properties"


@dataclass(frozen=True)
class Spec:
    type: ValueType = field(default_factory=Str)
    array: bool = False


SCHEMA = {
    "mode": Spec(Enum("snapshot", "suspend", "stop")),
    "ionice": Spec(Int(minimum=0, maximum=8)),
    "stdexcludes": Spec(Bool()),
    "remove": Spec(Bool()),
    "storage": Spec(Str()),
    "dumpdir": Spec(Str()),
    "script": Spec(Str()),
    "exclude-path": Spec(Str(), array=True),
    "mailto": Spec(ListOf(Str())),
}

SHIPPED = """\
# vzdump default settings

#tmpdir: DIR
#dumpdir: DIR
#storage: STORAGE_ID
#mode: snapshot|suspend|stop
#bwlimit: KBPS
#performance: [max-workers=N][,pbs-entries-max=N]
#ionice: PRI
#lockwait: MINUTES
#stopwait: MINUTES
#stdexcludes: BOOLEAN
#mailto: ADDRESSLIST
#prune-backups: keep-INTERVAL=N[,...]
#script: FILENAME
#exclude-path: PATHLIST
#pigz: N
#notes-template: {{guestname}}
#pbs-change-detection-mode: legacy|data|metadata
#fleecing: enabled=BOOLEAN,storage=STORAGE_ID
"""


def test_shipped_file_is_all_comments() -> None:
    parsed = vzdumpconf.parse(SHIPPED, SCHEMA)
    assert (parsed.values, parsed.warnings) == ({}, [])


def test_values_comments_blank_lines_and_whitespace() -> None:
    text = "\n  # a comment\n\tmode:   stop  \nionice:3\n\n   script: /usr/local/bin/hook:x \n"
    parsed = vzdumpconf.parse(text, SCHEMA)
    assert parsed.values == {"mode": "stop", "ionice": 3, "script": "/usr/local/bin/hook:x"}
    assert parsed.warnings == []


def test_line_without_colon_is_ignored_with_a_warning() -> None:
    parsed = vzdumpconf.parse("mode stop\n  just words  \nionice: 2\n", SCHEMA)
    assert parsed.values == {"ionice": 2}
    assert parsed.warnings == ["ignore config line: mode stop", "ignore config line: just words"]


def test_unknown_key_and_bad_value_are_dropped_with_a_warning() -> None:
    text = "maxfiles: 3\nmode: fast\nionice: 9\nstdexcludes: maybe\nremove: 0\n"
    parsed = vzdumpconf.parse(text, SCHEMA)
    assert parsed.values == {"remove": False}
    assert parsed.warnings == [
        f"parse error in '/etc/vzdump.conf' - 'maxfiles': {UNKNOWN}",
        "parse error in '/etc/vzdump.conf' - 'mode': value 'fast' does not have a value in "
        "the enumeration 'snapshot, suspend, stop'",
        "parse error in '/etc/vzdump.conf' - 'ionice': value must have a maximum value of 8",
        "parse error in '/etc/vzdump.conf' - 'stdexcludes': type check ('boolean') failed - "
        "got 'maybe'",
    ]


def test_boolean_words() -> None:
    for word, value in [("1", True), ("yes", True), ("On", True), ("TRUE", True),
                        ("0", False), ("no", False), ("off", False), ("False", False)]:  # fmt: skip
        assert vzdumpconf.parse(f"remove: {word}", SCHEMA).values == {"remove": value}


def test_exclude_path_repeats_and_splits_into_shell_words() -> None:
    text = "exclude-path: /a '/b c' \"/d e\"\nexclude-path: /f\\ g *.tmp\n"
    parsed = vzdumpconf.parse(text, SCHEMA)
    assert parsed.values == {"exclude-path": ["/a", "/b c", "/d e", "/f g", "*.tmp"]}


def test_exclude_path_with_an_unbalanced_quote() -> None:
    parsed = vzdumpconf.parse("exclude-path: /a '/b\nmode: stop\n", SCHEMA)
    assert parsed.values == {"mode": "stop"}
    assert parsed.warnings == [
        "parse error in '/etc/vzdump.conf' - 'exclude-path': unable to split "
        "'/a '/b' into words - no closing quotation"
    ]


WORD_LINES = [
    "'/var/foo*' /srv/*.tmp", '"/br/\\[x\\]"', '"/star/\\*"', "'/it\\'s' /foo", "/star/\\*",
    "a'b c'd e", "  x  y  ", 'a"b\\"c"', "/a\\ b", '"a\\\\b" \'c\\\\d\' e\\\\f', "é\tü",
]  # fmt: skip


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl is not installed")
@pytest.mark.parametrize("line", WORD_LINES)
def test_words_are_split_as_proxmox_splits_them(line: str) -> None:
    """Proxmox splits an array option's line with Perl's Text::ParseWords (shellwords): the
    same words here, also where a POSIX shell's would differ (backslashes in quotes)."""
    script = 'use Text::ParseWords; print join("\\0", shellwords($ARGV[0])), "\\n";'
    out = subprocess.run(["perl", "-e", script, line], capture_output=True, check=True)
    perl = out.stdout.decode().removesuffix("\n")
    words = vzdumpconf.parse(f"exclude-path: {line}", SCHEMA).values["exclude-path"]
    assert "\0".join(words) == perl


def test_mailto_is_split_as_a_list() -> None:
    parsed = vzdumpconf.parse("mailto: a@example.com, root@pam;  b@example.org\n", SCHEMA)
    assert parsed.values == {"mailto": ["a@example.com", "root@pam", "b@example.org"]}


def test_repeated_plain_key_last_wins() -> None:
    assert vzdumpconf.parse("mode: stop\nmode: suspend\n", SCHEMA).values == {"mode": "suspend"}


def test_storage_wins_over_dumpdir() -> None:
    parsed = vzdumpconf.parse("dumpdir: /srv/dump\nstorage: nas\n", SCHEMA)
    assert parsed.values == {"storage": "nas"}
    assert parsed.warnings == [
        "both 'storage' and 'dumpdir' defined in '/etc/vzdump.conf' - ignoring 'dumpdir'"
    ]


def test_file_name_in_messages() -> None:
    parsed = vzdumpconf.parse("foo: 1\n", SCHEMA, filename="/srv/x.conf")
    assert parsed.warnings == [f"parse error in '/srv/x.conf' - 'foo': {UNKNOWN}"]


def test_read_default_path_and_missing_file(ctroot: Path) -> None:
    assert vzdumpconf.read(SCHEMA) == vzdumpconf.VzdumpConf()
    path = ctroot / "etc" / "vzdump.conf"
    path.parent.mkdir(parents=True)
    path.write_text("mode: suspend\nbogus\n")
    parsed = vzdumpconf.read(SCHEMA)
    assert parsed.values == {"mode": "suspend"}
    assert parsed.warnings == ["ignore config line: bogus"]
    other = ctroot / "other.conf"
    other.write_text("ionice: 1\n")
    assert vzdumpconf.read(SCHEMA, other).values == {"ionice": 1}


def test_a_directory_or_fifo_in_its_place_is_one_error(tmp_path: Path) -> None:
    """A directory ended every job with a traceback; a FIFO would have blocked it."""
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    for name in ("dir", "fifo"):
        with pytest.raises(ConfigError, match=r"^/etc/vzdump\.conf: '.*' is not a regular file$"):
            vzdumpconf.read(SCHEMA, tmp_path / name)
