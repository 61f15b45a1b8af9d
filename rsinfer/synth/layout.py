"""The city of one seed as data: street lines, the street segments between crossings, and
the plans of the cells (blocks) between them.

Vertical street line ``j`` sits near ``j * CELL`` and horizontal line ``i`` near
``i * CELL``, each moved by up to ``JITTER``, so blocks are 40-80 m. A line's position and
width, and each stretch of street between two crossings (there or not, its parked cars and
avenue trees), are drawn from a :class:`Stream` seeded with ``[seed, salt, axis, indices]``;
a cell's plan from ``[seed, salt, i, j]``, depending on nothing but the street lines around
it. So any part of the city can be built on its own, in any order.
"""

from __future__ import annotations

import math
from dataclasses import replace

from .cells import plan_cell
from .objects import Car, Cell, Line, Segment, Tree, make_car, make_tree
from .random import SALT_CELL, SALT_GRAIN, SALT_LINE, SALT_MOTTLE, SALT_NOISE, SALT_SEGMENT, SALT_SUN, Stream, salt_for

__all__ = ["CELL", "JITTER", "MARGIN", "MAX_SHADOW", "City", "line_range"]

CELL = 60.0  # mean street spacing, metres
JITTER = 10.0  # street lines move up to this far off the regular grid: blocks of 40-80 m
MARGIN = 24.0  # farthest a cell's objects reach outside it (crown + shadow < 9 + 12 m)
MAX_SHADOW = 12.0  # metres; keeps shadows inside the margin


def line_range(lo: float, hi: float) -> tuple[int, int]:
    """Street line indices [first, last] whose cells or streets can reach [lo, hi) metres.

    Line k lies within JITTER of k * CELL, and a cell's objects reach MARGIN beyond it.
    """
    return math.floor((lo - MARGIN - JITTER) / CELL) - 1, math.ceil((hi + MARGIN + JITTER) / CELL) + 1


class City:
    """The hashed city of one seed: street lines, street segments and cell plans.

    Plans are cached, since neighbouring windows share cells; the writer drops the rows of
    cells it has passed (`forget_rows_before`), so the cache spans a few rows of cells.
    """

    def __init__(self, seed: int, pixel_size: float) -> None:
        self.seed, self.ps = seed, pixel_size
        self.salts = {k: salt_for(seed, k) for k in (SALT_MOTTLE, SALT_GRAIN, SALT_NOISE)}
        r = Stream(seed, SALT_SUN)
        # Sun in the south (northern-hemisphere UTM), so shadows fall roughly north (up, -y).
        azimuth = r.uniform(-0.7, 0.7)
        self.sun_k = r.uniform(0.45, 0.8)  # shadow length per metre of height
        self.sun_dir = (math.sin(azimuth), -math.cos(azimuth))
        self._lines: dict[tuple[int, int], Line] = {}
        self._segments: dict[tuple[int, int, int], Segment] = {}
        self._cells: dict[tuple[int, int], Cell] = {}

    def line(self, axis: int, k: int) -> Line:
        key = (axis, k)
        if key not in self._lines:
            self._lines[key] = self._make_line(axis, k)
        return self._lines[key]

    def segment(self, axis: int, k: int, m: int) -> Segment:
        key = (axis, k, m)
        if key not in self._segments:
            self._segments[key] = self._make_segment(axis, k, m)
        return self._segments[key]

    def cell(self, i: int, j: int) -> Cell:
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
        length = min(MAX_SHADOW, height * self.sun_k)
        return self.sun_dir[0] * length, self.sun_dir[1] * length

    # --- streets

    def _make_line(self, axis: int, k: int) -> Line:
        r = Stream(self.seed, SALT_LINE, axis, k)
        pos = k * CELL + JITTER * (2 * r.random() - 1)
        width = r.uniform(6.0, 12.0)
        return Line(pos, width, walk=r.uniform(0.14, 0.2) * width)

    def _make_segment(self, axis: int, k: int, m: int) -> Segment:
        """Street `axis` (0: vertical, 1: horizontal) number k, between crossing lines m and m+1."""
        r = Stream(self.seed, SALT_SEGMENT, axis, k, m)
        line, a, b = self.line(axis, k), self.line(1 - axis, m), self.line(1 - axis, m + 1)
        seg = Segment(
            present=r.random() < 0.75,
            vertical=axis == 0,
            centre=line.pos,
            width=line.width,
            walk=line.walk,
            lo=a.pos - a.width / 2,
            hi=b.pos + b.width / 2,
            open_lo=a.pos + a.width / 2,
            open_hi=b.pos - b.width / 2,
        )
        if not seg.present:
            return seg
        return replace(seg, cars=self._street_cars(r, seg), trees=self._street_trees(r, seg))

    def _street_trees(self, r: Stream, seg: Segment) -> tuple[Tree, ...]:
        """An avenue in some streets: crowns every 8-12 m over both sidewalks."""
        if r.random() > 0.3 or seg.open_hi - seg.open_lo < 10:
            return ()
        trees = []
        for side in (-1.0, 1.0):
            across = seg.centre + side * (seg.width / 2 - seg.walk / 2)
            t = seg.open_lo + r.uniform(2.0, 6.0)
            while t < seg.open_hi - 2.0:
                x, y = (across, t) if seg.vertical else (t, across)
                trees.append(make_tree(r, x, y, r.uniform(2.0, 3.5)))
                t += r.uniform(8.0, 12.0)
        return tuple(trees)

    def _street_cars(self, r: Stream, seg: Segment) -> tuple[Car, ...]:
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
            cars.append(make_car(r, x, y, angle))
        return tuple(cars)

    # --- cells

    def _make_cell(self, i: int, j: int) -> Cell:
        west, east, north, south = self.line(0, j), self.line(0, j + 1), self.line(1, i), self.line(1, i + 1)
        rect = (west.pos, east.pos, north.pos, south.pos)

        def inset(line: Line, seg: Segment) -> float:
            return line.width / 2 + 0.5 if seg.present else 1.5

        inner = (
            west.pos + inset(west, self.segment(0, j, i)),
            east.pos - inset(east, self.segment(0, j + 1, i)),
            north.pos + inset(north, self.segment(1, i, j)),
            south.pos - inset(south, self.segment(1, i + 1, j)),
        )
        r = Stream(self.seed, SALT_CELL, i, j)
        return plan_cell(r, rect, inner)
