"""The scene's objects as plain data, and how one object's plan is drawn from a :class:`Stream`.

Coordinates are world metres from the scene's upper-left corner, x right (east), y down
(south). Objects are frozen: a plan, once drawn, is shared by every window that meets it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .palette import (
    CAR_WEIGHTS,
    CARS,
    CLUTTER,
    CONTAINERS,
    FLAT_ROOFS,
    IMPERVIOUS,
    PAVING,
    ROOF_WEIGHTS,
    ROOFS,
    SOILS,
    TREES,
    Color,
    pick,
)
from .random import Stream, choose, sign


@dataclass(frozen=True, slots=True)
class Box:
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
class Patch:
    """Ground cover painted over a cell's base ground (paving, soil, containers, piles)."""

    box: Box
    cls: int
    style: str  # "paved", "lawn", "soil", "container", "pile"
    color: Color


@dataclass(frozen=True, slots=True)
class Building:
    boxes: tuple[Box, ...]  # main body, then wings; all share one roof colour
    color: Color
    gable: bool
    height: float
    details: tuple[tuple[Box, Color], ...] = ()  # roof fixtures on flat roofs


@dataclass(frozen=True, slots=True)
class Tree:
    discs: tuple[tuple[float, float, float], ...]  # (x, y, r); the first is the crown's core
    color: Color
    height: float
    reach: float  # farthest crown edge from the core's centre


@dataclass(frozen=True, slots=True)
class Car:
    box: Box  # u points to the front
    color: Color


@dataclass(frozen=True, slots=True)
class Line:
    pos: float
    width: float  # kerb to kerb, sidewalks included
    walk: float  # sidewalk width on each side


@dataclass(frozen=True, slots=True)
class Segment:
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
    cars: tuple[Car, ...] = ()
    trees: tuple[Tree, ...] = ()  # street trees along the sidewalks


def segment_rect(seg: Segment, half: float, lo: float, hi: float) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) of the band within `half` of the street's centre, from `lo` to `hi` along it."""
    if seg.vertical:
        return seg.centre - half, seg.centre + half, lo, hi
    return lo, hi, seg.centre - half, seg.centre + half


@dataclass(frozen=True, slots=True)
class Cell:
    rect: tuple[float, float, float, float]  # x0, x1, y0, y1
    ground: int
    style: str  # "lawn", "field", "forest", "paved", "soil"
    color: Color
    rows: tuple[float, float, float]  # field rows: unit direction (dx, dy) and period
    patches: tuple[Patch, ...]
    buildings: tuple[Building, ...]
    trees: tuple[Tree, ...]
    cars: tuple[Car, ...]


# --------------------------------------------------------------------------- object factories


def make_car(r: Stream, x: float, y: float, angle: float) -> Car:
    box = Box(x, y, r.uniform(2.0, 2.45), r.uniform(0.85, 0.98), math.cos(angle), math.sin(angle))
    return Car(box, pick(r, CARS, CAR_WEIGHTS, jitter=0.04))


def make_tree(r: Stream, x: float, y: float, radius: float | None = None) -> Tree:
    """A crown: a core disc plus a few lobes, so outlines are irregular."""
    rad = radius if radius is not None else r.uniform(2.0, 5.5)
    discs = [(x, y, rad)]
    for _ in range(r.integers(2, 5)):
        a, d = r.uniform(0, 2 * math.pi), r.uniform(0.35, 0.65) * rad
        discs.append((x + d * math.cos(a), y + d * math.sin(a), rad * r.uniform(0.45, 0.75)))
    reach = max(math.hypot(dx - x, dy - y) + dr for dx, dy, dr in discs)
    return Tree(tuple(discs), pick(r, TREES, jitter=0.1), height=r.uniform(5.0, 16.0), reach=reach)


def place_trees(r, inner, n: int, avoid: tuple[Building, ...] = (), rmin=2.0, rmax=5.5) -> list[Tree]:
    """Up to n trees with centres inside `inner`, kept off the buildings' footprints."""
    x0, x1, y0, y1 = inner
    trees = []
    for _ in range(n):
        for _try in range(6):
            rad = r.uniform(rmin, rmax)
            x, y = r.uniform(x0, x1), r.uniform(y0, y1)
            if not any(near_box(bx, x, y, 0.4 * rad) for b in avoid for bx in b.boxes):
                trees.append(make_tree(r, x, y, rad))
                break
    return trees


