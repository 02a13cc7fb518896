"""``vzdump storage add|set``: one declaration of the options both take (a real local restic
repository)."""

from __future__ import annotations

import re
from pathlib import Path

from shared.storage.resticplugin import ResticStorage

from .conftest import Cli

PASSWORD = "correct horse battery staple"


def _options(help_text: str) -> list[str]:
    return re.findall(r"^  (--[a-z-]+)", help_text, re.M)


def test_add_and_set_offer_the_same_settings(cli: Cli) -> None:
    add = _options(cli.ok("storage", "add", "--help").out)
    set_ = _options(cli.ok("storage", "set", "--help").out)
    common = ["--repository", "--password-file", "--env-file", "--content", "--prune-backups",
              "--max-protected-backups", "--disable", "--sftp-command"]  # fmt: skip
    assert add == [*common, "--init", "--help"]
    assert set_ == [*common, "--delete", "--help"]


def test_add_then_set_and_delete(cli: Cli, ctroot: Path) -> None:
    pw = ctroot / "pw.txt"
    pw.write_text(PASSWORD + "\n")
    repo = ctroot / "repo"
    cli.ok("storage", "add", "restic", "offsite", "--repository", str(repo),
           "--password-file", str(pw), "--init", "--prune-backups", "keep-last=2")  # fmt: skip
    cfg = ctroot / "etc/pve/storage.cfg"
    cli.ok("storage", "set", "offsite", "--prune-backups", "keep-daily=7", "--disable", "1")
    assert cfg.read_text() == (
        f"restic: offsite\n\trepository {repo}\n\tcontent backup\n"
        "\tprune-backups keep-daily=7\n\tdisable 1\n"
    )
    # a flag, as Proxmox's: alone it is 1 (it asked for a value), and 0 enables again
    cli.ok("storage", "set", "offsite", "--disable", "0")
    assert "\tdisable 0\n" in cfg.read_text()
    cli.ok("storage", "set", "offsite", "--disable")
    assert "\tdisable 1\n" in cfg.read_text()
    cli.ok("storage", "set", "offsite", "--delete", "prune-backups,disable")
    assert cfg.read_text() == f"restic: offsite\n\trepository {repo}\n\tcontent backup\n"
    # a password the repository does not take is refused, and the old one stays
    new_pw = ctroot / "pw2.txt"
    new_pw.write_text("another one\n")
    res = cli.vzdump("storage", "set", "offsite", "--password-file", str(new_pw))
    assert (res.rc, res.err) == (9, "restic storage 'offsite': wrong repository password\n")
    secret = ctroot / "etc/pve/priv/storage/offsite.pw"
    assert secret.read_text() == PASSWORD + "\n"
    new_pw.write_text(PASSWORD + "\r\n")  # the same password, from another file
    cli.ok("storage", "set", "offsite", "--password-file", str(new_pw))
    assert secret.read_bytes() == (PASSWORD + "\r\n").encode()


def test_a_bad_prune_backups_value_is_a_bad_parameter(
    cli: Cli, restic_store: ResticStorage
) -> None:
    """Exit 2 and the '400 Parameter verification failed.' form, as vzdump prune and job add
    say it for the same strings (it was exit 12, a configuration error); nothing is stored."""
    cfg = cli.root / "etc/pve/storage.cfg"
    before = cfg.read_text()
    for value in ("keep-lst=1", "keep-all=1,keep-last=2", "keep-last=-1"):
        res = cli.vzdump("storage", "set", "offsite", "--prune-backups", value)
        prune = cli.vzdump("prune", "offsite", "--prune-backups", value, "--dry-run")
        assert res.rc == 2 and "400 Parameter verification failed." in res.err_lines, res.err
        assert res.err_lines[:-1] == prune.err_lines[:-1]  # the last line is each one's usage
    assert cfg.read_text() == before
