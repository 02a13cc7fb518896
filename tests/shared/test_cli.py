"""Proxmox-style argument handling, exercised through a small typer app (in this process, but
for the signals: a command of its own there)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import typer

from shared import cli
from shared.errors import NotFoundError, ParamError

REPO = Path(__file__).resolve().parents[2]

app = cli.new_app("test app")
seen: dict[str, object] = {}


@app.command()
def available(
    section: Annotated[str | None, typer.Option()] = None,
    output_format: cli.OutputFormatOption = cli.OutputFormat.text,
) -> None:
    seen.update(cmd="available", section=section, fmt=output_format.value)


@app.command()
def download(storage: str, template: str) -> None:
    seen.update(cmd="download", storage=storage, template=template)
    if template == "missing":
        raise ParamError({"template": "no such template"})
    if storage.startswith("no"):
        raise NotFoundError(f"storage '{storage}' does not exist")


@app.command("set", context_settings=cli.EXTRA_ARGS)
@cli.schema_options(
    lambda k: k == "onboot", lambda k: k.startswith(("mp", "net", "onboot", "description"))
)
def set_(
    ctx: typer.Context,
    vmid: int,
    start: Annotated[bool | None, typer.Option()] = None,
    exclude_path: Annotated[list[str] | None, typer.Option("--exclude-path")] = None,
) -> None:
    extra = cli.parse_schema_args(
        ctx.args,
        is_known=lambda k: k.startswith(("mp", "net", "onboot", "description")),
        is_bool=lambda k: k == "onboot",
    )
    seen.update(cmd="set", vmid=vmid, start=start, extra=extra, exclude=exclude_path)


@app.command()
def prune(
    storage: str,
    dry_run: Annotated[bool | None, typer.Option("--dry-run")] = None,
) -> None:
    seen.update(cmd="prune", storage=storage, dry_run=dry_run)


job = cli.new_app("jobs")


@job.command("list")
def job_list(
    max_workers: Annotated[int, typer.Option("--max-workers", min=1, max=64)] = 4,
) -> None:
    seen.update(cmd="job list")


@app.command("backup", hidden=True)
def backup(
    vmids: Annotated[list[str] | None, typer.Argument()] = None,
    all_: Annotated[bool | None, typer.Option("--all")] = None,
) -> None:
    seen.update(cmd="backup", vmids=vmids, all=all_)


app.add_typer(job, name="job")


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str], default: str | None = None
) -> tuple[int, str]:
    seen.clear()
    with pytest.raises(SystemExit) as info:
        cli.run(app, "tool", argv, default_command=default)
    code = info.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err


def test_single_dash_and_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["av", "-section", "system"], capsys)[0] == 0
    assert seen == {"cmd": "available", "section": "system", "fmt": "text"}
    assert run(["available", "--output-format", "json"], capsys)[0] == 0
    assert seen["fmt"] == "json"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--start"], True),
        (["--start", "0"], False),
        (["-start", "yes"], True),
        (["--start=off"], False),
        (["--start", "1"], True),
        ([], None),
    ],
)
def test_boolean_forms(
    argv: list[str], expected: bool | None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run(["set", "100", *argv], capsys)
    assert code == 0, err
    assert seen["start"] is expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--dry-run"], True),
        (["--dry-run", "1"], True),
        (["--dry-run=1"], True),
        (["-dry-run", "yes"], True),
        (["--dry-run", "0"], None),
        (["--dry-run=no"], None),
        ([], None),
    ],
)
def test_a_plain_flag_takes_the_boolean_forms_too(
    argv: list[str], expected: bool | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """``vzdump prune local --dry-run 1`` (as Proxmox takes it) was 'too many arguments': a
    flag without a --no- form did not take a value."""
    code, err = run(["prune", "local", *argv], capsys)
    assert code == 0, err
    assert seen == {"cmd": "prune", "storage": "local", "dry_run": expected}


def test_a_repeated_option_joins_a_list_and_takes_the_last_value() -> None:
    """As Proxmox joins a ``-list`` format's values (``vzdump --mailto a --mailto b``); any
    other option given twice takes its last value, as Proxmox's option parser does (it was
    refused: "duplicate option")."""
    extra = ["--mailto", "root", "--onboot", "--mailto=a@b.c,d@e.f", "-mailto", "admin"]
    values = cli.parse_schema_args(
        extra, is_known=lambda _k: True, is_bool=lambda k: k == "onboot",
        is_list=lambda k: k == "mailto",
    )  # fmt: skip
    assert values == {"mailto": "root,a@b.c,d@e.f,admin", "onboot": "1"}
    values = cli.parse_schema_args(
        ["--memory", "1", "--memory", "2"], is_known=lambda _k: True, is_bool=lambda _k: False
    )
    assert values == {"memory": "2"}


def test_schema_options_and_repeats(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(
        [
            "set",
            "100",
            "-mp0",
            "local:1,mp=/a",
            "--net1=name=eth1",
            "-onboot",
            "--exclude-path",
            "/a",
            "-exclude-path",
            "/b c",
        ],
        capsys,
    )
    assert code == 0, err
    assert seen["extra"] == {"mp0": "local:1,mp=/a", "net1": "name=eth1", "onboot": "1"}
    assert seen["exclude"] == ["/a", "/b c"]


@pytest.mark.parametrize(
    ("argv", "extra", "exclude"),
    [
        (
            ["-description", "-foo", "-onboot", "-mp0", "x"],
            {"description": "-foo", "onboot": "1", "mp0": "x"},
            None,
        ),
        (["--mp0", "--x", "--exclude-path", "-h"], {"mp0": "--x"}, ["-h"]),
        (["-onboot", "-description=-y"], {"onboot": "1", "description": "-y"}, None),
    ],
)
def test_a_value_that_starts_with_a_dash(
    argv: list[str],
    extra: dict[str, str],
    exclude: list[str] | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As Proxmox's option parser: an option that takes a value takes the next word."""
    code, err = run(["set", "100", *argv], capsys)
    assert code == 0, err
    assert seen["extra"] == extra and seen["exclude"] == exclude


