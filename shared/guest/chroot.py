"""Run a function in a forked child that has ``chroot()``-ed into the container's root.

Inside the chroot every absolute or ``../..`` symlink of the container resolves within the
container, so hostile links (``/etc/hosts -> /etc/shadow``) can neither be read from nor written
to on the host. The child sends its result (JSON) or its error back through a pipe.

The child runs only code that is already loaded: its import path is emptied before anything is
read, so a lazy import can never pick up a Python module from the container.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared import errors
from shared.errors import ConfigError, CtkitError

# Error classes a child may report by name; anything else is a bug and is reported as such.
_KNOWN_ERRORS: dict[str, type[CtkitError]] = {
    cls.__name__: cls
    for cls in (errors.CtkitError, errors.ConfigError, errors.NotFoundError, errors.StateError)
}


def run_in_root(rootdir: Path, func: Callable[[], Any]) -> Any:
    """``func()`` executed chrooted into ``rootdir``; its result must be JSON-serialisable."""
    if str(rootdir) in ("", "/") or Path(rootdir).resolve() == Path("/"):
        raise ConfigError("no root directory")
    if not Path(rootdir).is_dir():
        raise ConfigError(f"container root '{rootdir}' is not a directory")
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, verified through its results
        os.close(read_fd)
        _child(str(rootdir), func, write_fd)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as fh:
            payload = fh.read()
    finally:
        _, status = os.waitpid(pid, 0)
    return _decode(payload, status)


def _child(rootdir: str, func: Callable[[], Any], write_fd: int) -> None:  # pragma: no cover
    code = 1
    try:
        forbid_imports()
        try:
            os.chroot(rootdir)
            os.chdir("/")
            message: dict[str, Any] = {"ok": func()}
        except CtkitError as err:
            message = {"error": type(err).__name__, "message": err.message}
        except OSError as err:
            message = {"error": "OSError", "message": _os_error_text(err)}
        except BaseException as err:  # a bug: say where, without reading source files
            frames = "; ".join(_frames(err)[-3:])
            message = {"error": "bug", "message": f"{type(err).__name__}: {err} ({frames})"}
        data = json.dumps(message).encode("utf-8")
        with os.fdopen(write_fd, "wb") as fh:
            fh.write(data)
        code = 0
    finally:
        os._exit(code)


def forbid_imports() -> None:  # pragma: no cover - forked children only
    """Only built-in and frozen modules stay importable: no file is ever loaded as code."""
    keep = (importlib.machinery.BuiltinImporter, importlib.machinery.FrozenImporter)
    sys.meta_path[:] = [finder for finder in sys.meta_path if finder in keep]
    sys.path[:] = []
    sys.path_importer_cache.clear()


def _frames(err: BaseException) -> list[str]:
    """``file:line function`` of each frame, taken from the code objects (no source lookup)."""
    out: list[str] = []
    tb = err.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        out.append(f"{code.co_filename}:{tb.tb_lineno} {code.co_name}")
        tb = tb.tb_next
    return out


def _os_error_text(err: OSError) -> str:
    name = f" '{err.filename}'" if err.filename else ""
    return f"{err.strerror or err}{name}"


def _decode(payload: bytes, status: int) -> Any:
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0 or not payload:
        raise CtkitError("error in setup task: child process failed")
    message = json.loads(payload.decode("utf-8"))
    if "ok" in message:
        return message["ok"]
    kind, text = message.get("error"), str(message.get("message"))
    cls = _KNOWN_ERRORS.get(str(kind))
    if cls is not None:
        raise cls(text)
    if kind == "OSError":
        raise ConfigError(f"error in setup task: {text}")
    raise CtkitError(f"error in setup task: {text}")
