"""What a block between four streets holds: one cell kind (houses, halls, park, field, wood,
car park, waste ground), drawn from the cell's stream, and the objects that kind places.

Every function takes the cell's `rect` (x0, x1, y0, y1 between the street centre lines) and
`inner` (the same, inset from the kerbs), and draws from `r` in a fixed order.
"""

from __future__ import annotations

import math
from itertools import accumulate, pairwise

from .objects import (
    Box,
    Cell,
    Patch,
    clutter_patch,
    extent_box,
    make_building,
    make_car,
    near_box,
    paving,
    place_trees,
)
from .palette import (
    CLUTTER,
    FIELDS,
    FOREST_FLOOR,
    IMPERVIOUS,
    LAWN,
    LOW_VEG,
    PAVING,
    SOILS,
    Color,
    pick,
)
from .random import Stream, choose

__all__ = ["plan_cell"]


def _split(span: tuple[float, float], n: int, r: Stream) -> list[tuple[float, float]]:
    """Cut an interval into n lots of slightly random sizes."""
    a, b = span
    sizes = [r.uniform(0.8, 1.2) for _ in range(n)]
    edges = [a + (b - a) * e / sum(sizes) for e in accumulate(sizes, initial=0.0)]
    return list(pairwise(edges))


def _plain(
    rect, ground: int, style: str, color: Color, rows=(1.0, 0.0, 1.0), patches=(), buildings=(), trees=(), cars=()
) -> Cell:
    """A cell plan from lists of its objects."""
    return Cell(rect, ground, style, color, rows, tuple(patches), tuple(buildings), tuple(trees), tuple(cars))


def _urban_cell(r: Stream, rect, inner) -> Cell:
    """Houses on lots, with yards, driveways, garden trees and the odd clutter."""
    x0, x1, y0, y1 = inner
    ground, style, palette = ((LOW_VEG, "lawn", (LAWN,)), (IMPERVIOUS, "paved", (PAVING,)), (CLUTTER, "soil", SOILS))[
        choose(r, 3, (0.84, 0.12, 0.04))
    ]
    color = pick(r, palette, jitter=0.1)
    nx = 1 + int(x1 - x0 > 28) + int(x1 - x0 > 58 and r.random() < 0.5)
    ny = 1 + int(y1 - y0 > 28) + int(y1 - y0 > 58 and r.random() < 0.5)
    patches, buildings, cars = [], [], []
    for lx in _split((x0, x1), nx, r):
        for ly in _split((y0, y1), ny, r):
            lot = (lx[0] + 1.0, lx[1] - 1.0, ly[0] + 1.0, ly[1] - 1.0)
            if r.random() < 0.93:
                buildings.append(make_building(r, lot, fill=(0.65, 0.92)))
            if r.random() < 0.45:  # a paved driveway / forecourt with maybe a car on it
                px, py = r.uniform(lot[0] + 3, lot[1] - 3), r.uniform(lot[2] + 3, lot[3] - 3)
                patches.append(paving(r, Box(px, py, r.uniform(2.5, 4.5), r.uniform(2.5, 5.0))))
                if r.random() < 0.6:
                    cars.append(make_car(r, px, py, math.pi / 2 * r.integers(0, 4) + r.normal(0, 0.05)))
    if r.random() < 0.3:
        patches.append(clutter_patch(r, inner))
    trees = place_trees(r, inner, int(r.integers(3, 10)), avoid=tuple(buildings))
    return _plain(rect, ground, style, color, patches=patches, buildings=buildings, trees=trees, cars=cars)


def _industrial_cell(r: Stream, rect, inner) -> Cell:
    """One or two large flat-roofed halls on a paved yard with cars and containers."""
    x0, x1, y0, y1 = inner
    n = 1 + int(r.random() < 0.4)
    buildings = [
        make_building(r, (x0 + 2, x1 - 2, ly[0] + 1, ly[1] - 1), fill=(0.6, 0.9), big=True)
        for ly in _split((y0, y1), n, r)
    ]
    patches = [clutter_patch(r, inner) for _ in range(r.integers(0, 3))]
    cars = []
    for _ in range(r.integers(2, 8)):
        cx, cy = r.uniform(x0 + 2, x1 - 2), r.uniform(y0 + 2, y1 - 2)
        if not any(near_box(b, cx, cy, 2.5) for bl in buildings for b in bl.boxes):
            cars.append(make_car(r, cx, cy, math.pi / 2 * r.integers(0, 4)))
    trees = place_trees(r, inner, int(r.integers(0, 3)), avoid=tuple(buildings))
    return _plain(
        rect, IMPERVIOUS, "paved", pick(r, (PAVING,)), patches=patches, buildings=buildings, trees=trees, cars=cars
    )


