"""Proxmox-style command lines on top of typer.

What Proxmox's CLIHandler accepts and typer does not, fixed by rewriting argv before typer parses:
- ``-opt value`` as well as ``--opt value``;
- booleans as ``--flag``, ``--flag 1``, ``--flag no`` (yes/no/on/off/true/false/0/1);
- unambiguous prefixes of command names (``pveam av``);
- a default command for apps whose main job takes positional arguments (``vzdump 100 ...``).
Options named by a schema (``-mp0``, ``-net3``, ``-dev1``) are collected by commands that accept
extra arguments and parsed with :func:`parse_schema_args`. Errors print Proxmox's
``400 Parameter verification failed.`` lines plus the usage line on stderr.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, NoReturn

import typer
from typer import _click as click  # typer vendors click; its exception classes live here
from typer.models import DefaultPlaceholder

from . import paths, quickexit, signals, stdio
from .cliparams import use_plain_conversion
from .errors import CtkitError, Interrupted, ParamError
from .formats.types import FALSE_WORDS, TRUE_WORDS, FormatError, parse_vmid
from .printable import printable
from .toolenv import complete_path
from .umask import keep_directories_searchable

BOOL_WORDS = TRUE_WORDS | FALSE_WORDS
HELP_WORDS = ("--help", "-help", "-h")
OPTION_RE = re.compile(r"^-{1,2}([A-Za-z][A-Za-z0-9_-]*)(?:=(.*))?$", re.S)


class OutputFormat(enum.StrEnum):
    text = "text"
    json = "json"
    json_pretty = "json-pretty"


OutputFormatOption = Annotated[
    OutputFormat,
    typer.Option("--output-format", help="Output format: text, json or json-pretty."),
]


def new_app(help_text: str, **kw: Any) -> typer.Typer:
    """A typer app with ctkit's defaults (plain tracebacks for bugs, no completion install)."""
    return typer.Typer(
        help=help_text,
        add_completion=False,
        pretty_exceptions_enable=False,
        no_args_is_help=True,
        rich_markup_mode=None,
        **kw,
    )


EXTRA_ARGS = {"ignore_unknown_options": True, "allow_extra_args": True}


def vmid_value(raw: str) -> int:
    """A typer ``parser`` for VMID arguments and options, in Proxmox's pve-vmid format."""
    try:
        return parse_vmid(raw)
    except FormatError as err:
        raise typer.BadParameter(str(err)) from None


def print_json(data: Any, fmt: OutputFormat = OutputFormat.json) -> None:
    indent = 2 if fmt is OutputFormat.json_pretty else None
    print(json.dumps(data, indent=indent, sort_keys=True, default=str))


# --- argv rewriting ------------------------------------------------------------------------


def _is_group(cmd: Any) -> bool:
    return hasattr(cmd, "commands") and isinstance(cmd.commands, dict)