@pytest.mark.parametrize(
    "argv",
    [
        ["-mp0", "local:1,mp=/a", "-onboot", "0", "100", "--start"],
        ["--onboot=0", "--mp0=local:1,mp=/a", "--start", "100"],
        ["-description", "-x", "100", "-onboot", "no", "--mp0", "local:1,mp=/a", "-start"],
    ],
)
def test_schema_options_before_the_positional_words(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Proxmox's option parser takes options anywhere (``pct set --memory 512 101``); the
    first schema option before the VMID was taken for the VMID."""
    code, err = run(["set", *argv], capsys)
    assert code == 0, err
    assert seen["vmid"] == 100 and seen["start"] is True
    extra = {"onboot": "0", "mp0": "local:1,mp=/a"}
    if "-description" in argv:
        extra = {"description": "-x", "onboot": "no", "mp0": "local:1,mp=/a"}
    assert seen["extra"] == extra


@pytest.mark.parametrize(
    "argv",
    [["--help", "100"], ["-help", "100", "-onboot"], ["100", "--help", "-mp0", "x"]],
)
def test_help_before_other_words_is_help(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--help`` is never an option that takes a value, on a command with schema options
    too: the command's help, not "Option '--help' does not take a value"."""
    seen.clear()
    with pytest.raises(SystemExit) as info:
        cli.run(app, "tool", ["set", *argv])
    out, err = capsys.readouterr()
    assert (info.value.code, err) == (0, "")
    assert out.startswith("Usage: tool set") and seen == {}


@pytest.mark.parametrize("argv", [["-foo", "-mp0", "x"], ["--foo", "--onboot", "1"]])
def test_an_unknown_option_takes_no_option_as_its_value(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """As Proxmox's option parser: an unknown option is reported and takes no value, the next
    option stays an option; the error names the unknown one, not "too many arguments"."""
    code, err = run(["set", "100", *argv], capsys)
    assert code == 2
    assert "foo: property is not defined in schema" in err and "too many" not in err


def test_unknown_schema_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["set", "100", "-foo", "1"], capsys)
    assert code == 2
    assert "400 Parameter verification failed." in err
    assert "foo: property is not defined in schema" in err
    assert err.rstrip().endswith("tool set <vmid> [OPTIONS]")


def test_param_error_from_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["download", "local", "missing"], capsys)
    assert code == 2
    assert err == (
        "\n400 Parameter verification failed.\ntemplate: no such template\n"
        "tool download <storage> <template>\n"
    )


