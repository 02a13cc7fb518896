"""vzdump options (§1.1), VMID lists (§1.2), precedence (§1.3) and the job header (§6)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from shared.archive.codecs import Compression
from shared.errors import ParamError
from shared.formats import vzdumpconf
from vzdump import options
from vzdump.options import (
    BackupOptions,
    check_params,
    merge_options,
    parse_params,
    render_cmdline,
)

UNKNOWN = "property is not defined in schema and the schema does not allow additional properties"


def conf(text: str) -> dict[str, Any]:
    parsed = vzdumpconf.parse(text, options.OPTIONS)
    assert parsed.warnings == []
    return parsed.values


# --- VMID lists (§1.2) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("100", [100]),
        ("102,100;101 103\t104", [100, 101, 102, 103, 104]),
        ("1000 200 30000", [200, 1000, 30000]),  # numeric, not text order
        ("101,100,101", [100, 101]),
        ("", []),
        (" , ;", []),
        (["100", "999,101"], [100, 101, 999]),
    ],
)
def test_vmid_lists(raw: str | list[str], expected: list[int]) -> None:
    assert options.parse_vmid_list(raw) == expected


@pytest.mark.parametrize("raw", ["0100", "100,00200", "0", "99", "1000000000"])
def test_vmids_have_proxmox_format(raw: str) -> None:
    """pve-vmid: 3 to 9 digits, no leading zero - ``0100`` is not VMID 100."""
    with pytest.raises(ParamError) as info:
        parse_params({"vmid": raw})
    assert info.value.errors == {"vmid": "invalid format - value does not look like a valid VM ID"}


@pytest.mark.parametrize(("raw", "bad"), [("abc", "abc"), ("100,1x", "1x"), ("100 -5", "-5")])
def test_strange_vmid(raw: str, bad: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_params({"vmid": raw})
    assert info.value.errors == {"vmid": f"strange VM ID '{bad}'"}


# --- parsing and the parameter checks (§1.1) ----------------------------------------------


def test_parse_typed_values() -> None:
    params = parse_params(
        {
            "vmid": ["100", "101"],
            "mode": "stop",
            "compress": "zstd",
            "all": "0",
            "remove": "no",
            "ionice": "8",
            "exclude-path": ["/var/cache/", "*.tmp"],
            "mailto": "a@example.com, root@pam;b@example.org",
            "prune-backups": "keep-last=3,keep-daily=0",
            "stdout": "1",
        }
    )
    assert params == {
        "vmid": [100, 101],
        "mode": "stop",
        "compress": "zstd",
        "all": False,
        "remove": False,
        "ionice": 8,
        "exclude-path": ["/var/cache/", "*.tmp"],
        "mailto": ["a@example.com", "root@pam", "b@example.org"],
        "prune-backups": {"keep-last": 3, "keep-daily": 0},
        "stdout": True,
    }


def test_vm_and_pbs_options_are_accepted() -> None:
    params = parse_params(
        {
            "performance": "max-workers=4,pbs-entries-max=100",
            "fleecing": "1,storage=local",
            "pbs-change-detection-mode": "metadata",
        }
    )
    assert params["performance"] == {"max-workers": 4, "pbs-entries-max": 100}
    assert params["fleecing"] == {"enabled": True, "storage": "local"}
    assert params["pbs-change-detection-mode"] == "metadata"


def test_bad_values_are_reported_together() -> None:
    with pytest.raises(ParamError) as info:
        parse_params(
            {
                "mode": "fast",
                "ionice": "9",
                "maxfiles": "3",
                "prune-backups": "keep-last=1,keep-foo=2",
                "mailto": "not an address!",
                "storage": "x",
            }
        )
    assert info.value.errors == {
        "mode": "value 'fast' does not have a value in the enumeration 'snapshot, suspend, stop'",
        "ionice": "value must have a maximum value of 8",
        "maxfiles": UNKNOWN,  # removed in 2025
        "prune-backups": "invalid format - format error",
        "prune-backups.keep-foo": UNKNOWN,
        "mailto": "invalid format - value 'address!' does not look like a valid email address "
        "or user name",
        "storage": "invalid format - storage ID 'x' cannot be shorter than 2 characters",
    }


def test_acceptance_25_keep_all_with_others_is_a_parameter_error() -> None:
    with pytest.raises(ParamError) as info:
        parse_params({"vmid": "100", "prune-backups": "keep-all=1,keep-last=2"})
    assert info.value.errors == {
        "prune-backups": "keep-all cannot be set together with other options."
    }


def test_acceptance_25_zero_keeps_mean_keep_all_and_no_removal() -> None:
    cli = parse_params({"vmid": "100", "prune-backups": "keep-last=0,keep-daily=0"})
    opts = merge_options(cli, {})
    assert opts["prune-backups"] == {"keep-all": True}
    assert opts["remove"] is False


@pytest.mark.parametrize("key", ["all", "exclude", "pool"])
def test_selection_conflicts_with_vmid(key: str) -> None:
    raw = {"vmid": "100", key: {"all": "1", "exclude": "101", "pool": "web"}[key]}
    with pytest.raises(ParamError) as info:
        check_params(parse_params(raw))
    assert info.value.errors == {key: "option conflicts with option 'vmid'"}


def test_all_zero_does_not_conflict() -> None:
    assert check_params(parse_params({"vmid": "100", "all": "0"}))["vmid"] == [100]


def test_missing_selection() -> None:
    with pytest.raises(ParamError) as info:
        check_params(parse_params({"mode": "stop"}))
    assert info.value.errors == {"vmid": "property is missing"}
    with pytest.raises(ParamError):
        check_params(parse_params({"vmid": "0"}))  # only VMID 0, which is dropped


def test_stop_needs_no_selection() -> None:
    assert check_params(parse_params({"stop": "1"}))["stop"] is True


def test_exclude_implies_all_unless_pool() -> None:
    assert check_params(parse_params({"exclude": "101"}))["all"] is True
    params = check_params(parse_params({"exclude": "101", "pool": "web"}))
    assert "all" not in params


@pytest.mark.parametrize(
    ("raw", "errors"),
    [
        (
            {"vmid": "100", "stdout": "1", "storage": "local"},
            {"stdout": "cannot use options 'storage' and 'stdout' at the same time"},
        ),
        (
            {"vmid": "100,101", "stdout": "1"},
            {"vmid": "you can only backup a single VM with option --stdout"},
        ),
        (
            {"all": "1", "stdout": "1"},
            {"vmid": "you can only backup a single VM with option --stdout"},
        ),
        (
            {"vmid": "100", "storage": "local", "dumpdir": "/srv"},
            {"dumpdir": "cannot use options 'storage' and 'dumpdir' at the same time"},
        ),
        (
            {"vmid": "100", "dumpdir": "/srv", "notes-template": "{{vmid}}"},
            {"storage": "missing property - 'notes-template' requires this property"},
        ),
        (
            {"vmid": "100", "dumpdir": "/srv", "protected": "1"},
            {"storage": "missing property - 'protected' requires this property"},
        ),
        (
            {"vmid": "100", "stdout": "1", "protected": "1"},
            {"storage": "missing property - 'protected' requires this property"},
        ),
        (
            {"vmid": "100", "stdout": "1", "notes-template": "{{vmid}}"},
            {"storage": "missing property - 'notes-template' requires this property"},
        ),
    ],
)
def test_target_conflicts(raw: dict[str, str], errors: dict[str, str]) -> None:
    with pytest.raises(ParamError) as info:
        check_params(parse_params(raw))
    assert info.value.errors == errors


# --- precedence (§1.3) ------------------------------------------------------------------------


def test_defaults_when_nothing_is_set() -> None:
    opts = merge_options(parse_params({"vmid": "100"}), {})
    assert opts == {
        "vmid": [100],
        "all": False,
        "mode": "snapshot",
        "compress": "0",
        "zstd": 1,
        "pigz": 0,
        "bwlimit": 0,
        "ionice": 7,
        "parallel": 1,
        "lockwait": 180,
        "stopwait": 10,
        "remove": False,  # forced off by the keep-all default
        "stdexcludes": True,
        "quiet": False,
        "mailnotification": "always",
        "notification-mode": "auto",
        "stop": False,
        "storage": "local",
        "exclude-path": [],
        "performance": {"max-workers": 16, "pbs-entries-max": 1048576},
        "prune-backups": {"keep-all": True},
    }


def test_cli_beats_conf_beats_default() -> None:
    defaults = conf("mode: stop\nbwlimit: 1024\nionice: 3\n")
    opts = merge_options(parse_params({"vmid": "100", "mode": "suspend"}), defaults)
    assert (opts["mode"], opts["bwlimit"], opts["ionice"], opts["lockwait"]) == (
        "suspend",
        1024,
        3,
        180,
    )


def test_conf_storage_applies_only_without_cli_target() -> None:
    defaults = conf("storage: nas\n")
    assert merge_options({"vmid": [100]}, defaults)["storage"] == "nas"
    opts = merge_options({"vmid": [100], "dumpdir": "/srv/dump/"}, defaults)
    assert opts["dumpdir"] == "/srv/dump"  # trailing slash stripped
    assert "storage" not in opts
    opts = merge_options({"vmid": [100], "storage": "backup"}, conf("dumpdir: /srv/dump\n"))
    assert (opts["storage"], "dumpdir" in opts) == ("backup", False)
    opts = merge_options({"vmid": [100]}, conf("dumpdir: /srv/dump\ntmpdir: /var/tmp/\n"))
    assert (opts["dumpdir"], opts["tmpdir"], "storage" in opts) == ("/srv/dump", "/var/tmp", False)


def test_conf_with_storage_and_dumpdir_uses_storage() -> None:
    parsed = vzdumpconf.parse("dumpdir: /srv\nstorage: nas\n", options.OPTIONS)
    assert parsed.warnings == [
        "both 'storage' and 'dumpdir' defined in '/etc/vzdump.conf' - ignoring 'dumpdir'"
    ]
    opts = merge_options({"vmid": [100]}, parsed.values)
    assert (opts["storage"], "dumpdir" in opts) == ("nas", False)


def test_acceptance_23_exclude_path_from_conf_and_cli() -> None:
    defaults = conf("exclude-path: /var/cache/ '/srv/big files'\nexclude-path: *.iso\n")
    cli = parse_params({"vmid": "100", "exclude-path": ["/home/x"]})
    opts = merge_options(cli, defaults)
    assert opts["exclude-path"] == ["/var/cache/", "/srv/big files", "*.iso", "/home/x"]
    assert options.exclude_patterns(BackupOptions.from_values(opts)) == [
        "/var/cache/",
        "/srv/big files",
        "*.iso",
        "/home/x",
        "/tmp/?*",
        "/var/tmp/?*",
        "/var/run/?*.pid",
    ]
    opts = merge_options(parse_params({"vmid": "100", "stdexcludes": "0"}), defaults)
    patterns = options.exclude_patterns(BackupOptions.from_values(opts))
    assert patterns == ["/var/cache/", "/srv/big files", "*.iso"]


def test_acceptance_29_retention_precedence() -> None:
    defaults = conf("prune-backups: keep-last=7\n")
    calls: list[str] = []

    def storage_prune(storage: str) -> dict[str, Any] | None:
        calls.append(storage)
        return {"keep-hourly": 24} if storage == "local" else None

    opts = merge_options(parse_params({"vmid": "100"}), defaults, storage_prune)
    assert opts["prune-backups"] == {"keep-hourly": 24}
    assert opts["remove"] is True
    assert calls == ["local"]
    # a storage without its own setting falls back to vzdump.conf
    opts = merge_options(parse_params({"vmid": "100", "storage": "nas"}), defaults, storage_prune)
    assert opts["prune-backups"] == {"keep-last": 7}
    # the CLI beats both; keep-all switches removal off
    cli = parse_params({"vmid": "100", "prune-backups": "keep-all=1"})
    opts = merge_options(cli, defaults, storage_prune)
    assert opts["prune-backups"] == {"keep-all": True}
    assert opts["remove"] is False
    # a dump directory has no storage setting to ask
    calls.clear()
    opts = merge_options(parse_params({"vmid": "100", "dumpdir": "/srv"}), defaults, storage_prune)
    assert (opts["prune-backups"], calls) == ({"keep-last": 7}, [])


def test_conf_remove_is_honoured() -> None:
    defaults = conf("remove: 0\nprune-backups: keep-last=2\n")
    opts = merge_options({"vmid": [100]}, defaults)
    assert (opts["remove"], opts["prune-backups"]) == (False, {"keep-last": 2})
    assert merge_options({"vmid": [100], "remove": True}, defaults)["remove"] is True


def test_performance_merges_per_sub_key() -> None:
    defaults = conf("performance: max-workers=8,pbs-entries-max=5000\n")
    cli = parse_params({"vmid": "100", "performance": "max-workers=2"})
    assert merge_options(cli, defaults)["performance"] == {
        "max-workers": 2,
        "pbs-entries-max": 5000,
    }


def test_conf_notes_and_protected_need_a_storage() -> None:
    defaults = conf("notes-template: {{guestname}}\nprotected: 1\n")
    opts = merge_options({"vmid": [100]}, defaults)  # storage local
    assert (opts["notes-template"], opts["protected"]) == ("{{guestname}}", True)
    opts = merge_options({"vmid": [100], "dumpdir": "/srv"}, defaults)
    assert "notes-template" not in opts and "protected" not in opts


def test_cli_notes_with_a_conf_dumpdir_is_an_error() -> None:
    cli = parse_params({"vmid": "100", "notes-template": "{{vmid}}"})
    with pytest.raises(ParamError) as info:
        merge_options(cli, conf("dumpdir: /srv\n"))
    assert info.value.errors == {
        "storage": "missing property - 'notes-template' requires this property"
    }


def test_conf_cannot_change_selection_or_quiet() -> None:
    defaults = conf("all: 1\nvmid: 200\nexclude: 300\npool: web\nquiet: 1\nnode: other\n")
    opts = merge_options(parse_params({"vmid": "100"}), defaults)
    assert (opts["vmid"], opts["all"], opts["quiet"]) == ([100], False, False)
    assert "exclude" not in opts and "pool" not in opts and "node" not in opts


def test_real_vzdump_conf_file(ctroot: Path) -> None:
    path = ctroot / "etc" / "vzdump.conf"
    path.parent.mkdir(parents=True)
    path.write_text("# node defaults\nmode: stop\nionice: 42\nexclude-path: /a\n")
    parsed = vzdumpconf.read(options.OPTIONS)
    assert parsed.values == {"mode": "stop", "exclude-path": ["/a"]}
    assert parsed.warnings == [
        "parse error in '/etc/vzdump.conf' - 'ionice': value must have a maximum value of 8"
    ]
    opts = merge_options(parse_params({"vmid": "100"}), parsed.values)
    assert (opts["mode"], opts["ionice"], opts["exclude-path"]) == ("stop", 7, ["/a"])


# --- the job header's command line (§6) -------------------------------------------------------


def test_cmdline_of_the_spec_example() -> None:
    params = parse_params(
        {
            "vmid": "100",
            "compress": "zstd",
            "mode": "snapshot",
            "storage": "local",
            "prune-backups": "keep-last=3",
        }
    )
    assert render_cmdline(params) == (
        "vzdump 100 --compress zstd --mode snapshot --storage local --prune-backups 'keep-last=3'"
    )


def test_cmdline_details() -> None:
    params = parse_params(
        {
            "vmid": "101 100",
            "exclude-path": ["/var/cache/", "/srv/it's here"],
            "mailto": "a@example.com;root@pam",
            "notes-template": "{{guestname}}",
            "remove": "0",
            "stdout": "1",
            "prune-backups": "keep-weekly=4,keep-daily=7",
            "script": "",
        }
    )
    assert render_cmdline(params) == (
        "vzdump 100 101 --exclude-path /var/cache/ --exclude-path '/srv/it'\\''s here'"
        " --mailto a@example.com,root@pam --notes-template '{{guestname}}' --remove 0"
        " --prune-backups 'keep-daily=7,keep-weekly=4'"
    )


def test_cmdline_of_a_job() -> None:
    params = {"all": True, "exclude": [101, 100], "job-id": "backup-1", "quiet": True}
    assert render_cmdline(params) == (
        "vzdump --all 1 --exclude 101,100 --job-id backup-1 --quiet 1"
    )
    raw = {"vmid": "100", "prune-backups": "keep-last=3,keep-daily=7", "performance": "x=1"}
    # property strings given as text are printed canonically; unparsable text is kept
    assert render_cmdline(raw) == (
        "vzdump 100 --prune-backups 'keep-daily=7,keep-last=3' --performance 'x=1'"
    )


def test_cmdline_never_shows_a_webhooks_credentials_or_query() -> None:
    """The first line of the task log, and of every mail's body and the JSON summary (0644)."""
    params = {"vmid": "100", "notify-webhook": "https://hook:S3cret@hooks.example:8443/x?token=T0k"}
    line = render_cmdline(params)
    assert line == "vzdump 100 --notify-webhook https://hooks.example:8443/x"
    assert "S3cret" not in line and "T0k" not in line


