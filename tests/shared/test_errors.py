from __future__ import annotations

from shared import errors


def test_exit_codes_are_unique_and_nonzero() -> None:
    table = errors.exit_code_table()
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