def test_missing_and_extra_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["download", "local"], capsys)
    assert (code, err) == (2, "400 not enough arguments\ntool download <storage> <template>\n")
    code, err = run(["download", "a", "b", "c"], capsys)
    assert code == 2 and err.startswith("400 too many arguments")


def test_an_argument_that_is_not_utf8_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A path or volume id with a Latin-1 byte (argv gives it as a surrogate escape) went on to
    end the command with a traceback where it was first encoded (a log line, a name check)."""
    code, err = run(["set", "caf\udce9"], capsys)
    assert (code, err) == (2, "400 argument 'caf\\udce9' is not valid UTF-8\n")
    assert seen == {}


def test_bad_typed_argument(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["set", "abc"], capsys)
    assert code == 2
    assert "vmid:" in err


def test_expected_failure_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["download", "nostore", "x"], capsys)
    assert (code, err) == (3, "storage 'nostore' does not exist\n")


def test_subgroup_and_default_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["job", "l"], capsys, default="backup")[0] == 0
    assert seen == {"cmd": "job list"}
    assert run(["100", "101"], capsys, default="backup")[0] == 0
    assert seen == {"cmd": "backup", "vmids": ["100", "101"], "all": None}
    assert run(["-all"], capsys, default="backup")[0] == 0
    assert seen["all"] is True


def test_default_command_is_built_alone(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vzdump 100 ...`` builds the backup command only, not every command of the app."""
    built: list[list[str]] = []
    get_group = typer.main.get_group

    def spy(app: typer.Typer) -> typer.core.TyperGroup:
        group = get_group(app)
        built.append(sorted(group.commands))
        return group

    monkeypatch.setattr(typer.main, "get_group", spy)
    assert run(["100", "101"], capsys, default="backup")[0] == 0
    assert seen == {"cmd": "backup", "vmids": ["100", "101"], "all": None}
    assert run(["-all"], capsys, default="backup")[0] == 0
    assert seen["all"] is True
    assert built == [["backup"], ["backup"]]
    # a word that names a command, or a prefix of one, builds that one; help builds them all
    built.clear()
    assert run(["j", "l"], capsys, default="backup")[0] == 0
    assert seen == {"cmd": "job list"}
    assert run(["b"], capsys, default="backup")[0] == 0  # hidden: 'b' is no prefix of it
    assert seen == {"cmd": "backup", "vmids": ["b"], "all": None}
    assert built == [["job"], ["backup"]]
    built.clear()
    assert run(["help"], capsys, default="backup")[0] == 0
    assert ["available", "backup", "download", "job", "prune", "set"] in built


def test_help_of_a_command_that_does_not_exist_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``vzdump help jobb`` (a typo) showed the backup command's help: the default command took
    the word as its argument."""
    code, err = run(["help", "jobb"], capsys, default="backup")
    assert (code, err.splitlines()[0]) == (2, "400 No such command 'jobb'.")
    assert run(["help", "jo"], capsys, default="backup")[0] == 0  # a prefix: job's help
    assert run(["help"], capsys, default="backup")[0] == 0


def test_a_bad_option_value_is_named_and_worded_as_proxmox_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``pct stopall --max-workers 0`` said 'max_workers: Input should be greater than or equal
    to 1': the function's parameter, in the type checker's words."""
    code, err = run(["job", "list", "--max-workers", "0"], capsys)
    assert code == 2 and "\nmax-workers: value must have a minimum value of 1\n" in err, err
    code, err = run(["job", "list", "--max-workers", "99"], capsys)
    assert code == 2 and "\nmax-workers: value must have a maximum value of 64\n" in err, err
    code, err = run(["available", "--output-format", "xx"], capsys)
    assert code == 2 and "\noutput-format: 'xx' is not one of " in err, err


def test_ambiguous_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    code, _err = run(["b"], capsys)  # backup (hidden) is not offered; 'b' matches nothing visible
    assert code == 2
    code, _err = run(["a"], capsys)
    assert code == 0 and seen["cmd"] == "available"


def test_usage_line_without_args() -> None:
    group = typer.main.get_command(app)
    assert (
        cli.usage_line("tool available", group.commands["available"]) == "tool available  [OPTIONS]"
    )


