"""Synthetic orthophoto + ISPRS label scenes of any size, written in bounded memory.

Design: a city laid out by hashing, so that any window can be drawn on its own.

* A street grid cuts the plane. Vertical line ``j`` sits near ``j * 60 m`` and horizontal
  line ``i`` near ``i * 60 m``, each moved by up to 10 m, so blocks are 40-80 m. A line's
  position and width, and each stretch of street between two crossings (there or not,
  its parked cars and avenue trees), are drawn from a generator seeded with
  ``[seed, salt, axis, indices]`` (``numpy.random.default_rng`` via :class:`_Stream`).
* The block between four lines is a *cell*. Its plan (kind: houses, halls, park, field,
  wood, car park, waste ground; then ground cover, footprints, crowns, cars, clutter) is
  drawn from ``[seed, salt, i, j]`` and depends on nothing else but the street lines
  around it.
* A window is rendered from the cells and streets whose reach (the cell plus ``_MARGIN``
  for crowns and shadows that spill over) meets it, painted layer by layer in a fixed
  order: ground, ground patches, sidewalks, asphalt, markings, cars, building shadows,
  roofs, tree shadows, crowns. Later layers overwrite earlier ones in the label too;
  shadows only darken the colour. Within a layer the order is fixed by the indices, so
  overlaps resolve the same way in every window.
* Textures and sensor noise are integer hashes of the global pixel indices, never a
  sequential generator, and per-pixel arithmetic is elementwise IEEE (+ - * /, floor) on
  coordinates computed from global indices, so no value depends on where a window
  boundary fell.

Hence every pixel is a pure function of (seed, pixel_size, row, column): the files are
identical whatever the block size. The writer holds one window (a tile, or a few tiles
side by side when tiles are small) plus the plans of a few rows of cells.
"""
from __future__ import annotations

import bisect
import math
import os
from dataclasses import dataclass, replace
from itertools import accumulate
from pathlib import Path
from typing import Callable

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rasterio.windows import Window

from rsinfer.models.config import ISPRS_CLASSES, ISPRS_COLORS

__all__ = ["write_synthetic_scene", "scene_profile"]

# Class ids as the shared legend numbers them.
IMPERVIOUS, BUILDING, LOW_VEG, TREE, CAR, CLUTTER = (
    ISPRS_CLASSES.index(name)
    for name in ("impervious_surfaces", "building", "low_vegetation", "tree", "car", "clutter")
)

_CELL = 60.0  # mean street spacing, metres
_JITTER = 10.0  # street lines move up to this far off the regular grid: blocks of 40-80 m
_MARGIN = 24.0  # farthest a cell's objects reach outside it (crown + shadow < 9 + 12 m)
_MAX_SHADOW = 12.0  # metres; keeps shadows inside the margin
_GDAL_CACHE_MB = 64  # GDAL's block cache would otherwise grow to 5% of RAM
_WINDOW_PX = 512  # windows are at least this wide (whole tiles), so tiny blocks stay fast

# Salts keep the hash streams of different kinds of object apart.
_SALT_LINE, _SALT_SEGMENT, _SALT_CELL, _SALT_SUN, _SALT_NOISE, _SALT_GRAIN, _SALT_MOTTLE = range(7)

Color = tuple[float, float, float]
_U32 = np.uint32


# --------------------------------------------------------------------------- hashing


def _zigzag(k: int) -> int:
    """Map any int onto the non-negative ints SeedSequence accepts (cells at -1 exist)."""
    return 2 * k if k >= 0 else -2 * k - 1


class _Stream:
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


def _hash2(rows: np.ndarray, cols: np.ndarray, salt: int) -> np.ndarray:
    """A well-mixed uint32 per (row, col) pair; rows (h, 1) and cols (1, w) broadcast."""
    h = cols * _U32(0x9E3779B1) + rows * _U32(0x85EBCA77) + _U32(salt & 0xFFFFFFFF)
    h ^= h >> _U32(16)
    h *= _U32(0x7FEB352D)
    h ^= h >> _U32(15)
    h *= _U32(0x846CA68B)
    h ^= h >> _U32(16)
    return h


def _salt(seed: int, kind: int) -> int:
    return int(np.random.SeedSequence([_zigzag(seed), kind]).generate_state(1)[0])


def _frac(a: np.ndarray) -> np.ndarray:
    return a - np.floor(a)


# --------------------------------------------------------------------------- scene objects


@dataclass(frozen=True, slots=True)
class _Box:
    """A rectangle centred on (cx, cy), half sizes hu x hv along its axes u = (c, s), v = (-s, c)."""

    cx: float
    cy: float
    hu: float
    hv: float
    c: float = 1.0
    s: float = 0.0

    def reach(self) -> tuple[float, float]:
        """Half extents of the axis-aligned bounding box."""
        ac, as_ = abs(self.c), abs(self.s)
        return ac * self.hu + as_ * self.hv, as_ * self.hu + ac * self.hv


@dataclass(frozen=True, slots=True)
class _Patch:
    """Ground cover painted over a cell's base ground (paving, soil, containers, piles)."""

    box: _Box
    cls: int
    style: str  # "paved", "lawn", "soil", "container", "pile"
    color: Color


@dataclass(frozen=True, slots=True)
class _Building:
    boxes: tuple[_Box, ...]  # main body, then wings; all share one roof colour
    color: Color
    gable: bool
    height: float
    details: tuple[tuple[_Box, Color], ...] = ()  # roof fixtures on flat roofs


@dataclass(frozen=True, slots=True)
class _Tree:
    discs: tuple[tuple[float, float, float], ...]  # (x, y, r); the first is the crown's core
    color: Color
    height: float
    reach: float  # farthest crown edge from the core's centre


@dataclass(frozen=True, slots=True)
class _Car:
    box: _Box  # u points to the front
    color: Color


@dataclass(frozen=True, slots=True)
class _Line:
    pos: float
    width: float  # kerb to kerb, sidewalks included
    walk: float  # sidewalk width on each side


@dataclass(frozen=True, slots=True)
class _Segment:
    """A stretch of street between two crossings, in world metres (x right, y down)."""

    present: bool
    vertical: bool
    centre: float  # x of a vertical street, y of a horizontal one
    width: float
    walk: float
    lo: float  # extent along the street, crossings included
    hi: float
    open_lo: float  # extent between the crossings (where markings go)
    open_hi: float
    cars: tuple[_Car, ...] = ()
    trees: tuple["_Tree", ...] = ()  # street trees along the sidewalks


@dataclass(frozen=True, slots=True)
class _Cell:
    rect: tuple[float, float, float, float]  # x0, x1, y0, y1
    ground: int
    style: str  # "lawn", "field", "forest", "paved", "soil"
    color: Color
    rows: tuple[float, float, float]  # field rows: unit direction (dx, dy) and period
    patches: tuple[_Patch, ...]
    buildings: tuple[_Building, ...]
    trees: tuple[_Tree, ...]
    cars: tuple[_Car, ...]


# --------------------------------------------------------------------------- palettes

