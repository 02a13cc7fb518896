"""systemd units for the scheduler and pveam update: golden texts, atomic install below the root,
no systemctl without systemd as PID 1, removal, and `systemd-analyze verify` when available."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shared import paths, systemd
from shared.errors import CommandError, CtkitError, ParamError

GOLDEN = Path(__file__).parent / "golden" / "systemd"
SCHEDULER = ["ctkit-scheduler.service", "ctkit-scheduler.timer"]
PVEAM = ["pveam-update.service", "pveam-update.timer"]


def exec_for(name: str) -> str:
    if name == systemd.GUESTS_UNIT:
        return "/usr/bin/pct"
    return "/usr/bin/pveam" if name.startswith("pveam") else "/usr/bin/vzdump"


@pytest.mark.parametrize("name", sorted(systemd.UNITS))
def test_unit_texts_match_golden(name: str) -> None:
    text = systemd.render_unit(name, exec_path=exec_for(name))
    assert text == (GOLDEN / name).read_text()


def test_install_writes_below_the_root_and_explains_enabling(ctroot: Path) -> None:
    messages: list[str] = []
    written = systemd.install_units(SCHEDULER, exec_path="/usr/bin/vzdump", log=messages.append)
    unit_dir = ctroot / "etc/systemd/system"
    assert written == [unit_dir / n for n in SCHEDULER]
    for path in written:
        assert path.read_text() == with_root(ctroot, (GOLDEN / path.name).read_text())
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not list(unit_dir.glob(".*"))  # atomic writes leave no temp files
    assert not systemd.can_manage()  # a scratch root is never the live system
    assert messages[0].startswith(f"unit files written to {unit_dir}; not enabling them: ")
    assert messages[1] == (
        "to enable them: systemctl daemon-reload && systemctl enable --now ctkit-scheduler.timer"
    )
    # writing again replaces the files; enable=False logs nothing
    messages.clear()
    systemd.install_units(
        SCHEDULER, exec_path="/opt/ctkit/bin/vzdump", enable=False, log=messages.append
    )
    assert "ExecStart=/opt/ctkit/bin/vzdump scheduler run-due" in written[0].read_text()
    assert messages == []


def with_root(root: Path, golden: str) -> str:
    """The golden text as written below a scratch root: services carry CTKIT_ROOT."""
    line = f'Environment="CTKIT_ROOT={root}"\n'
    return golden.replace("[Service]\n", "[Service]\n" + line, 1)


def test_services_carry_a_scratch_root_timers_do_not(ctroot: Path) -> None:
    service = systemd.with_root_environment(systemd.render_unit(SCHEDULER[0], exec_path="/x/vz"))
    assert f'\n[Service]\nEnvironment="CTKIT_ROOT={ctroot}"\nType=oneshot\n' in service
    timer = systemd.render_unit(SCHEDULER[1])
    assert systemd.with_root_environment(timer) == timer


def test_the_live_root_adds_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTKIT_ROOT", "/")
    text = systemd.render_unit(SCHEDULER[0], exec_path="/usr/bin/vzdump")
    assert systemd.with_root_environment(text) == text


def test_units_from_a_development_checkout_are_flagged(ctroot: Path) -> None:
    # this suite runs from an editable install: units pointing into it would break when the
    # checkout moves, and the install says so
    checkout = systemd.development_checkout()
    assert checkout is not None and Path(checkout, "pyproject.toml").is_file()
    messages: list[str] = []
    program = systemd.find_program("vzdump")
    systemd.install_units(SCHEDULER, exec_path=program, enable=False, log=messages.append)
    assert messages == [
        f"warning: the units run {program} from the development checkout {checkout}; "
        "for real use run 'make install' there and install the units again"
    ]
    messages.clear()
    systemd.install_units(SCHEDULER, exec_path="/usr/bin/vzdump", enable=False, log=messages.append)
    assert messages == []


def test_remove_units(ctroot: Path) -> None:
    systemd.install_units(PVEAM, exec_path="/usr/bin/pveam", log=lambda _: None)
    messages: list[str] = []
    removed = systemd.remove_units([*PVEAM, "ctkit-scheduler.timer"], log=messages.append)
    assert removed == [paths.under("etc/systemd/system") / n for n in PVEAM]
    assert not any(paths.under("etc/systemd/system").iterdir())
    assert messages and "daemon-reload" in messages[0]
    assert systemd.remove_units(PVEAM) == []  # already gone: not an error


def test_bad_arguments() -> None:
    with pytest.raises(ParamError):
        systemd.render_unit("other.service", exec_path="/bin/true")
    with pytest.raises(ParamError):
        systemd.render_unit("ctkit-scheduler.service")  # a service needs the program
    with pytest.raises(ParamError):
        systemd.render_unit("ctkit-scheduler.service", exec_path="bin/vzdump")
    with pytest.raises(ParamError):
        systemd.remove_units(["sshd.service"])
    assert (
        systemd.render_unit("ctkit-scheduler.timer")
        == (GOLDEN / "ctkit-scheduler.timer").read_text()
    )


def test_exec_path_quoting() -> None:
    assert systemd.quote_exec("/usr/bin/vzdump") == "/usr/bin/vzdump"
    assert systemd.quote_exec("/opt/my tools/vzdump") == '"/opt/my tools/vzdump"'
    # a $ is no variable in a program's path (doubled, it named another path)
    assert systemd.quote_exec("/opt/100%/$HOME/vzdump") == "/opt/100%%/$HOME/vzdump"
    with pytest.raises(ParamError):
        systemd.quote_exec('/opt/"x"/vzdump')


def test_find_program() -> None:
    found = systemd.find_program(Path(sys.executable).name)
    assert Path(found).is_absolute() and Path(found).parent == Path(sys.executable).parent
    with pytest.raises(CommandError, match="unable to find command"):
        systemd.find_program("ctkit-no-such-program")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze_verify(ctroot: Path, tmp_path: Path) -> None:
    # verify checks that ExecStart= is executable: point it at real scripts
    programs = {}
    for name in ("vzdump", "pveam"):
        program = tmp_path / "my $bin 100%" / name
        program.parent.mkdir(exist_ok=True)
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o755)
        programs[name] = str(program)
    written = systemd.install_units(SCHEDULER, exec_path=programs["vzdump"], log=lambda _: None)
    written += systemd.install_units(PVEAM, exec_path=programs["pveam"], log=lambda _: None)
    proc = subprocess.run(
        ["systemd-analyze", "verify", *map(str, written)], capture_output=True, text=True
    )
    ours = [line for line in proc.stderr.splitlines() if any(n in line for n in systemd.UNITS)]
    assert proc.returncode == 0 and ours == [], proc.stderr
    # and it does notice a broken unit (the check can fail)
    broken = written[1].with_name("ctkit-scheduler.service")
    text = broken.read_text()
    assert systemd.quote_exec(programs["vzdump"]) in text
    broken.write_text(text.replace(systemd.quote_exec(programs["vzdump"]), str(tmp_path / "gone")))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(broken)], capture_output=True, text=True
    )
    assert proc.returncode != 0


def test_a_root_with_a_dollar_is_the_units_root(
    ctroot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Environment= takes a ``$`` as it is: doubled, the service acted on another root."""
    root = ctroot / "r o%o$t"
    root.mkdir()
    monkeypatch.setenv("CTKIT_ROOT", str(root))
    text = systemd.with_root_environment("[Unit]\n[Service]\nType=oneshot\n")
    assert f'Environment="CTKIT_ROOT={ctroot}/r o%%o$t"' in text.splitlines()


def test_a_unit_that_cannot_be_removed_fails_in_one_line(ctroot: Path) -> None:
    """A directory in a unit's place: a traceback of IsADirectoryError."""
    systemd.install_units(SCHEDULER, exec_path="/usr/bin/true", log=lambda _: None)
    service = systemd.unit_dir() / "ctkit-scheduler.service"
    service.unlink()
    service.mkdir()
    with pytest.raises(
        CtkitError, match=r"^unable to remove '.*ctkit-scheduler.service' - Is a directory$"
    ):
        systemd.remove_units(SCHEDULER, log=lambda _: None)
    assert not (systemd.unit_dir() / "ctkit-scheduler.timer").exists()  # the rest went