def resolve_command_name(group: Any, token: str) -> str | None:
    """The full name of a (sub)command given a name or an unambiguous prefix."""
    names: list[str] = sorted(
        str(n) for n, c in group.commands.items() if not getattr(c, "hidden", False)
    )
    if token in group.commands:
        return token
    matches = [n for n in names if n.startswith(token)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ParamError(message=f"ambiguous command '{token}' ({', '.join(matches)})")
    return None


def epilog_command(table: Callable[[frozenset[str]], str]) -> type[Any]:
    """A command class whose help ends with ``table(own)`` (after its own epilog), made only
    when the help is shown: a table of the options a command reads as extra arguments (a
    schema the command's start does not load). ``own`` names the command's declared options,
    which the table leaves out (their help above gives the command's own default)."""
    from typer.core import TyperCommand

    class EpilogCommand(TyperCommand):
        def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            own = frozenset(name.lstrip("-") for param in self.params for name in param.opts)
            mine, text = self.epilog, table(own)
            self.epilog = f"{mine}\n\n{text}" if mine else text
            try:
                super().format_epilog(ctx, formatter)
            finally:
                self.epilog = mine  # a second help of the same command shows the table once

    return EpilogCommand


def _option_table(cmd: Any) -> tuple[set[str], dict[str, bool], set[str]]:
    """(value or flag options, boolean options, options that take a value) of a leaf command,
    as long names with dashes. A boolean is ``--x/--no-x`` (True) or a plain flag of a bool
    (False: ``--x 0`` is the flag left out), so that ``--dry-run 1`` works as Proxmox's does."""
    names: set[str] = set()
    bools: dict[str, bool] = {}
    valued: set[str] = set()
    for param in getattr(cmd, "params", []):
        if getattr(param, "param_type_name", "") != "option":
            continue
        for opt in list(param.opts) + list(getattr(param, "secondary_opts", [])):
            names.add(opt)
        if not getattr(param, "is_flag", False):
            valued.update(param.opts)
        elif getattr(param, "secondary_opts", None):
            bools.update(dict.fromkeys(param.opts, True))
        elif getattr(param, "is_bool_flag", False):
            bools.update(dict.fromkeys(param.opts, False))
    return names, bools, valued


SchemaBool = Callable[[str], bool]


def schema_options(is_bool: SchemaBool, is_known: SchemaBool) -> Callable[[Any], Any]:
    """Mark a command that takes schema options as extra args (``-description``, ``-mp0``)
    with its tests for the boolean ones and for the known ones. Every other known schema
    option takes the next word as its value even when that word starts with ``-``
    (``--description -foo``), as Proxmox's option parser does; without the mark the rewrite
    cannot tell such a value from an option. An unknown option takes no value there: the
    parser reports it and reads the next word as what it is."""

    def mark(func: Any) -> Any:
        func.schema_is_bool = is_bool  # typer's wrapper copies the function's attributes
        func.schema_is_known = is_known
        return func

    return mark


def _takes_next_word(cmd: Any, long: str, names: set[str], valued: set[str]) -> bool:
    """Whether an option given without ``=value`` takes the next word, whatever it looks like."""
    if long in names:
        return long in valued
    if long == "--help":  # typer's own flag, not a schema option (``pct set --help 100``)
        return False
    schema = _schema_tests(cmd)
    if schema is None:
        return False
    is_bool, is_known = schema
    return is_known(long[2:]) and not is_bool(long[2:])


def _optional_value_options(cmd: Any) -> set[str]:
    """Options whose value may be left out: declared with a metavar in brackets (``[VALUE]``);
    without a value the command receives an empty string."""
    out: set[str] = set()
    for param in getattr(cmd, "params", []):
        metavar = getattr(param, "metavar", None)
        if getattr(param, "param_type_name", "") == "option" and str(metavar).startswith("["):
            out.update(param.opts)
    return out


def _schema_tests(cmd: Any) -> tuple[SchemaBool, SchemaBool] | None:
    """(is_bool, is_known) of a command marked by :func:`schema_options`, else None."""
    callback = getattr(cmd, "callback", None)
    is_bool: SchemaBool | None = getattr(callback, "schema_is_bool", None)
    is_known: SchemaBool | None = getattr(callback, "schema_is_known", None)
    return None if is_bool is None or is_known is None else (is_bool, is_known)


def _rewrite_leaf(cmd: Any, args: Sequence[str]) -> list[str]:
    """Proxmox's forms (``-opt``, booleans as words, values that start with ``-``) as typer
    reads them. Schema options are moved behind the positional words, each one token with its
    value: Proxmox's option parser takes options anywhere (``vzdump --mode stop 101``,
    ``pct set --memory 512 101``), and typer took the first such option for the VMID."""
    names, bools, valued = _option_table(cmd)
    optional = _optional_value_options(cmd)
    accepts_extra = _accepts_extra(cmd)
    schema = _schema_tests(cmd)
    out: list[str] = []
    tail: list[str] = []  # the schema options, when the command is marked (schema_options)
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if tok == "--":
            out += [*tail, tok, *args[i:]]
            return out
        m = OPTION_RE.match(tok)
        if not m or tok in ("-h",):
            out.append(tok)
            continue
        long = "--" + m.group(1)
        value = m.group(2)
        if long not in names and not accepts_extra and long != "--help":
            out.append(tok)  # let typer report the unknown option
            continue
        target = tail if schema is not None and long not in names and long != "--help" else out
        if long not in names and value is None and i < len(args) and args[i] in HELP_WORDS:
            # a schema option's value, as Proxmox's option parser takes it: never typer's help
            target.append(f"{long}={args[i]}")
            i += 1
            continue
        if long in optional and value is None and (i >= len(args) or OPTION_RE.match(args[i])):
            out.append(f"{long}=")  # given without a value (pct's --password: ask for it)
            continue
        if long in bools:
            if value is None and i < len(args) and args[i].lower() in BOOL_WORDS:
                value = args[i]
                i += 1
            if value is None or value.lower() in TRUE_WORDS:
                out.append(long)
            elif value.lower() in FALSE_WORDS:
                if bools[long]:
                    out.append("--no-" + long[2:])
            else:
                raise ParamError({m.group(1): f"type check ('boolean') failed - got '{value}'"})
            continue
        taken = value is None and i < len(args) and args[i] != "--"
        if taken and (
            _takes_next_word(cmd, long, names, valued)
            or (target is tail and _schema_word(schema, long[2:], args[i]))
        ):
            value = args[i]
            i += 1
        target.append(long if value is None else f"{long}={value}")
    return out + tail


def _schema_word(schema: tuple[SchemaBool, SchemaBool] | None, key: str, word: str) -> bool:
    """Whether a schema option given without ``=value`` takes ``word`` as its value, when it is
    moved behind the positional words: a boolean its ``1``/``0`` word, an option the schema
    does not know the next word that is no option (as the check that reports it takes it)."""
    if schema is None or OPTION_RE.match(word):
        return False
    is_bool, is_known = schema
    if not is_known(key):
        return True
    return is_bool(key) and word.lower() in BOOL_WORDS


def rewrite_argv(
    root: Any, args: Sequence[str], default_command: str | None = None
) -> tuple[list[str], Any]:
    """Rewrite argv Proxmox-style; returns the new argv and the leaf command it selects."""
    args = list(args)
    out: list[str] = []
    cmd = root
    pos = 0
    while _is_group(cmd):
        if pos >= len(args) or args[pos] in ("--help", "-h"):
            return out + args[pos:], cmd
        tok = args[pos]
        name = None if tok.startswith("-") else resolve_command_name(cmd, tok)
        if name is None:
            if cmd is root and default_command is not None:
                name = default_command
                pos -= 1  # the token is the default command's first argument
            else:
                return out + args[pos:], cmd
        out.append(name)
        cmd = cmd.commands[name]
        pos += 1
    return out + _rewrite_leaf(cmd, args[pos:]), cmd


def _accepts_extra(cmd: Any) -> bool:
    """Commands that take schema-named options (``-mp0``) as extra arguments."""
    settings = getattr(cmd, "context_settings", None) or {}
    return bool(
        getattr(cmd, "ignore_unknown_options", False) or settings.get("ignore_unknown_options")
    )


def _arg_name(param: Any) -> str:
    metavar = getattr(param, "metavar", None)
    # a word, hyphens included: ``target-vmid`` showed as the parameter's own name
    if isinstance(metavar, str) and re.fullmatch(r"[A-Za-z][\w-]*", metavar, re.ASCII):
        return metavar
    return str(param.name)


def usage_line(prog_path: str, cmd: Any) -> str:
    """Proxmox's usage line: ``<path> <arg> ... [<optional-arg>] [OPTIONS]`` (two spaces when
    there are no args). A hidden default command (vzdump's backup) is the program itself, with
    the arguments its help shows (``vzdump {<vmid>} [OPTIONS]``)."""
    shown = getattr(cmd, "options_metavar", None)
    if getattr(cmd, "hidden", False) and shown and shown != "[OPTIONS]":
        return f"{prog_path.rsplit(' ', 1)[0]} {shown}"
    argnames = [
        f"<{_arg_name(p)}>" if p.required else f"[<{_arg_name(p)}>]"
        for p in getattr(cmd, "params", [])
        if p.param_type_name == "argument"
    ]
    has_opts = any(p.param_type_name == "option" for p in getattr(cmd, "params", []))
    if _accepts_extra(cmd):
        has_opts = True
    line = f"{prog_path} {' '.join(argnames)}"
    return f"{line} [OPTIONS]" if has_opts else line.rstrip()


# --- schema-driven options -------------------------------------------------------------------


def parse_schema_args(
    extra: Sequence[str],
    is_known: Callable[[str], bool],
    is_bool: Callable[[str], bool],
    is_array: Callable[[str], bool] = lambda _k: False,
    is_list: Callable[[str], bool] = lambda _k: False,
) -> dict[str, Any]:
    """Collect ``--key value`` pairs a command accepted as extra args (``-mp0``, ``-net1``...).

    Values stay raw strings (lists of them for repeatable ``is_array`` keys; a repeated
    ``is_list`` key's values joined with ``,``, as Proxmox joins a ``-list`` format's; any other
    repeated key takes its last value, as Proxmox's option parser does: a wrapper that appends
    ``--storage x`` to a line that has one backs up to ``x``); the caller validates them
    against its schema.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    i = 0
    while i < len(extra):
        tok = extra[i]
        i += 1
        m = OPTION_RE.match(tok)
        if not m:
            raise ParamError(message="too many arguments")
        key, value = m.group(1), m.group(2)
        if not is_known(key):
            errors[key] = (
                "property is not defined in schema and the schema does not allow additional "
                "properties"
            )
            if value is None and i < len(extra) and not OPTION_RE.match(extra[i]):
                i += 1
            continue
        if value is None:
            nxt = extra[i] if i < len(extra) else None
            if is_bool(key) and (
                nxt is None or OPTION_RE.match(nxt) or nxt.lower() not in BOOL_WORDS
            ):
                value = "1"
            elif nxt is None:
                errors[key] = "missing value"
                continue
            else:
                value = nxt
                i += 1
        if is_array(key):
            values.setdefault(key, []).append(value)
            continue
        if key in values and is_list(key):
            values[key] = f"{values[key]},{value}"
            continue
        values[key] = value
    if errors:
        raise ParamError(errors)
    return values


# --- running an app ---------------------------------------------------------------------------


def _say(text: str) -> None:
    """An error line to stderr, control characters escaped: messages quote what the user (or
    a file, an archive) gave, and an escape sequence in it must not drive the terminal."""
    for line in str(text).split("\n"):
        print(printable(line), file=sys.stderr)


def _print_param_error(err: ParamError, usage: str | None) -> None:
    for line in err.lines():
        _say(line)
    if usage:
        _say(usage)


def _convert_click_error(err: Exception) -> ParamError:
    if isinstance(err, click.exceptions.MissingParameter):
        param = err.param
        if param is not None and param.param_type_name == "argument":
            return ParamError(message="not enough arguments")
        name = param.name if param is not None and param.name else "parameter"
        return ParamError({name: "property is missing and it is not optional"})
    if isinstance(err, click.exceptions.NoSuchOption):
        return ParamError(
            {err.option_name.lstrip("-"): "unknown option"}, message="unable to parse option"
        )
    if isinstance(err, click.exceptions.BadParameter):
        param = err.param
        return ParamError({_param_name(param): _proxmox_wording(str(err.message))})
    text = getattr(err, "message", str(err))
    if "unexpected extra argument" in text:
        return ParamError(message="too many arguments")
    return ParamError(message=text)


def _param_name(param: Any) -> str:
    """An option as the user typed it (``max-workers``, not ``max_workers``)."""
    if param is None or not param.name:
        return "parameter"
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return opts[0][2:] if param.param_type_name == "option" and opts else str(param.name)


RANGE_WORDING = [  # the type checks' words for a bound, and Proxmox's for it
    (re.compile(r"Input should be greater than or equal to (\S+)$"), "minimum"),
    (re.compile(r"Input should be less than or equal to (\S+)$"), "maximum"),
]


def _proxmox_wording(text: str) -> str:
    text = text.removeprefix("Value error, ")  # the type check's own prefix, says nothing
    for pattern, bound in RANGE_WORDING:
        if m := pattern.match(text):
            return f"value must have a {bound} value of {m.group(1)}"
    return text


def help_argv(root: Any, args: list[str]) -> list[str]:
    """``help [command...]`` (``pct help``, ``vzdump help``) means ``[command...] --help``."""
    if args and args[0] == "help" and "help" not in getattr(root, "commands", {}):
        named = args[1] if len(args) > 1 and not args[1].startswith("-") else None
        commands = getattr(root, "commands", {})
        if named is not None and not any(name.startswith(named) for name in commands):
            # an app with a default command would take the word as that command's argument,
            # and 'vzdump help jobb' showed the backup's help
            raise ParamError(message=f"No such command '{named}'.")
        return [*args[1:], "--help"]
    return args


def default_help(root: Any, prog: str, default_command: str) -> str:
    """An app whose bare arguments run a default command (``vzdump 100 --mode stop``): its
    help is that command's usage and options, followed by the other commands."""
    cmd = root.commands[default_command]
    text = cmd.get_help(click.Context(cmd, info_name=prog))
    root_ctx = click.Context(root, info_name=prog)
    formatter = root_ctx.make_formatter()
    root.format_commands(root_ctx, formatter)
    return f"{text}\n\n{formatter.getvalue()}"


def run(
    app: typer.Typer,
    prog: str,
    argv: Sequence[str] | None = None,
    *,
    default_command: str | None = None,
    require_root: bool = True,
) -> NoReturn:
    """Parse argv Proxmox-style, run the command, map errors to one line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None:  # the program's own process: what it creates, its children inherit
        stdio.prepare()
        complete_path()
        paths.absolute_root()
        keep_directories_searchable()
    leaf: Any = None
    usage: str | None = None
    try:
        root = leaf = _root_command(app, args, default_command)
        args = help_argv(root, args)
        if default_command is not None and args in (["--help"], ["-h"]):
            sys.stdout.write(default_help(root, prog, default_command))
            raise typer.Exit(0)
        _check_utf8(args)
        args, leaf = rewrite_argv(root, args, default_command)
        path = " ".join([prog] + [a for a in args[: _depth(root, args)]])
        for cmd in _invoked(root, args):
            use_plain_conversion(cmd)
        usage = usage_line(path, leaf)
        wants_help = "--help" in args or not args
        if require_root and os.geteuid() != 0 and not wants_help:
            raise CtkitError("please run as root")
        # TERM, HUP and QUIT end any command as Ctrl-C does: its cleanup runs (a half-made
        # container removed, a lock dropped) before it exits 130; the default action ended it
        # on the spot and left that to the next command's recovery
        with signals.interruptible(), _quiet_unraisable_interrupts():
            try:
                result = root.main(args, prog_name=prog, standalone_mode=False)
            finally:
                if argv is None:  # the program's own process: only its exit is left to do
                    quickexit.hold_signals()
        code = result if isinstance(result, int) else 0
        if code == Interrupted.exit_code:  # typer turns Ctrl-C into a return value of 130
            print(Interrupted().message, file=sys.stderr)
    except ParamError as err:
        _print_param_error(err, err.usage or usage)
        if err.hint:
            _say(f"hint: {err.hint}")
        code = err.exit_code
    except CtkitError as err:
        _say(str(err))
        if err.hint:
            _say(f"hint: {err.hint}")
        code = err.exit_code
    except typer.Exit as err:
        code = err.exit_code
    except typer.Abort:
        code = Interrupted.exit_code
    except click.exceptions.NoArgsIsHelpError as err:
        print(err.ctx.get_help(), file=sys.stderr)  # a bare group: its help, not a "400"
        code = ParamError.exit_code
    except click.exceptions.ClickException as err:
        perr = _convert_click_error(err)
        _print_param_error(perr, usage)
        code = perr.exit_code
    except KeyboardInterrupt:
        print("interrupted by signal", file=sys.stderr)
        code = Interrupted.exit_code
    except BrokenPipeError:
        code = 0
    except Exception as err:
        if not _caused_by_signal(err):
            raise
        print("interrupted by signal", file=sys.stderr)
        code = Interrupted.exit_code
    code = _flush_output(code)
    if argv is None:  # the program's own entry point (callers in a process of theirs go on)
        quickexit.leave(code)
    raise SystemExit(code)


def _flush_output(code: int) -> int:
    """The command's exit code once what it wrote is out: a failure to write it is the
    command's failure, unless it had failed already (a reader gone is none)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # a stream of a caller's own (stdio's drops the rest quietly)
        pass
    except CtkitError as err:  # stdio.OutputError
        _say(str(err))
        return code or err.exit_code
    return code


@contextlib.contextmanager
def _quiet_unraisable_interrupts() -> Iterator[None]:
    """A signal whose KeyboardInterrupt Python cannot raise (it came while a finalizer or an
    import lock's callback ran) is noted by the handler, which the command's next checkpoint
    acts on; Python's own report of it ('Exception ignored in ...', a traceback) is dropped."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _caused_by_signal(err: BaseException) -> bool:
    """Whether ``err`` stands for a signal's KeyboardInterrupt: Python wraps one raised while a
    class is being created (a module still loading) in a RuntimeError."""
    cause: BaseException | None = err
    for _ in range(8):
        if cause is None:
            return False
        if isinstance(cause, KeyboardInterrupt):
            return True
        cause = cause.__cause__
    return False


def _check_utf8(args: Sequence[str]) -> None:
    """Arguments are text in Proxmox's formats (volume ids, paths in configs and logs): one
    that is not valid UTF-8 is refused here, not by a traceback deep inside."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "backslashreplace").decode("ascii", "replace")
            raise ParamError(message=f"argument '{printable(shown)}' is not valid UTF-8") from None


def _root_command(app: typer.Typer, args: Sequence[str], default_command: str | None = None) -> Any:
    """The app as a click group. When argv names one of its commands, or runs the default
    command (``vzdump 100 --mode stop``), the group holds that command alone: typer builds a
    command by inspecting its function, and building all of them cost as much as the rest of
    an interactive command. Everything else (no command, a prefix that is ambiguous or
    unknown, ``help``) gets the whole app."""
    name = _single_command(app, args, default_command)
    if name is None or name == "help":
        return typer.main.get_command(app)
    trimmed = copy.copy(app)
    trimmed.registered_commands = [c for c in app.registered_commands if _info_name(c) == name]
    trimmed.registered_groups = [g for g in app.registered_groups if _info_name(g) == name]
    return typer.main.get_group(trimmed)


def _info_name(info: Any) -> str | None:
    """The name a registered command or sub-app is called by (None: typer decides)."""
    name = _plain(info.name)
    if isinstance(name, str):
        return name
    callback = _plain(getattr(info, "callback", None))
    if name is None and callable(callback):
        return typer.main.get_command_name(callback.__name__)
    return None


def _plain(value: Any) -> Any:
    """A registration value, not typer's placeholder for a default."""
    return value.value if isinstance(value, DefaultPlaceholder) else value


def _single_command(
    app: typer.Typer, args: Sequence[str], default_command: str | None
) -> str | None:
    """The one command argv runs, as :func:`rewrite_argv` will resolve it: the command its
    first word names (or is the only visible prefix of), or the default command for an option
    other than help or a word that names none. None where it is not certain."""
    token = args[0] if args else None
    if token is None or token in ("--help", "-h", "help"):
        return None
    if token.startswith("-"):
        return default_command
    infos: list[Any] = [*app.registered_commands, *app.registered_groups]
    named = [(_info_name(info), _plain(info.hidden)) for info in infos]
    if any(name is None or not isinstance(hidden, bool) for name, hidden in named):
        return None
    if any(name == token for name, _hidden in named):
        return token
    matches = [str(name) for name, hidden in named if not hidden and str(name).startswith(token)]
    if not matches:
        return default_command
    return matches[0] if len(matches) == 1 else None


def _depth(root: Any, args: Sequence[str]) -> int:
    """How many leading argv words name (sub)commands."""
    depth = 0
    cmd = root
    while _is_group(cmd) and depth < len(args) and args[depth] in cmd.commands:
        cmd = cmd.commands[args[depth]]
        depth += 1
    return depth


def _invoked(root: Any, args: Sequence[str]) -> list[Any]:
    """The group and (sub)commands that argv runs, from the root down."""
    cmds = [root]
    for name in args[: _depth(root, args)]:
        cmds.append(cmds[-1].commands[name])
    return cmds
