"""``vzdump <vmid...> [options]`` on the command line: argument errors, before any backup."""

from __future__ import annotations

from .conftest import Cli


def test_an_unknown_option_takes_no_option_as_its_value(cli: Cli, vmid: int) -> None:
    """As Proxmox's option parser: the unknown option is named and the next one stays an
    option (not "too many arguments")."""
    res = cli.vzdump(str(vmid), "--bogus", "--mode", "stop")
    assert res.rc == 2, res.err
    assert "bogus: property is not defined in schema" in res.err
    assert "too many" not in res.err
