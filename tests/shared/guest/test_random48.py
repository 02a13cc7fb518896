from __future__ import annotations

import shutil
import subprocess

import pytest

from shared.guest.random48 import PerlRand, system_random


def test_perl_srand_0_sequence_gives_upstream_crontab_minutes() -> None:
    rand = PerlRand(0)
    assert [int(rand() * 59) for _ in range(4)] == [10, 44, 5, 51]


@pytest.mark.parametrize("seed", [0, 1, 42, 4294967295])
def test_matches_perl(seed: int) -> None:
    perl = shutil.which("perl")
    if perl is None:
        pytest.skip("perl not installed")
    script = f"srand({seed}); printf(qq(%.17g\\n), rand()) for 1..5;"
    out = subprocess.run([perl, "-e", script], capture_output=True, text=True, check=True).stdout
    rand = PerlRand(seed)
    assert [float(x) for x in out.split()] == [rand() for _ in range(5)]


def test_system_random_in_range() -> None:
    source = system_random()
    values = [source() for _ in range(100)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert len(set(values)) > 90