_LAWN = (92.0, 128.0, 58.0)
_FOREST_FLOOR = (70.0, 92.0, 48.0)
_FIELDS = ((112.0, 146.0, 64.0), (150.0, 148.0, 82.0), (132.0, 108.0, 76.0), (96.0, 132.0, 70.0))
_PAVING = (142.0, 138.0, 132.0)
_SOILS = ((168.0, 144.0, 112.0), (150.0, 134.0, 118.0), (176.0, 160.0, 130.0))
_CONTAINERS = ((40.0, 80.0, 150.0), (190.0, 90.0, 40.0), (60.0, 120.0, 70.0), (150.0, 40.0, 40.0))
_ROOFS = ((172.0, 76.0, 58.0), (128.0, 86.0, 62.0), (72.0, 74.0, 82.0), (128.0, 128.0, 134.0), (150.0, 100.0, 80.0))
_ROOF_WEIGHTS = (0.35, 0.15, 0.2, 0.2, 0.1)
_FLAT_ROOFS = ((184.0, 182.0, 176.0), (120.0, 122.0, 126.0), (160.0, 156.0, 148.0))
_TREES = ((46.0, 82.0, 38.0), (56.0, 92.0, 42.0), (36.0, 64.0, 36.0), (74.0, 96.0, 42.0))
_CARS = (
    (226.0, 226.0, 224.0), (30.0, 30.0, 34.0), (170.0, 172.0, 178.0), (104.0, 108.0, 112.0),
    (170.0, 32.0, 30.0), (36.0, 62.0, 140.0), (26.0, 40.0, 80.0), (200.0, 180.0, 40.0),
)
_CAR_WEIGHTS = (0.22, 0.18, 0.2, 0.14, 0.08, 0.09, 0.06, 0.03)
_GLASS = (40.0, 46.0, 56.0)
_ASPHALT = (96.0, 97.0, 100.0)
_SIDEWALK = (168.0, 164.0, 158.0)
_MARKING = (222.0, 222.0, 214.0)


def _choose(r: _Stream, n: int, weights: tuple[float, ...] | None = None) -> int:
    """An index in range(n), optionally weighted: Generator.choice without its overhead."""
    x = r.random()
    if weights is None:
        return min(int(x * n), n - 1)
    return min(bisect.bisect(list(accumulate(weights)), x * sum(weights)), n - 1)


def _sign(r: _Stream) -> float:
    return 1.0 if r.random() < 0.5 else -1.0


def _pick(r: _Stream, colors: tuple[Color, ...], weights=None, jitter: float = 0.06) -> Color:
    """One palette colour, brightness and tint varied a little so objects differ."""
    base = colors[_choose(r, len(colors), weights)]
    k, tint = r.random(), (r.random(), r.random(), r.random())
    k = 1.0 + jitter * (2 * k - 1)
    return tuple(min(255.0, c * k * (1.0 + 0.03 * (2 * t - 1))) for c, t in zip(base, tint))


# --------------------------------------------------------------------------- canvas


