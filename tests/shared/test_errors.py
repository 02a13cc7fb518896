from __future__ import annotations

from shared import errors


def exit_code_table() -> list[tuple[int, str, str]]:
    """(code, class name, meaning) of shared.errors' classes, as the README's table lists them.

    Subclasses elsewhere (e.g. a parser's own error) share their category's code."""
    classes: list[type[errors.CtkitError]] = [errors.CtkitError]
    seen: set[type[errors.CtkitError]] = set()
    while classes:
        cls = classes.pop(0)
        if cls in seen:
            continue
        seen.add(cls)
        classes.extend(cls.__subclasses__())
    rows = [(c.exit_code, c.__name__, c.meaning) for c in seen if c.__module__ == errors.__name__]
    return sorted(rows)


def test_exit_codes_are_unique_and_nonzero() -> None:
    table = exit_code_table()
    codes = [code for code, _name, _meaning in table]
    assert len(codes) == len(set(codes))
    assert all(code != 0 for code in codes)
    names = {name for _code, name, _meaning in table}
    assert {"CtkitError", "ParamError", "NotFoundError", "LockError", "JobError"} <= names


def test_param_error_lines() -> None:
    err = errors.ParamError({"template": "no such template"})
    assert err.lines() == ["", "400 Parameter verification failed.", "template: no such template"]
    assert errors.ParamError(message="not enough arguments").lines() == ["400 not enough arguments"]


def test_message_and_hint() -> None:
    err = errors.NotFoundError("storage 'x1' does not exist", hint="see pvesm status")
    assert str(err) == "storage 'x1' does not exist"
    assert err.hint == "see pvesm status"
    assert err.exit_code == 3
