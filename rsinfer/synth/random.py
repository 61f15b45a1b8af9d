"""Deterministic randomness for the synthetic scene: seeded scalar streams and integer hashes.

Two kinds, both fixed by their keys alone, never by what was drawn before: a :class:`Stream`
of scalar draws for an object's plan (seeded by ``[seed, salt, indices]``), and
:func:`hash2`, a uint32 per global pixel for textures and noise.
"""

from __future__ import annotations

import bisect
import math
from itertools import accumulate

import numpy as np

__all__ = [
    "SALT_CELL",
    "SALT_GRAIN",
    "SALT_LINE",
    "SALT_MOTTLE",
    "SALT_NOISE",
    "SALT_SEGMENT",
    "SALT_SUN",
    "Stream",
    "choose",
    "hash2",
    "salt_for",
    "sign",
]

# Salts keep the hash streams of different kinds of object apart.
SALT_LINE, SALT_SEGMENT, SALT_CELL, SALT_SUN, SALT_NOISE, SALT_GRAIN, SALT_MOTTLE = range(7)

_U32 = np.uint32


def _zigzag(k: int) -> int:
    """Map any int onto the non-negative ints SeedSequence accepts (cells at -1 exist)."""
    return 2 * k if k >= 0 else -2 * k - 1


class Stream:
    """Scalar random draws for one object's plan, seeded by hashing `keys`.

    Plans take many scalar draws, and numpy's per-call overhead (microseconds) would
    dominate them, so uniforms are fetched from the Generator in batches and the
    distributions below are plain Python on top. The sequence is fixed by the keys.
    """

    __slots__ = ("_gen", "_buf", "_i")

    def __init__(self, *keys: int) -> None:
        self._gen = np.random.default_rng([_zigzag(int(k)) for k in keys])
        self._buf: list[float] = []
        self._i = 0

    def random(self) -> float:
        if self._i == len(self._buf):
            self._buf, self._i = self._gen.random(64).tolist(), 0
        self._i += 1
        return self._buf[self._i - 1]

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.random()

    def integers(self, lo: int, hi: int) -> int:
        """An int in [lo, hi)."""
        return lo + min(int(self.random() * (hi - lo)), hi - lo - 1)

    def normal(self, mu: float, sigma: float) -> float:
        """Box-Muller; 1 - u keeps the logarithm finite."""
        u, v = 1.0 - self.random(), self.random()
        return mu + sigma * math.sqrt(-2.0 * math.log(u)) * math.cos(2.0 * math.pi * v)


def hash2(rows: np.ndarray, cols: np.ndarray, salt: int) -> np.ndarray:
    """A well-mixed uint32 per (row, col) pair; rows (h, 1) and cols (1, w) broadcast."""
    h = cols * _U32(0x9E3779B1) + rows * _U32(0x85EBCA77) + _U32(salt & 0xFFFFFFFF)
    h ^= h >> _U32(16)
    h *= _U32(0x7FEB352D)
    h ^= h >> _U32(15)
    h *= _U32(0x846CA68B)
    h ^= h >> _U32(16)
    return h


def salt_for(seed: int, kind: int) -> int:
    """The salt of one hashed texture field (`kind`: SALT_NOISE, ...) for `seed`."""
    return int(np.random.SeedSequence([_zigzag(seed), kind]).generate_state(1)[0])


def choose(r: Stream, n: int, weights: tuple[float, ...] | None = None) -> int:
    """An index in range(n), optionally weighted: Generator.choice without its overhead."""
    x = r.random()
    if weights is None:
        return min(int(x * n), n - 1)
    return min(bisect.bisect(list(accumulate(weights)), x * sum(weights)), n - 1)


def sign(r: Stream) -> float:
    return 1.0 if r.random() < 0.5 else -1.0