class _Canvas:
    """One window of the scene: label and RGB being painted, plus shared texture fields."""

    def __init__(self, row0: int, col0: int, h: int, w: int, pixel_size: float, salts: dict[int, int]) -> None:
        self.row0, self.col0, self.h, self.w, self.ps = row0, col0, h, w, pixel_size
        self.salts = salts
        rows = np.arange(row0, row0 + h, dtype=np.int64)
        cols = np.arange(col0, col0 + w, dtype=np.int64)
        # Pixel-centre coordinates in metres from the scene corner; computed from global indices
        # only, so every window sees bit-identical values for the same pixel.
        self.y = ((rows + 0.5) * pixel_size).astype(np.float32)[:, None]
        self.x = ((cols + 0.5) * pixel_size).astype(np.float32)[None, :]
        self.rows = rows.astype(np.uint32)[:, None]
        self.cols = cols.astype(np.uint32)[None, :]
        self.label = np.empty((h, w), np.uint8)
        self.rgb = np.empty((3, h, w), np.uint8)
        self.shadow = np.zeros((h, w), bool)
        self.mottle = self._value_noise(max(2, round(5.0 / pixel_size)), salts[_SALT_MOTTLE])
        self.grain = self._grain(max(1, round(0.4 / pixel_size)), salts[_SALT_GRAIN])

    def _lattice(self, scale: int, salt: int, extra: int) -> tuple[np.ndarray, int, int]:
        """Hashed values in [0, 1) on the global lattice of every `scale`-th pixel covering the window."""
        gy0, gx0 = self.row0 // scale, self.col0 // scale
        ny = (self.row0 + self.h - 1) // scale - gy0 + 1 + extra
        nx = (self.col0 + self.w - 1) // scale - gx0 + 1 + extra
        ly = np.arange(gy0, gy0 + ny, dtype=np.uint32)[:, None]
        lx = np.arange(gx0, gx0 + nx, dtype=np.uint32)[None, :]
        values = (_hash2(ly, lx, salt) >> _U32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))
        return values, gy0, gx0

    def _grain(self, size: int, salt: int) -> np.ndarray:
        """Blocky noise in [-1, 1): one value per size x size pixels (leaf clumps, gravel)."""
        values, gy0, gx0 = self._lattice(size, salt, 0)
        big = np.repeat(np.repeat(values, size, axis=0), size, axis=1)
        oy, ox = self.row0 - gy0 * size, self.col0 - gx0 * size
        return big[oy:oy + self.h, ox:ox + self.w] * np.float32(2.0) - np.float32(1.0)

    def _value_noise(self, scale: int, salt: int) -> np.ndarray:
        """Smooth noise in [0.8, 1.2]: the hashed lattice every `scale` px, bilinearly blended."""
        lattice, gy0, gx0 = self._lattice(scale, salt, 1)
        lattice = lattice * np.float32(0.4) + np.float32(0.8)
        iy = (self.rows[:, 0] // scale - gy0).astype(np.intp)
        ix = (self.cols[0] // scale - gx0).astype(np.intp)
        fy = ((self.rows[:, 0] % scale).astype(np.float32) + np.float32(0.5)) / np.float32(scale)
        fx = ((self.cols[0] % scale).astype(np.float32) + np.float32(0.5)) / np.float32(scale)
        fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep hides the lattice
        across = lattice[:, ix] * (1 - fx) + lattice[:, ix + 1] * fx  # (ny, w): small
        fy = fy[:, None]
        return across[iy] * (1 - fy) + across[iy + 1] * fy

    def span(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice] | None:
        """Slices of the pixels whose centres lie in [x0, x1) x [y0, y1), or None if none do."""
        ps = self.ps
        c0 = max(self.col0, math.ceil(x0 / ps - 0.5))
        c1 = min(self.col0 + self.w, math.ceil(x1 / ps - 0.5))
        r0 = max(self.row0, math.ceil(y0 / ps - 0.5))
        r1 = min(self.row0 + self.h, math.ceil(y1 / ps - 0.5))
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0 - self.row0, r1 - self.row0), slice(c0 - self.col0, c1 - self.col0)

    def box_uv(self, box: _Box, pad: float = 0.0):
        """(slices, u, v) of the box's bounding box in box coordinates, or None off-window."""
        ex, ey = box.reach()
        sl = self.span(box.cx - ex - pad, box.cx + ex + pad, box.cy - ey - pad, box.cy + ey + pad)
        if sl is None:
            return None
        dx = self.x[:, sl[1]] - np.float32(box.cx)
        dy = self.y[sl[0], :] - np.float32(box.cy)
        return sl, dx * np.float32(box.c) + dy * np.float32(box.s), dy * np.float32(box.c) - dx * np.float32(box.s)

    def fill(self, sl, mask, cls: int, color: Color, shade) -> None:
        """Paint class `cls` and colour * shade where mask (None: the whole slice) holds."""
        ys, xs = sl
        if mask is None:
            self.label[ys, xs] = cls
        else:  # copyto(where=) rather than boolean indexing: several times faster on these masks
            np.copyto(self.label[ys, xs], np.uint8(cls), where=mask)
        # Clamp only when the brightest pixel could pass 255 (rarely: most shades stay near 1).
        clamp = max(color) * (float(shade.max()) if isinstance(shade, np.ndarray) else float(shade)) > 255
        for band, c in zip(self.rgb, color):  # band by band keeps the float temporary small
            value = np.float32(c) * shade
            if clamp:
                value = np.minimum(value, np.float32(255))
            if mask is None:
                band[ys, xs] = value
            else:
                np.copyto(band[ys, xs], value, where=mask, casting="unsafe")

    def apply_shadow(self) -> None:
        """Darken the shadow mask once, so overlapping shadows are no darker than one."""
        # Shadows are dark and a little blue (lit by the sky only).
        for band, dark in zip(self.rgb, (0.39, 0.44, 0.54)):
            np.multiply(band, np.float32(dark), out=band, where=self.shadow, casting="unsafe")

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Add per-pixel sensor noise (luminance and a little chroma); return uint8 (rgb, label)."""
        for r0 in range(0, self.h, 128):  # strips keep the temporaries small
            rows = slice(r0, r0 + 128)
            h = _hash2(self.rows[rows], self.cols, self.salts[_SALT_NOISE])
            # Luminance 0..9 plus chroma 0..3.5 average 6.25: centre them, +0.5 to round on truncation.
            lum = (h & _U32(15)).astype(np.float32)
            lum *= np.float32(0.6)
            lum -= np.float32(5.75)
            for b, band in enumerate(self.rgb[:, rows]):
                value = ((h >> _U32(4 + 3 * b)) & _U32(7)).astype(np.float32)
                value *= np.float32(0.5)
                value += lum
                value += band
                np.clip(value, 0, 255, out=value)
                band[...] = value
        return self.rgb, self.label


# --------------------------------------------------------------------------- layout (pure functions of the seed)


class _City:
    """The hashed city of one seed: street lines, street segments and cell plans.

    Plans are cached, since neighbouring windows share cells; the writer drops the rows of
    cells it has passed (`forget_rows_before`), so the cache spans a few rows of cells.
    """

    def __init__(self, seed: int, pixel_size: float) -> None:
        self.seed, self.ps = seed, pixel_size
        self.salts = {k: _salt(seed, k) for k in (_SALT_MOTTLE, _SALT_GRAIN, _SALT_NOISE)}
        r = _Stream(seed, _SALT_SUN)
        # Sun in the south (northern-hemisphere UTM), so shadows fall roughly north (up, -y).
        azimuth = r.uniform(-0.7, 0.7)
        self.sun_k = r.uniform(0.45, 0.8)  # shadow length per metre of height
        self.sun_dir = (math.sin(azimuth), -math.cos(azimuth))
        self._lines: dict[tuple[int, int], _Line] = {}
        self._segments: dict[tuple[int, int, int], _Segment] = {}
        self._cells: dict[tuple[int, int], _Cell] = {}

    def line(self, axis: int, k: int) -> _Line:
        key = (axis, k)
        if key not in self._lines:
            self._lines[key] = self._make_line(axis, k)
        return self._lines[key]

    def segment(self, axis: int, k: int, m: int) -> _Segment:
        key = (axis, k, m)
        if key not in self._segments:
            self._segments[key] = self._make_segment(axis, k, m)
        return self._segments[key]

    def cell(self, i: int, j: int) -> _Cell:
        key = (i, j)
        if key not in self._cells:
            self._cells[key] = self._make_cell(i, j)
        return self._cells[key]

    def forget_rows_before(self, i: int) -> None:
        """Drop cached plans lying wholly north of horizontal street line `i`."""
        self._cells = {key: c for key, c in self._cells.items() if key[0] >= i}
        # Horizontal segments are keyed by their line, vertical ones by the block row.
        self._segments = {key: s for key, s in self._segments.items() if (key[1] if key[0] else key[2]) >= i}
        self._lines = {key: ln for key, ln in self._lines.items() if key[0] == 0 or key[1] >= i}

    def shadow_offset(self, height: float) -> tuple[float, float]:
        length = min(_MAX_SHADOW, height * self.sun_k)
        return self.sun_dir[0] * length, self.sun_dir[1] * length

    # --- streets

    def _make_line(self, axis: int, k: int) -> _Line:
        r = _Stream(self.seed, _SALT_LINE, axis, k)
        pos = k * _CELL + _JITTER * (2 * r.random() - 1)
        width = r.uniform(6.0, 12.0)
        return _Line(pos, width, walk=r.uniform(0.14, 0.2) * width)

    def _make_segment(self, axis: int, k: int, m: int) -> _Segment:
        """Street `axis` (0: vertical, 1: horizontal) number k, between crossing lines m and m+1."""
        r = _Stream(self.seed, _SALT_SEGMENT, axis, k, m)
        line, a, b = self.line(axis, k), self.line(1 - axis, m), self.line(1 - axis, m + 1)
        seg = _Segment(
            present=r.random() < 0.75, vertical=axis == 0, centre=line.pos, width=line.width, walk=line.walk,
            lo=a.pos - a.width / 2, hi=b.pos + b.width / 2,
            open_lo=a.pos + a.width / 2, open_hi=b.pos - b.width / 2,
        )
        if not seg.present:
            return seg
        return replace(seg, cars=self._street_cars(r, seg), trees=self._street_trees(r, seg))

    def _street_trees(self, r: _Stream, seg: _Segment) -> tuple[_Tree, ...]:
        """An avenue in some streets: crowns every 8-12 m over both sidewalks."""
        if r.random() > 0.3 or seg.open_hi - seg.open_lo < 10:
            return ()
        trees = []
        for side in (-1.0, 1.0):
            across = seg.centre + side * (seg.width / 2 - seg.walk / 2)
            t = seg.open_lo + r.uniform(2.0, 6.0)
            while t < seg.open_hi - 2.0:
                x, y = (across, t) if seg.vertical else (t, across)
                trees.append(_tree(r, x, y, r.uniform(2.0, 3.5)))
                t += r.uniform(8.0, 12.0)
        return tuple(trees)

    def _street_cars(self, r: _Stream, seg: _Segment) -> tuple[_Car, ...]:
        """Cars parked along both kerbs, plus a few driving in the lanes."""
        cars = []
        half = seg.width / 2 - seg.walk  # asphalt half width
        slots = []
        for side in (-1.0, 1.0):
            t = seg.open_lo + r.uniform(1.0, 4.0)
            while t + 3.0 < seg.open_hi:
                if r.random() < 0.2:
                    slots.append((seg.centre + side * (half - 1.2), t + 2.4, r.random() < 0.5))
                t += r.uniform(5.6, 7.0)
        for lane in (-1.0, 1.0):
            if r.random() < 0.35 and seg.open_hi - seg.open_lo > 12:
                slots.append((seg.centre + lane * half * 0.35, r.uniform(seg.open_lo + 3, seg.open_hi - 3), lane > 0))
        for across, along, forward in slots:
            angle = (math.pi / 2 if seg.vertical else 0.0) + (0.0 if forward else math.pi) + r.normal(0, 0.03)
            x, y = (across, along) if seg.vertical else (along, across)
            cars.append(_car(r, x, y, angle))
        return tuple(cars)

    # --- cells

    def _make_cell(self, i: int, j: int) -> _Cell:
        west, east, north, south = self.line(0, j), self.line(0, j + 1), self.line(1, i), self.line(1, i + 1)
        rect = (west.pos, east.pos, north.pos, south.pos)

        def inset(line: _Line, seg: _Segment) -> float:
            return line.width / 2 + 0.5 if seg.present else 1.5

        inner = (
            west.pos + inset(west, self.segment(0, j, i)),
            east.pos - inset(east, self.segment(0, j + 1, i)),
            north.pos + inset(north, self.segment(1, i, j)),
            south.pos - inset(south, self.segment(1, i + 1, j)),
        )
        r = _Stream(self.seed, _SALT_CELL, i, j)
        kind = _choose(r, len(_CELL_KINDS), _CELL_WEIGHTS)
        return _CELL_KINDS[kind][1](r, rect, inner)


# --------------------------------------------------------------------------- object factories


def _car(r: _Stream, x: float, y: float, angle: float) -> _Car:
    box = _Box(x, y, r.uniform(2.0, 2.45), r.uniform(0.85, 0.98), math.cos(angle), math.sin(angle))
    return _Car(box, _pick(r, _CARS, _CAR_WEIGHTS, jitter=0.04))


def _tree(r: _Stream, x: float, y: float, radius: float | None = None) -> _Tree:
    """A crown: a core disc plus a few lobes, so outlines are irregular."""
    rad = radius if radius is not None else r.uniform(2.0, 5.5)
    discs = [(x, y, rad)]
    for _ in range(r.integers(2, 5)):
        a, d = r.uniform(0, 2 * math.pi), r.uniform(0.35, 0.65) * rad
        discs.append((x + d * math.cos(a), y + d * math.sin(a), rad * r.uniform(0.45, 0.75)))
    reach = max(math.hypot(dx - x, dy - y) + dr for dx, dy, dr in discs)
    return _Tree(tuple(discs), _pick(r, _TREES, jitter=0.1), height=r.uniform(5.0, 16.0), reach=reach)


def _place_trees(r, inner, n: int, avoid: tuple[_Building, ...] = (), rmin=2.0, rmax=5.5) -> list[_Tree]:
    """Up to n trees with centres inside `inner`, kept off the buildings' footprints."""
    x0, x1, y0, y1 = inner
    trees = []
    for _ in range(n):
        for _try in range(6):
            rad = r.uniform(rmin, rmax)
            x, y = r.uniform(x0, x1), r.uniform(y0, y1)
            if not any(_near_box(bx, x, y, 0.4 * rad) for b in avoid for bx in b.boxes):
                trees.append(_tree(r, x, y, rad))
                break
    return trees


def _near_box(box: _Box, x: float, y: float, pad: float) -> bool:
    dx, dy = x - box.cx, y - box.cy
    u, v = dx * box.c + dy * box.s, dy * box.c - dx * box.s
    return abs(u) < box.hu + pad and abs(v) < box.hv + pad


def _building(r: _Stream, lot: tuple[float, float, float, float], fill=(0.5, 0.85), big: bool = False) -> _Building:
    """A footprint inside `lot`: a rectangle, rotated in a quarter of cases, or an L."""
    lx0, lx1, ly0, ly1 = lot
    lw, lh = lx1 - lx0, ly1 - ly0
    hu, hv = lw * r.uniform(*fill) / 2, lh * r.uniform(*fill) / 2
    hu, hv = min(hu, 30.0), min(hv, 30.0)
    angle = 0.0 if r.random() < 0.75 else r.uniform(-0.6, 0.6)
    c, s = math.cos(angle), math.sin(angle)
    # Shrink a rotated footprint until its bounding box fits the lot.
    ex, ey = abs(c) * hu + abs(s) * hv, abs(s) * hu + abs(c) * hv
    # (a hair under the exact fit, so rounding cannot put the centre's range below zero)
    k = min(1.0, lw / (2 * ex), lh / (2 * ey)) * (1 - 1e-9)
    hu, hv, ex, ey = hu * k, hv * k, ex * k, ey * k
    cx, cy = r.uniform(lx0 + ex, lx1 - ex), r.uniform(ly0 + ey, ly1 - ey)
    if hv > hu:  # u runs along the long side: that is where a gable ridge goes
        hu, hv, c, s = hv, hu, -s, c
    boxes = [_Box(cx, cy, hu, hv, c, s)]
    if angle == 0.0 and r.random() < 0.3:
        boxes.append(_wing(r, boxes[0], lot))
    area = 4 * hu * hv
    gable = not big and area < 450 and r.random() < 0.7
    color = _pick(r, _ROOFS, _ROOF_WEIGHTS) if gable else _pick(r, _FLAT_ROOFS)
    details = ()
    if not gable:  # roof fixtures: vents, skylights, plant rooms
        fixtures = []
        for _ in range(r.integers(1, 5)):
            fu, fv = r.uniform(0.5, 2.5), r.uniform(0.5, 2.0)
            if fu < hu - 1 and fv < hv - 1:
                du, dv = r.uniform(-(hu - fu - 0.8), hu - fu - 0.8), r.uniform(-(hv - fv - 0.8), hv - fv - 0.8)
                fb = boxes[0]
                fixtures.append((_Box(cx + du * fb.c - dv * fb.s, cy + du * fb.s + dv * fb.c, fu, fv, fb.c, fb.s),
                                 _pick(r, _FLAT_ROOFS, jitter=0.25)))
        details = tuple(fixtures)
    height = r.uniform(10.0, 18.0) if big else r.uniform(5.0, 14.0)
    return _Building(tuple(boxes), color, gable, height, details)


def _wing(r: _Stream, main: _Box, lot) -> _Box:
    """An axis-aligned wing off one end of an axis-aligned `main`, kept in the lot: an L shape."""
    lx0, lx1, ly0, ly1 = lot
    ex, ey = main.reach()
    end, side, depth = _sign(r), _sign(r), r.uniform(4.0, 12.0)
    if ex >= ey:  # long side along x: the wing sticks out north or south
        half = ex * r.uniform(0.2, 0.35)
        edge = main.cy + side * ey
        y0, y1 = sorted((edge - side * 0.5, min(max(edge + side * depth, ly0), ly1)))
        return _Box(main.cx + end * (ex - half), (y0 + y1) / 2, half, (y1 - y0) / 2)
    half = ey * r.uniform(0.2, 0.35)
    edge = main.cx + side * ex
    x0, x1 = sorted((edge - side * 0.5, min(max(edge + side * depth, lx0), lx1)))
    return _Box((x0 + x1) / 2, main.cy + end * (ey - half), (x1 - x0) / 2, half)


def _split(span: tuple[float, float], n: int, r: _Stream) -> list[tuple[float, float]]:
    """Cut an interval into n lots of slightly random sizes."""
    a, b = span
    sizes = [r.uniform(0.8, 1.2) for _ in range(n)]
    edges = [a + (b - a) * e / sum(sizes) for e in accumulate(sizes, initial=0.0)]
    return list(zip(edges[:-1], edges[1:]))


def _clutter_patch(r: _Stream, inner) -> _Patch:
    """Bare soil, a gravel pile or a container: the misc ground ISPRS calls clutter."""
    x0, x1, y0, y1 = inner
    kind = _choose(r, 3, (0.5, 0.25, 0.25))
    if kind == 0:
        hu, hv = r.uniform(2.0, 7.0), r.uniform(2.0, 6.0)
        style, color = "soil", _pick(r, _SOILS)
    elif kind == 1:
        hu, hv = r.uniform(1.5, 4.0), r.uniform(1.5, 3.5)
        style, color = "pile", _pick(r, _SOILS, jitter=0.15)
    else:
        hu, hv = r.uniform(2.5, 6.0), r.uniform(1.2, 1.3)
        style, color = "container", _pick(r, _CONTAINERS, jitter=0.1)
    hu, hv = min(hu, (x1 - x0) / 2.5), min(hv, (y1 - y0) / 2.5)
    cx, cy = r.uniform(x0 + hu, x1 - hu), r.uniform(y0 + hv, y1 - hv)
    return _Patch(_Box(cx, cy, hu, hv), CLUTTER, style, color)


def _extent_box(x0: float, x1: float, y0: float, y1: float) -> _Box:
    """The axis-aligned box covering [x0, x1] x [y0, y1]."""
    return _Box((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2)


def _paving(r: _Stream, box: _Box) -> _Patch:
    return _Patch(box, IMPERVIOUS, "paved", _pick(r, (_PAVING,)))


def _plain(rect, ground: int, style: str, color: Color, rows=(1.0, 0.0, 1.0),
           patches=(), buildings=(), trees=(), cars=()) -> _Cell:
    """A cell plan from lists of its objects."""
    return _Cell(rect, ground, style, color, rows, tuple(patches), tuple(buildings), tuple(trees), tuple(cars))


def _urban_cell(r: _Stream, rect, inner) -> _Cell:
    """Houses on lots, with yards, driveways, garden trees and the odd clutter."""
    x0, x1, y0, y1 = inner
    ground, style, palette = ((LOW_VEG, "lawn", (_LAWN,)), (IMPERVIOUS, "paved", (_PAVING,)),
                              (CLUTTER, "soil", _SOILS))[_choose(r, 3, (0.84, 0.12, 0.04))]
    color = _pick(r, palette, jitter=0.1)
    nx = 1 + int(x1 - x0 > 28) + int(x1 - x0 > 58 and r.random() < 0.5)
    ny = 1 + int(y1 - y0 > 28) + int(y1 - y0 > 58 and r.random() < 0.5)
    patches, buildings, cars = [], [], []
    for lx in _split((x0, x1), nx, r):
        for ly in _split((y0, y1), ny, r):
            lot = (lx[0] + 1.0, lx[1] - 1.0, ly[0] + 1.0, ly[1] - 1.0)
            if r.random() < 0.93:
                buildings.append(_building(r, lot, fill=(0.65, 0.92)))
            if r.random() < 0.45:  # a paved driveway / forecourt with maybe a car on it
                px, py = r.uniform(lot[0] + 3, lot[1] - 3), r.uniform(lot[2] + 3, lot[3] - 3)
                patches.append(_paving(r, _Box(px, py, r.uniform(2.5, 4.5), r.uniform(2.5, 5.0))))
                if r.random() < 0.6:
                    cars.append(_car(r, px, py, math.pi / 2 * r.integers(0, 4) + r.normal(0, 0.05)))
    if r.random() < 0.3:
        patches.append(_clutter_patch(r, inner))
    trees = _place_trees(r, inner, int(r.integers(3, 10)), avoid=tuple(buildings))
    return _plain(rect, ground, style, color, patches=patches, buildings=buildings, trees=trees, cars=cars)


def _industrial_cell(r: _Stream, rect, inner) -> _Cell:
    """One or two large flat-roofed halls on a paved yard with cars and containers."""
    x0, x1, y0, y1 = inner
    n = 1 + int(r.random() < 0.4)
    buildings = [_building(r, (x0 + 2, x1 - 2, ly[0] + 1, ly[1] - 1), fill=(0.6, 0.9), big=True)
                 for ly in _split((y0, y1), n, r)]
    patches = [_clutter_patch(r, inner) for _ in range(r.integers(0, 3))]
    cars = []
    for _ in range(r.integers(2, 8)):
        cx, cy = r.uniform(x0 + 2, x1 - 2), r.uniform(y0 + 2, y1 - 2)
        if not any(_near_box(b, cx, cy, 2.5) for bl in buildings for b in bl.boxes):
            cars.append(_car(r, cx, cy, math.pi / 2 * r.integers(0, 4)))
    trees = _place_trees(r, inner, int(r.integers(0, 3)), avoid=tuple(buildings))
    return _plain(rect, IMPERVIOUS, "paved", _pick(r, (_PAVING,)),
                  patches=patches, buildings=buildings, trees=trees, cars=cars)


def _park_cell(r: _Stream, rect, inner) -> _Cell:
    """Lawn with groups of trees, a footpath and sometimes a sandpit."""
    x0, x1, y0, y1 = inner
    patches = []
    if r.random() < 0.7:  # a footpath across the park, north-south or east-west
        if r.random() < 0.5:
            x = r.uniform(x0 + 5, x1 - 5)
            patches.append(_paving(r, _extent_box(x - 1.2, x + 1.2, rect[2], rect[3])))
        else:
            y = r.uniform(y0 + 5, y1 - 5)
            patches.append(_paving(r, _extent_box(rect[0], rect[1], y - 1.2, y + 1.2)))
    if r.random() < 0.3:
        patches.append(_clutter_patch(r, inner))
    trees = []
    for _ in range(r.integers(3, 6)):  # groves
        gx, gy = r.uniform(x0, x1), r.uniform(y0, y1)
        grove = (max(x0, gx - 9), min(x1, gx + 9), max(y0, gy - 9), min(y1, gy + 9))
        trees += _place_trees(r, grove, int(r.integers(2, 6)))
    return _plain(rect, LOW_VEG, "lawn", _pick(r, (_LAWN,), jitter=0.1), patches=patches, trees=trees)


def _field_cell(r: _Stream, rect, inner) -> _Cell:
    """A crop field with rows, sometimes a hedge of trees along one side."""
    x0, x1, y0, y1 = inner
    a = r.uniform(0, math.pi)
    rows = (math.cos(a), math.sin(a), r.uniform(0.6, 1.6))
    trees = []
    if r.random() < 0.5:
        edge = r.integers(0, 4)
        hedge = [(x0, x0 + 2, y0, y1), (x1 - 2, x1, y0, y1), (x0, x1, y0, y0 + 2), (x0, x1, y1 - 2, y1)][edge]
        trees = _place_trees(r, hedge, int(r.integers(4, 10)), rmin=2.0, rmax=4.0)
    patches = [_clutter_patch(r, inner)] if r.random() < 0.15 else []
    return _plain(rect, LOW_VEG, "field", _pick(r, _FIELDS), rows=rows, patches=patches, trees=trees)


def _forest_cell(r: _Stream, rect, inner) -> _Cell:
    """A wood: crowns close enough to hide most of the floor."""
    trees = _place_trees(r, inner, int(r.integers(30, 50)), rmin=3.0, rmax=6.0)
    return _plain(rect, LOW_VEG, "forest", _pick(r, (_FOREST_FLOOR,)), trees=trees)


def _parking_cell(r: _Stream, rect, inner) -> _Cell:
    """A car park: rows of stalls, most of them taken."""
    x0, x1, y0, y1 = inner
    cars = []
    y = y0 + 3.0
    while y + 2.5 < y1:
        x = x0 + r.uniform(1.5, 2.5)
        while x + 1.3 < x1:
            if r.random() < 0.6:
                cars.append(_car(r, x, y, math.pi / 2 + math.pi * r.integers(0, 2) + r.normal(0, 0.04)))
            x += r.uniform(2.5, 2.9)
        y += 5.5 if r.random() < 0.5 else 8.5  # back-to-back rows, then an aisle
    edge = (x0, x1, y0, y0 + 1.0) if r.random() < 0.5 else (x0, x1, y1 - 1.0, y1)
    trees = _place_trees(r, edge, int(r.integers(0, 6)))
    return _plain(rect, IMPERVIOUS, "paved", _pick(r, (_PAVING,)), cars=cars, trees=trees)


def _bare_cell(r: _Stream, rect, inner) -> _Cell:
    """Waste ground or a building site: bare soil, piles, containers, maybe a shed."""
    x0, x1, y0, y1 = inner
    patches = [_clutter_patch(r, inner) for _ in range(r.integers(2, 6))]
    buildings = [_building(r, (x0 + 5, x0 + 20, y0 + 5, y0 + 20))] if r.random() < 0.4 else []
    trees = _place_trees(r, inner, int(r.integers(0, 4)), avoid=tuple(buildings))
    # Part of the lot is overgrown: rough grass keeps clutter near its ISPRS share.
    gx = r.uniform((x0 + x1) / 2, x1)
    rough = _extent_box(gx, rect[1], rect[2], rect[3])
    patches.insert(0, _Patch(rough, LOW_VEG, "lawn", _pick(r, (_LAWN,), jitter=0.15)))
    return _plain(rect, CLUTTER, "soil", _pick(r, _SOILS), patches=patches, buildings=buildings, trees=trees)


# Cell kinds and how common they are; tuned for ISPRS-like class shares (see tests).
_CELL_KINDS = (
    ("urban", _urban_cell),
    ("industrial", _industrial_cell),
    ("park", _park_cell),
    ("field", _field_cell),
    ("forest", _forest_cell),
    ("parking", _parking_cell),
    ("bare", _bare_cell),
)
_CELL_WEIGHTS = (0.54, 0.09, 0.08, 0.06, 0.09, 0.05, 0.09)


# --------------------------------------------------------------------------- painters


def _paint_ground(cv: _Canvas, cell: _Cell) -> None:
    x0, x1, y0, y1 = cell.rect
    sl = cv.span(x0, x1, y0, y1)
    if sl is not None:
        cv.fill(sl, None, cell.ground, cell.color, _ground_shade(cv, sl, cell.style, cell.rows))


def _ground_shade(cv: _Canvas, sl, style: str, rows=(1.0, 0.0, 1.0)) -> np.ndarray:
    """Brightness texture of a ground cover over the slice `sl`."""
    ys, xs = sl
    m = cv.mottle[ys, xs]
    g = cv.grain[ys, xs]
    if style == "field":
        dx, dy, period = rows
        t = _frac((cv.x[:, xs] * np.float32(dx / period)) + (cv.y[ys, :] * np.float32(dy / period)))
        return m * (np.float32(0.78) + np.float32(0.44) * np.abs(t - np.float32(0.5)))
    if style == "soil":
        return m * m * (np.float32(1.0) + np.float32(0.08) * g)
    if style == "forest":
        return m * (np.float32(0.9) + np.float32(0.15) * g)
    if style == "paved":
        return np.float32(0.9) + np.float32(0.1) * m + np.float32(0.03) * g
    return m * (np.float32(0.97) + np.float32(0.05) * g)  # lawn


def _paint_patch(cv: _Canvas, p: _Patch) -> None:
    got = cv.box_uv(p.box)
    if got is None:
        return
    sl, u, v = got
    box = p.box
    if p.style == "pile":
        q = (u / np.float32(box.hu)) ** 2 + (v / np.float32(box.hv)) ** 2
        mask = q < 1
        shade = (np.float32(1.15) - np.float32(0.35) * q) * (np.float32(1.0) + np.float32(0.15) * cv.grain[sl])
    else:
        mask = (np.abs(u) < box.hu) & (np.abs(v) < box.hv)
        if p.style == "container":  # corrugated roof: ribs across the long side
            shade = np.float32(0.85) + np.float32(0.3) * (_frac(u * np.float32(2.5)) < 0.5)
        else:
            shade = _ground_shade(cv, sl, p.style)
    cv.fill(sl, mask, p.cls, p.color, shade)


def _segment_rect(seg: _Segment, half: float, lo: float, hi: float) -> tuple[float, float, float, float]:
    if seg.vertical:
        return seg.centre - half, seg.centre + half, lo, hi
    return lo, hi, seg.centre - half, seg.centre + half


def _paint_sidewalk(cv: _Canvas, seg: _Segment) -> None:
    sl = cv.span(*_segment_rect(seg, seg.width / 2, seg.lo, seg.hi))
    if sl is None:
        return
    ys, xs = sl
    # Paving slabs: darker joints every 1.5 m.
    joints = (_frac(cv.x[:, xs] * np.float32(1 / 1.5)) < 0.08) | (_frac(cv.y[ys, :] * np.float32(1 / 1.5)) < 0.08)
    shade = (np.float32(1.0) - np.float32(0.12) * joints) * (np.float32(0.94) + np.float32(0.06) * cv.mottle[ys, xs])
    cv.fill(sl, None, IMPERVIOUS, _SIDEWALK, shade)


def _paint_asphalt(cv: _Canvas, seg: _Segment) -> None:
    half = seg.width / 2 - seg.walk
    sl = cv.span(*_segment_rect(seg, half, seg.lo, seg.hi))
    if sl is None:
        return
    ys, xs = sl
    across = (cv.x[:, xs] if seg.vertical else cv.y[ys, :]) - np.float32(seg.centre)
    # Wheel tracks: slightly darker bands at a quarter of each lane from its edges.
    lane = np.abs(across) / np.float32(max(half, 1.0))
    tracks = np.abs(lane - np.float32(0.5)) < np.float32(0.12)
    shade = (np.float32(0.88) + np.float32(0.14) * cv.mottle[ys, xs] + np.float32(0.04) * cv.grain[ys, xs]) \
        * (np.float32(1.0) - np.float32(0.07) * tracks)
    cv.fill(sl, None, IMPERVIOUS, _ASPHALT, shade)


def _paint_marking(cv: _Canvas, seg: _Segment) -> None:
    """A dashed centre line between the crossings (3 m dash, 3 m gap)."""
    if seg.width < 9.0:
        return
    half = max(0.08, 0.6 * cv.ps)
    sl = cv.span(*_segment_rect(seg, half, seg.open_lo + 1.0, seg.open_hi - 1.0))
    if sl is None:
        return
    ys, xs = sl
    along = cv.y[ys, :] if seg.vertical else cv.x[:, xs]
    dash = _frac(along * np.float32(1 / 6.0)) < 0.5
    dash = np.broadcast_to(dash, (ys.stop - ys.start, xs.stop - xs.start))
    cv.fill(sl, dash, IMPERVIOUS, _MARKING, np.float32(1.0))


def _paint_car(cv: _Canvas, car: _Car) -> None:
    got = cv.box_uv(car.box)
    if got is None:
        return
    sl, u, v = got
    b = car.box
    mask = (np.abs(u) < b.hu) & (np.abs(v) < b.hv)
    # Rounded body: darker towards the sides.
    shade = np.float32(1.05) - np.float32(0.25) * (v / np.float32(b.hv)) ** 2
    cv.fill(sl, mask, CAR, car.color, shade)
    t = u / np.float32(b.hu)  # -1 rear .. +1 front
    glass = mask & (((t > 0.12) & (t < 0.45)) | ((t > -0.78) & (t < -0.58))) & (np.abs(v) < b.hv * 0.82)
    cv.fill(sl, glass, CAR, _GLASS, np.float32(1.0))


def _paint_building(cv: _Canvas, bld: _Building) -> None:
    for box in bld.boxes:
        got = cv.box_uv(box)
        if got is None:
            continue
        sl, u, v = got
        au, av = np.abs(u), np.abs(v)
        mask = (au < box.hu) & (av < box.hv)
        if bld.gable:
            # Two roof planes, one facing the sun; tile courses parallel to the ridge.
            plane = np.where(v >= 0, np.float32(1.06), np.float32(0.8))
            tiles = np.float32(1.0) - np.float32(0.1) * (_frac(av * np.float32(1 / 0.4)) < 0.3)
            ridge = np.float32(1.0) + np.float32(0.12) * (av < 0.25)
            shade = plane * tiles * ridge
        else:
            # Flat roof: a lighter parapet and gentle staining.
            edge = (au > box.hu - 0.5) | (av > box.hv - 0.5)
            shade = (np.float32(1.0) + np.float32(0.12) * edge) * (np.float32(0.93) + np.float32(0.07) * cv.mottle[sl])
        cv.fill(sl, mask, BUILDING, bld.color, shade)
    for box, color in bld.details:
        got = cv.box_uv(box)
        if got is not None:
            sl, u, v = got
            cv.fill(sl, (np.abs(u) < box.hu) & (np.abs(v) < box.hv), BUILDING, color, np.float32(1.0))


def _cast_building_shadow(cv: _Canvas, city: _City, bld: _Building) -> None:
    """Mark the ground swept by the footprint moved towards the shadow offset (t in [0, 1])."""
    ox, oy = city.shadow_offset(bld.height)
    for box in bld.boxes:
        ou, ov = ox * box.c + oy * box.s, oy * box.c - ox * box.s
        ex, ey = box.reach()
        sl = cv.span(box.cx - ex + min(ox, 0), box.cx + ex + max(ox, 0),
                     box.cy - ey + min(oy, 0), box.cy + ey + max(oy, 0))
        if sl is None:
            continue
        dx = cv.x[:, sl[1]] - np.float32(box.cx)
        dy = cv.y[sl[0], :] - np.float32(box.cy)
        u = dx * np.float32(box.c) + dy * np.float32(box.s)
        v = dy * np.float32(box.c) - dx * np.float32(box.s)
        lo = np.zeros(np.broadcast_shapes(u.shape, v.shape), np.float32)
        hi = np.ones_like(lo)
        for w, ow, hw in ((u, ou, box.hu), (v, ov, box.hv)):
            if abs(ow) < 1e-6:
                inside = np.abs(w) < hw
                hi = np.where(inside, hi, np.float32(-1.0))
                continue
            a, b = (w - np.float32(hw)) / np.float32(ow), (w + np.float32(hw)) / np.float32(ow)
            lo = np.maximum(lo, np.minimum(a, b))
            hi = np.minimum(hi, np.maximum(a, b))
        cv.shadow[sl] |= lo <= hi


def _disc_d2(cv: _Canvas, sl, x: float, y: float) -> np.ndarray:
    """Squared distance to (x, y) over the slices: two small 1-D terms, one broadcast add."""
    dx = cv.x[:, sl[1]] - np.float32(x)
    dy = cv.y[sl[0], :] - np.float32(y)
    return dx * dx + dy * dy


def _cast_tree_shadow(cv: _Canvas, city: _City, tree: _Tree) -> None:
    """A crown's shadow: a soft-edged blob, so the core disc (slightly shrunk) is enough."""
    ox, oy = city.shadow_offset(tree.height)
    x, y, _ = tree.discs[0]
    x, y, r = x + ox, y + oy, 0.85 * tree.reach
    sl = cv.span(x - r, x + r, y - r, y + r)
    if sl is not None:
        cv.shadow[sl] |= _disc_d2(cv, sl, x, y) < np.float32(r * r)


def _paint_tree(cv: _Canvas, city: _City, tree: _Tree) -> None:
    x, y, _ = tree.discs[0]
    reach = tree.reach
    sl = cv.span(x - reach, x + reach, y - reach, y + reach)
    if sl is None:
        return
    d2 = _disc_d2(cv, sl, x, y)
    mask = d2 < np.float32(tree.discs[0][2] ** 2)
    for lx, ly, lr in tree.discs[1:]:
        mask |= _disc_d2(cv, sl, lx, ly) < np.float32(lr * lr)
    # Dark core, lighter rim and sunlit side, leafy clumps from the grain field.
    sx, sy = city.sun_dir
    k = 0.12 / reach
    lit = (cv.x[:, sl[1]] - np.float32(x)) * np.float32(-sx * k) + np.float32(0.72)
    lit = lit + (cv.y[sl[0], :] - np.float32(y)) * np.float32(-sy * k)
    shade = d2 * np.float32(0.45 / (reach * reach))
    shade += lit
    shade *= cv.grain[sl] * np.float32(0.2) + np.float32(1.0)
    cv.fill(sl, mask, TREE, tree.color, shade)


# --------------------------------------------------------------------------- window renderer


def _line_range(lo: float, hi: float) -> tuple[int, int]:
    """Street line indices [first, last] whose cells or streets can reach [lo, hi) metres.

    Line k lies within _JITTER of k * _CELL, and a cell's objects reach _MARGIN beyond it.
    """
    return math.floor((lo - _MARGIN - _JITTER) / _CELL) - 1, math.ceil((hi + _MARGIN + _JITTER) / _CELL) + 1


def _render_window(city: _City, row0: int, col0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB (3, h, w) and label (h, w) for one window, both uint8."""
    cv = _Canvas(row0, col0, h, w, city.ps, city.salts)
    ps = city.ps
    wx0, wx1, wy0, wy1 = col0 * ps, (col0 + w) * ps, row0 * ps, (row0 + h) * ps
    j0, j1 = _line_range(wx0, wx1)
    i0, i1 = _line_range(wy0, wy1)

    def meets(rect, pad: float) -> bool:
        x0, x1, y0, y1 = rect
        return x0 - pad < wx1 and x1 + pad > wx0 and y0 - pad < wy1 and y1 + pad > wy0

    cells = [city.cell(i, j) for i in range(i0, i1) for j in range(j0, j1)]
    cells = [c for c in cells if meets(c.rect, _MARGIN)]
    segments = [s for s in (
        [city.segment(0, j, i) for j in range(j0, j1 + 1) for i in range(i0, i1)]
        + [city.segment(1, i, j) for i in range(i0, i1 + 1) for j in range(j0, j1)]
    ) if s.present and meets(_segment_rect(s, s.width / 2, s.lo, s.hi), _MARGIN)]

    for cell in cells:
        _paint_ground(cv, cell)
    for cell in cells:
        for patch in cell.patches:
            _paint_patch(cv, patch)
    for painter in (_paint_sidewalk, _paint_asphalt, _paint_marking):
        for seg in segments:
            painter(cv, seg)
    for car in [c for seg in segments for c in seg.cars] + [c for cell in cells for c in cell.cars]:
        _paint_car(cv, car)
    for cell in cells:
        for bld in cell.buildings:
            _cast_building_shadow(cv, city, bld)
    for cell in cells:
        for bld in cell.buildings:
            _paint_building(cv, bld)
    cv.shadow &= cv.label != BUILDING  # building shadows fall on the ground, not on roofs
    trees = [t for seg in segments for t in seg.trees] + [t for cell in cells for t in cell.trees]
    for tree in trees:
        _cast_tree_shadow(cv, city, tree)
    cv.apply_shadow()  # before the crowns, which stand above every shadow
    for tree in trees:
        _paint_tree(cv, city, tree)
    return cv.finish()


# --------------------------------------------------------------------------- writer


def scene_profile(
    width: int,
    height: int,
    *,
    pixel_size: float = 0.2,
    origin: tuple[float, float] = (500000.0, 5400000.0),
    epsg: int = 32632,
    block: int = 512,
    compress: str | None = "deflate",
) -> dict:
    """The rasterio profile both files share (one uint8 band; callers set count and photometric).

    `origin` is the (easting, northing) of the scene's upper-left corner; rows run south.
    """
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint8",
        "crs": CRS.from_epsg(epsg),
        "transform": from_origin(origin[0], origin[1], pixel_size, pixel_size),
        "nodata": None,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "BIGTIFF": "IF_SAFER",
    }
    if compress and compress.lower() != "none":
        profile["compress"] = compress
    return profile


def _temp_path(path: Path) -> Path:
    """A sibling name, so the final rename stays on one filesystem (and is atomic)."""
    return path.with_name(f"{path.stem}.tmp-{os.getpid()}{path.suffix or '.tif'}")


def _check_args(width: int, height: int, pixel_size: float, block: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"scene size must be positive, got {width}x{height}")
    if not pixel_size > 0:
        raise ValueError(f"pixel_size must be positive, got {pixel_size}")
    if block < 16 or block % 16:
        raise ValueError(f"block must be a positive multiple of 16 (a GeoTIFF tile side), got {block}")


def write_synthetic_scene(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike,
    width: int,
    height: int,
    *,
    seed: int = 0,
    pixel_size: float = 0.2,
    origin: tuple[float, float] = (500000.0, 5400000.0),
    epsg: int = 32632,
    block: int = 512,
    compress: str | None = "deflate",
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write a synthetic RGB orthophoto and its ISPRS label raster, window by window.

    Pixels depend only on (seed, pixel_size, row, column), not on `block`. Both files are
    written under temporary sibling names and renamed into place once complete; on any
    error the temporary files are removed. `progress(done_rows, total_rows)` is called
    after each row of blocks.
    """
    _check_args(width, height, pixel_size, block)
    image_path, label_path = Path(image_path), Path(label_path)
    if image_path.resolve() == label_path.resolve():
        raise ValueError("image_path and label_path must differ")
    base = scene_profile(width, height, pixel_size=pixel_size, origin=origin, epsg=epsg, block=block, compress=compress)
    image_profile = {**base, "count": 3, "photometric": "RGB"}
    if str(compress).lower() in ("deflate", "lzw"):
        # Horizontal differencing makes the textured RGB smaller and, with deflate's fastest
        # level, compresses it in about half the time of the defaults (sensor noise leaves
        # little for higher levels to find).
        image_profile["predictor"] = 2
        if str(compress).lower() == "deflate":
            image_profile["zlevel"] = 1
    city = _City(int(seed), float(pixel_size))
    # Windows are whole tiles side by side: at least _WINDOW_PX wide so small blocks
    # do not multiply the per-window overhead, and never more than that, so memory stays flat.
    step = block * max(1, _WINDOW_PX // block)
    tmp_image, tmp_label = _temp_path(image_path), _temp_path(label_path)
    try:
        with rasterio.Env(GDAL_CACHEMAX=_GDAL_CACHE_MB), \
                rasterio.open(tmp_image, "w", **image_profile) as img, \
                rasterio.open(tmp_label, "w", **base) as lab:
            img.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
            img.descriptions = ("red", "green", "blue")
            lab.write_colormap(1, {k: (*rgb, 255) for k, rgb in enumerate(ISPRS_COLORS)})
            lab.descriptions = ("class",)
            lab.update_tags(1, classes=",".join(ISPRS_CLASSES))
            for row0 in range(0, height, block):
                h = min(block, height - row0)
                city.forget_rows_before(_line_range(row0 * pixel_size, 0.0)[0])
                for col0 in range(0, width, step):
                    w = min(step, width - col0)
                    rgb, label = _render_window(city, row0, col0, h, w)
                    window = Window(col0, row0, w, h)
                    img.write(rgb, window=window)
                    lab.write(label, 1, window=window)
                if progress is not None:
                    progress(row0 + h, height)
        os.replace(tmp_image, image_path)
        os.replace(tmp_label, label_path)
    except BaseException:
        for tmp in (tmp_image, tmp_label):
            tmp.unlink(missing_ok=True)
        raise
