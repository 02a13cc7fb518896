"""Random numbers for the guest setup, injectable so tests can reproduce Proxmox's vectors.

Proxmox's setup tests call Perl's ``srand(0)`` before each run; since Perl 5.20 ``rand()`` is
Perl's own portable ``drand48`` (48-bit linear congruential generator), which :class:`PerlRand`
reproduces exactly, so seeded runs yield the same crontab minutes as upstream (10, 44, 5, 51).
"""

from __future__ import annotations

import random
from collections.abc import Callable

RandomSource = Callable[[], float]

_A = 0x5DEECE66D
_C = 0xB
_MASK = (1 << 48) - 1


class PerlRand:
    """``drand48`` as seeded by Perl's ``srand(seed)``; calling it returns a float in [0, 1)."""

    def __init__(self, seed: int = 0) -> None:
        self.state = ((seed & 0xFFFFFFFF) << 16 | 0x330E) & _MASK

    def __call__(self) -> float:
        self.state = (self.state * _A + _C) & _MASK
        return self.state / float(1 << 48)


def system_random() -> RandomSource:
    """The production source: reads the kernel's entropy, so forked children never repeat."""
    return random.SystemRandom().random
