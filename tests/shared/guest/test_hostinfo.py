from __future__ import annotations

from pathlib import Path

from shared.guest.hostinfo import gather_host_info, read_resolv_conf


def test_read_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "domain old.example\nsearch a.example b.example\nnameserver 192.0.2.1\n"
        "nameserver not-an-ip\nnameserver 2001:db8::1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\n"
    )
    assert read_resolv_conf(conf) == (
        ["192.0.2.1", "2001:db8::1", "192.0.2.2"],
        ["a.example", "b.example"],
    )
    assert read_resolv_conf(tmp_path / "missing") == ([], [])


def test_gather_host_info(tmp_path: Path) -> None:
    zone = tmp_path / "usr/share/zoneinfo/Europe/Vienna"
    zone.parent.mkdir(parents=True)
    zone.write_text("TZif")
    localtime = tmp_path / "localtime"
    localtime.symlink_to(zone)
    info = gather_host_info((["1.1.1.1"], ["x"]), tmp_path / "none", localtime, tmp_path / "none")
    assert (info.nameservers, info.searchdomains) == (["1.1.1.1"], ["x"])
    assert (info.localtime, info.timezone) == (str(zone), "Europe/Vienna")
    empty = gather_host_info(None, tmp_path / "none", tmp_path / "none", tmp_path / "none")
    assert (empty.nameservers, empty.localtime, empty.timezone) == ([], None, None)