def test_usage_line_of_a_hidden_default_command_is_the_program_s() -> None:
    """vzdump's errors ended with ``vzdump backup  [OPTIONS]``, a command nobody types."""
    little = typer.Typer()

    @little.command("backup", hidden=True, options_metavar="{<vmid>} [OPTIONS]")
    def backup() -> None:
        """Back up."""

    @little.command("other")
    def other() -> None:
        """Other."""

    commands = typer.main.get_command(little).commands  # type: ignore[attr-defined]
    assert cli.usage_line("vzdump backup", commands["backup"]) == "vzdump {<vmid>} [OPTIONS]"
    assert cli.usage_line("vzdump other", commands["other"]) == "vzdump other"


def test_usage_line_names_arguments_by_their_metavar() -> None:
    """Proxmox's ``<target-vmid>``: a metavar with a hyphen showed as ``<target_vmid_arg>``."""
    little = typer.Typer()

    @little.command()
    def move(
        vmid: Annotated[int, typer.Argument(metavar="vmid")],
        target: Annotated[str, typer.Argument(metavar="target-vmid")],
        odd: Annotated[str, typer.Argument(metavar="<x y>")],
        storage: Annotated[str | None, typer.Argument(metavar="storage")] = None,
    ) -> None:
        """Move."""

    line = cli.usage_line("tool move", typer.main.get_command(little))
    # an optional argument in brackets, as Proxmox's (it showed as required); typer adds --help
    assert line == "tool move <vmid> <target-vmid> <odd> [<storage>] [OPTIONS]"


def test_what_an_error_quotes_reaches_the_terminal_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Messages quote what was given: an escape sequence in an argument drove the terminal."""
    code, err = run(["set", "\x1b[2J"], capsys)
    assert code == 2 and "\x1b" not in err
    code, err = run(["download", "no\x1b]0;t\x07store", "x"], capsys)
    assert code == 3 and "\x1b" not in err and "\x07" not in err and err.count("\n") == 1


SLOW_APP = """
import sys, time
from pathlib import Path
import typer
from shared import cli

app = cli.new_app("test")

@app.command()
def work(marker: str) -> None:
    Path(marker).write_text("started")
    try:
        print("working", flush=True)
        time.sleep(30)
    finally:
        Path(marker).write_text("cleaned up")

cli.run(app, "slow", require_root=False)
"""


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT], ids=["TERM", "HUP", "QUIT"]
)
def test_term_hup_and_quit_end_any_command_after_its_cleanup(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Every command, not only those that asked for it: the signal is Ctrl-C, the command's
    cleanup runs and it exits 130 with one line (the default action ended it on the spot)."""
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_APP, "work", str(marker)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "working\n"
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted by signal"
    assert marker.read_text() == "cleaned up"


class _SignalWhileNamed:
    def __set_name__(self, owner: type, name: str) -> None:
        raise KeyboardInterrupt  # a signal that came while a module's class was being made


loader = cli.new_app("loads late")


@loader.command()
def load(bug: Annotated[bool, typer.Option()] = False) -> None:
    if bug:
        raise RuntimeError("a bug")

    class Late:  # made as a lazily imported module makes its classes
        field = _SignalWhileNamed()


FINALIZER_APP = """
from shared import cli

app = cli.new_app("test")

class SignalInFinalizer:
    def __del__(self):
        raise KeyboardInterrupt  # a signal that came while a finalizer ran

@app.command()
def finalize() -> None:
    SignalInFinalizer()

cli.run(app, "finalize", require_root=False)
"""


def test_a_signal_python_could_not_raise_leaves_no_report() -> None:
    """Python prints 'Exception ignored in' and a traceback for a KeyboardInterrupt it could
    not raise (in a finalizer, an import lock's callback); the command's stderr stays clean."""
    proc = subprocess.run(
        [sys.executable, "-c", FINALIZER_APP, "finalize"],
        capture_output=True, text=True, cwd=REPO, timeout=30,
    )  # fmt: skip
    assert (proc.returncode, proc.stderr) == (0, "")


def test_a_signal_that_python_wrapped_is_still_an_interruption(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A signal during a lazy import, as a class is made, reaches the runner as the cause of a
    RuntimeError (Python wraps errors of ``__set_name__``): one line and 130, no traceback. An
    error of another cause still goes through, to be seen."""
    with pytest.raises(SystemExit) as info:
        cli.run(loader, "tool", ["load"])
    assert info.value.code == 130
    assert capsys.readouterr().err == "interrupted by signal\n"
    with pytest.raises(RuntimeError, match="a bug"):
        cli.run(loader, "tool", ["load", "--bug"])