@pytest.mark.parametrize(
    ("word", "quoted"),
    [
        ("zstd", "zstd"),
        ("/var/lib/vz", "/var/lib/vz"),
        ("a@b.c,d:e+f%g^h!", "a@b.c,d:e+f%g^h!"),
        ("keep-last=3", "'keep-last=3'"),
        ("", "''"),
        ("a b", "'a b'"),
        ("/var/foo*", "'/var/foo*'"),
        ("it's", "'it'\\''s'"),
        ("'", "\\'"),
        ("''", "\"''\""),
        ("x''y", "'x'\"''\"'y'"),
        ("$HOME", "'$HOME'"),
    ],
)
def test_shell_quote(word: str, quoted: str) -> None:
    assert options.shell_quote(word) == quoted


def test_job_header() -> None:
    params = parse_params({"vmid": "100", "mode": "stop"})
    assert options.job_header(params) == "starting new backup job: vzdump 100 --mode stop"


def test_backup_options_are_typed_immutable_and_take_the_table_defaults() -> None:
    opts = BackupOptions.from_values(
        merge_options(parse_params({"vmid": "101,100", "compress": "zstd", "zstd": "0"}), {})
    )
    assert (opts.vmid, opts.mode, opts.compress, opts.zstd) == ((100, 101), "snapshot", "zstd", 0)
    assert (opts.ionice, opts.lockwait, opts.stopwait, opts.bwlimit) == (7, 180, 10, 0)
    assert opts.compression is Compression.ZSTD and opts.remove is False  # keep-all
    assert dict(opts.retention) == {"keep-all": True} and opts.mailto == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.mode = "stop"  # type: ignore[misc]
    with pytest.raises(TypeError):
        opts.performance["max-workers"] = 1  # type: ignore[index]
    bare = BackupOptions.from_values({})
    assert (bare.compression, bare.protected, bare.stdout) == (Compression.NONE, False, False)


