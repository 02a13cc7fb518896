"""The on-disk to host id map of an id-mapped mount point (as Proxmox resolves ``idmap=``)."""

from __future__ import annotations

from shared.archive.idmap import DEFAULT_UNPRIVILEGED, IdMapEntry
from shared.runtime.idmapmount import disk_to_host, parse_mp_idmap


def test_one_uid_from_the_disk_rest_as_the_container_map() -> None:
    result = disk_to_host(DEFAULT_UNPRIVILEGED, parse_mp_idmap("u:1000:1000:1"))
    assert result == [
        IdMapEntry("u", 100000, 100000, 1000),
        IdMapEntry("u", 1000, 101000, 1),
        IdMapEntry("u", 101001, 101001, 64535),
        IdMapEntry("g", 100000, 100000, 65536),
    ]


def test_ranges_at_the_edges_and_both_kinds() -> None:
    result = disk_to_host(DEFAULT_UNPRIVILEGED, parse_mp_idmap("u:0:5000:10;g:65530:0:6"))
    assert result == [
        IdMapEntry("u", 5000, 100000, 10),
        IdMapEntry("u", 100010, 100010, 65526),
        IdMapEntry("g", 100000, 100000, 65530),
        IdMapEntry("g", 0, 165530, 6),
    ]


def test_exception_outside_the_container_map_is_ignored() -> None:
    ct_map = [IdMapEntry("u", 0, 100000, 100), IdMapEntry("g", 0, 100000, 100)]
    result = disk_to_host(ct_map, parse_mp_idmap("u:500:500:1"))
    assert result == [IdMapEntry("u", 100000, 100000, 100), IdMapEntry("g", 100000, 100000, 100)]