def near_box(box: Box, x: float, y: float, pad: float) -> bool:
    dx, dy = x - box.cx, y - box.cy
    u, v = dx * box.c + dy * box.s, dy * box.c - dx * box.s
    return abs(u) < box.hu + pad and abs(v) < box.hv + pad


def make_building(r: Stream, lot: tuple[float, float, float, float], fill=(0.5, 0.85), big: bool = False) -> Building:
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
    boxes = [Box(cx, cy, hu, hv, c, s)]
    if angle == 0.0 and r.random() < 0.3:
        boxes.append(_wing(r, boxes[0], lot))
    area = 4 * hu * hv
    gable = not big and area < 450 and r.random() < 0.7
    color = pick(r, ROOFS, ROOF_WEIGHTS) if gable else pick(r, FLAT_ROOFS)
    details: tuple[tuple[Box, Color], ...] = ()
    if not gable:  # roof fixtures: vents, skylights, plant rooms
        fixtures = []
        for _ in range(r.integers(1, 5)):
            fu, fv = r.uniform(0.5, 2.5), r.uniform(0.5, 2.0)
            if fu < hu - 1 and fv < hv - 1:
                du, dv = r.uniform(-(hu - fu - 0.8), hu - fu - 0.8), r.uniform(-(hv - fv - 0.8), hv - fv - 0.8)
                fb = boxes[0]
                fixtures.append(
                    (
                        Box(cx + du * fb.c - dv * fb.s, cy + du * fb.s + dv * fb.c, fu, fv, fb.c, fb.s),
                        pick(r, FLAT_ROOFS, jitter=0.25),
                    )
                )
        details = tuple(fixtures)
    height = r.uniform(10.0, 18.0) if big else r.uniform(5.0, 14.0)
    return Building(tuple(boxes), color, gable, height, details)


def _wing(r: Stream, main: Box, lot) -> Box:
    """An axis-aligned wing off one end of an axis-aligned `main`, kept in the lot: an L shape."""
    lx0, lx1, ly0, ly1 = lot
    ex, ey = main.reach()
    end, side, depth = sign(r), sign(r), r.uniform(4.0, 12.0)
    if ex >= ey:  # long side along x: the wing sticks out north or south
        half = ex * r.uniform(0.2, 0.35)
        edge = main.cy + side * ey
        y0, y1 = sorted((edge - side * 0.5, min(max(edge + side * depth, ly0), ly1)))
        return Box(main.cx + end * (ex - half), (y0 + y1) / 2, half, (y1 - y0) / 2)
    half = ey * r.uniform(0.2, 0.35)
    edge = main.cx + side * ex
    x0, x1 = sorted((edge - side * 0.5, min(max(edge + side * depth, lx0), lx1)))
    return Box((x0 + x1) / 2, main.cy + end * (ey - half), (x1 - x0) / 2, half)


def clutter_patch(r: Stream, inner) -> Patch:
    """Bare soil, a gravel pile or a container: the misc ground ISPRS calls clutter."""
    x0, x1, y0, y1 = inner
    kind = choose(r, 3, (0.5, 0.25, 0.25))
    if kind == 0:
        hu, hv = r.uniform(2.0, 7.0), r.uniform(2.0, 6.0)
        style, color = "soil", pick(r, SOILS)
    elif kind == 1:
        hu, hv = r.uniform(1.5, 4.0), r.uniform(1.5, 3.5)
        style, color = "pile", pick(r, SOILS, jitter=0.15)
    else:
        hu, hv = r.uniform(2.5, 6.0), r.uniform(1.2, 1.3)
        style, color = "container", pick(r, CONTAINERS, jitter=0.1)
    hu, hv = min(hu, (x1 - x0) / 2.5), min(hv, (y1 - y0) / 2.5)
    cx, cy = r.uniform(x0 + hu, x1 - hu), r.uniform(y0 + hv, y1 - hv)
    return Patch(Box(cx, cy, hu, hv), CLUTTER, style, color)


def extent_box(x0: float, x1: float, y0: float, y1: float) -> Box:
    """The axis-aligned box covering [x0, x1] x [y0, y1]."""
    return Box((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2)


def paving(r: Stream, box: Box) -> Patch:
    return Patch(box, IMPERVIOUS, "paved", pick(r, (PAVING,)))