# --- the worker bound (a ctkit addition) ------------------------------------------------------


def test_parallel_from_cli_conf_and_default(ctroot: Path) -> None:
    """``parallel`` is a command-line option, a vzdump.conf default (1 without one) and is
    checked like the other numbers."""
    assert BackupOptions.from_values(merge_options(parse_params({"vmid": "100"}), {})).parallel == 1
    path = ctroot / "etc" / "vzdump.conf"
    path.parent.mkdir(parents=True)
    path.write_text("parallel: 3\n")
    parsed = vzdumpconf.read(options.OPTIONS)
    assert parsed.values == {"parallel": 3}
    opts = merge_options(parse_params({"vmid": "100"}), parsed.values)
    assert BackupOptions.from_values(opts).parallel == 3
    opts = merge_options(parse_params({"vmid": "100", "parallel": "2"}), parsed.values)
    assert BackupOptions.from_values(opts).parallel == 2
    with pytest.raises(ParamError) as err:
        parse_params({"parallel": "0"})
    assert "parallel" in err.value.errors


@pytest.mark.parametrize("key", ["zstd", "pigz"])
@pytest.mark.parametrize("raw", ["18446744073709551616", "-1", "257"])
def test_compressor_threads_are_bounded_before_anything_runs(key: str, raw: str) -> None:
    """2^64 threads went through a whole stop-mode backup and failed at the compressor."""
    with pytest.raises(ParamError) as info:
        parse_params({key: raw}, options.OPTIONS)
    assert key in info.value.errors


def test_a_non_ascii_mail_address_is_refused() -> None:
    """It passed, became an RFC 2047 encoded word in the To: line, and the mail went to an
    address nobody has (``=?utf-8?q?j=C3=BCrgen?=@host``)."""
    for value in ("jürgen", "müller@example.com"):
        with pytest.raises(ParamError) as info:
            parse_params({"mailto": value})
        assert info.value.errors["mailto"] == (
            f"invalid format - value '{value}' does not look like a valid email address "
            "or user name"
        )


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:99999/hook", "https://hooks.example/a\x07b", "http://h/\x7f"]
)
def test_a_webhook_url_that_can_never_work_is_refused(url: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_params({"notify-webhook": url})
    assert info.value.errors == {
        "notify-webhook": "invalid format - value does not look like an http(s) URL"
    }