def _park_cell(r: Stream, rect, inner) -> Cell:
    """Lawn with groups of trees, a footpath and sometimes a sandpit."""
    x0, x1, y0, y1 = inner
    patches = []
    if r.random() < 0.7:  # a footpath across the park, north-south or east-west
        if r.random() < 0.5:
            x = r.uniform(x0 + 5, x1 - 5)
            patches.append(paving(r, extent_box(x - 1.2, x + 1.2, rect[2], rect[3])))
        else:
            y = r.uniform(y0 + 5, y1 - 5)
            patches.append(paving(r, extent_box(rect[0], rect[1], y - 1.2, y + 1.2)))
    if r.random() < 0.3:
        patches.append(clutter_patch(r, inner))
    trees = []
    for _ in range(r.integers(3, 6)):  # groves
        gx, gy = r.uniform(x0, x1), r.uniform(y0, y1)
        grove = (max(x0, gx - 9), min(x1, gx + 9), max(y0, gy - 9), min(y1, gy + 9))
        trees += place_trees(r, grove, int(r.integers(2, 6)))
    return _plain(rect, LOW_VEG, "lawn", pick(r, (LAWN,), jitter=0.1), patches=patches, trees=trees)


def _field_cell(r: Stream, rect, inner) -> Cell:
    """A crop field with rows, sometimes a hedge of trees along one side."""
    x0, x1, y0, y1 = inner
    a = r.uniform(0, math.pi)
    rows = (math.cos(a), math.sin(a), r.uniform(0.6, 1.6))
    trees = []
    if r.random() < 0.5:
        edge = r.integers(0, 4)
        hedge = [(x0, x0 + 2, y0, y1), (x1 - 2, x1, y0, y1), (x0, x1, y0, y0 + 2), (x0, x1, y1 - 2, y1)][edge]
        trees = place_trees(r, hedge, int(r.integers(4, 10)), rmin=2.0, rmax=4.0)
    patches = [clutter_patch(r, inner)] if r.random() < 0.15 else []
    return _plain(rect, LOW_VEG, "field", pick(r, FIELDS), rows=rows, patches=patches, trees=trees)


def _forest_cell(r: Stream, rect, inner) -> Cell:
    """A wood: crowns close enough to hide most of the floor."""
    trees = place_trees(r, inner, int(r.integers(30, 50)), rmin=3.0, rmax=6.0)
    return _plain(rect, LOW_VEG, "forest", pick(r, (FOREST_FLOOR,)), trees=trees)


def _parking_cell(r: Stream, rect, inner) -> Cell:
    """A car park: rows of stalls, most of them taken."""
    x0, x1, y0, y1 = inner
    cars = []
    y = y0 + 3.0
    while y + 2.5 < y1:
        x = x0 + r.uniform(1.5, 2.5)
        while x + 1.3 < x1:
            if r.random() < 0.6:
                cars.append(make_car(r, x, y, math.pi / 2 + math.pi * r.integers(0, 2) + r.normal(0, 0.04)))
            x += r.uniform(2.5, 2.9)
        y += 5.5 if r.random() < 0.5 else 8.5  # back-to-back rows, then an aisle
    edge = (x0, x1, y0, y0 + 1.0) if r.random() < 0.5 else (x0, x1, y1 - 1.0, y1)
    trees = place_trees(r, edge, int(r.integers(0, 6)))
    return _plain(rect, IMPERVIOUS, "paved", pick(r, (PAVING,)), cars=cars, trees=trees)


def _bare_cell(r: Stream, rect, inner) -> Cell:
    """Waste ground or a building site: bare soil, piles, containers, maybe a shed."""
    x0, x1, y0, y1 = inner
    patches = [clutter_patch(r, inner) for _ in range(r.integers(2, 6))]
    buildings = [make_building(r, (x0 + 5, x0 + 20, y0 + 5, y0 + 20))] if r.random() < 0.4 else []
    trees = place_trees(r, inner, int(r.integers(0, 4)), avoid=tuple(buildings))
    # Part of the lot is overgrown: rough grass keeps clutter near its ISPRS share.
    gx = r.uniform((x0 + x1) / 2, x1)
    rough = extent_box(gx, rect[1], rect[2], rect[3])
    patches.insert(0, Patch(rough, LOW_VEG, "lawn", pick(r, (LAWN,), jitter=0.15)))
    return _plain(rect, CLUTTER, "soil", pick(r, SOILS), patches=patches, buildings=buildings, trees=trees)


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


def plan_cell(r: Stream, rect, inner) -> Cell:
    """The plan of one cell: its kind first, then what that kind places."""
    kind = choose(r, len(_CELL_KINDS), _CELL_WEIGHTS)
    return _CELL_KINDS[kind][1](r, rect, inner)
