"""How each kind of object is painted onto a :class:`Canvas`: its label class where it stands,
its colour times a shade texture, and the shadows that buildings and crowns cast.

Painters only write the pixels an object covers; the order in which they run (which object
ends on top) is :func:`rsinfer.synth.render.render_window`'s. Shade arithmetic is float32
and elementwise on global coordinates, so a pixel comes out the same in every window.
"""

from __future__ import annotations

import numpy as np

from .canvas import Canvas, frac
from .layout import City
from .objects import Building, Car, Cell, Patch, Segment, Tree, segment_rect
from .palette import ASPHALT, BUILDING, CAR, GLASS, IMPERVIOUS, MARKING, SIDEWALK, TREE

__all__ = [
    "cast_building_shadow",
    "cast_tree_shadow",
    "paint_asphalt",
    "paint_building",
    "paint_car",
    "paint_ground",
    "paint_marking",
    "paint_patch",
    "paint_sidewalk",
    "paint_tree",
]


def paint_ground(cv: Canvas, cell: Cell) -> None:
    x0, x1, y0, y1 = cell.rect
    sl = cv.span(x0, x1, y0, y1)
    if sl is not None:
        cv.fill(sl, None, cell.ground, cell.color, _ground_shade(cv, sl, cell.style, cell.rows))


def _ground_shade(cv: Canvas, sl, style: str, rows=(1.0, 0.0, 1.0)) -> np.ndarray:
    """Brightness texture of a ground cover over the slice `sl`."""
    ys, xs = sl
    m = cv.mottle[ys, xs]
    g = cv.grain[ys, xs]
    if style == "field":
        dx, dy, period = rows
        t = frac((cv.x[:, xs] * np.float32(dx / period)) + (cv.y[ys, :] * np.float32(dy / period)))
        return m * (np.float32(0.78) + np.float32(0.44) * np.abs(t - np.float32(0.5)))
    if style == "soil":
        return m * m * (np.float32(1.0) + np.float32(0.08) * g)
    if style == "forest":
        return m * (np.float32(0.9) + np.float32(0.15) * g)
    if style == "paved":
        return np.float32(0.9) + np.float32(0.1) * m + np.float32(0.03) * g
    return m * (np.float32(0.97) + np.float32(0.05) * g)  # lawn


def paint_patch(cv: Canvas, p: Patch) -> None:
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
            shade = np.float32(0.85) + np.float32(0.3) * (frac(u * np.float32(2.5)) < 0.5)
        else:
            shade = _ground_shade(cv, sl, p.style)
    cv.fill(sl, mask, p.cls, p.color, shade)


def paint_sidewalk(cv: Canvas, seg: Segment) -> None:
    sl = cv.span(*segment_rect(seg, seg.width / 2, seg.lo, seg.hi))
    if sl is None:
        return
    ys, xs = sl
    # Paving slabs: darker joints every 1.5 m.
    joints = (frac(cv.x[:, xs] * np.float32(1 / 1.5)) < 0.08) | (frac(cv.y[ys, :] * np.float32(1 / 1.5)) < 0.08)
    shade = (np.float32(1.0) - np.float32(0.12) * joints) * (np.float32(0.94) + np.float32(0.06) * cv.mottle[ys, xs])
    cv.fill(sl, None, IMPERVIOUS, SIDEWALK, shade)


def paint_asphalt(cv: Canvas, seg: Segment) -> None:
    half = seg.width / 2 - seg.walk
    sl = cv.span(*segment_rect(seg, half, seg.lo, seg.hi))
    if sl is None:
        return
    ys, xs = sl
    across = (cv.x[:, xs] if seg.vertical else cv.y[ys, :]) - np.float32(seg.centre)
    # Wheel tracks: slightly darker bands at a quarter of each lane from its edges.
    lane = np.abs(across) / np.float32(max(half, 1.0))
    tracks = np.abs(lane - np.float32(0.5)) < np.float32(0.12)
    shade = (np.float32(0.88) + np.float32(0.14) * cv.mottle[ys, xs] + np.float32(0.04) * cv.grain[ys, xs]) * (
        np.float32(1.0) - np.float32(0.07) * tracks
    )
    cv.fill(sl, None, IMPERVIOUS, ASPHALT, shade)


def paint_marking(cv: Canvas, seg: Segment) -> None:
    """A dashed centre line between the crossings (3 m dash, 3 m gap)."""
    if seg.width < 9.0:
        return
    half = max(0.08, 0.6 * cv.ps)
    sl = cv.span(*segment_rect(seg, half, seg.open_lo + 1.0, seg.open_hi - 1.0))
    if sl is None:
        return
    ys, xs = sl
    along = cv.y[ys, :] if seg.vertical else cv.x[:, xs]
    dash = frac(along * np.float32(1 / 6.0)) < 0.5
    dash = np.broadcast_to(dash, (ys.stop - ys.start, xs.stop - xs.start))
    cv.fill(sl, dash, IMPERVIOUS, MARKING, np.float32(1.0))


def paint_car(cv: Canvas, car: Car) -> None:
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
    cv.fill(sl, glass, CAR, GLASS, np.float32(1.0))


def paint_building(cv: Canvas, bld: Building) -> None:
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
            tiles = np.float32(1.0) - np.float32(0.1) * (frac(av * np.float32(1 / 0.4)) < 0.3)
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


def cast_building_shadow(cv: Canvas, city: City, bld: Building) -> None:
    """Mark the ground swept by the footprint moved towards the shadow offset (t in [0, 1])."""
    ox, oy = city.shadow_offset(bld.height)
    for box in bld.boxes:
        ou, ov = ox * box.c + oy * box.s, oy * box.c - ox * box.s
        ex, ey = box.reach()
        sl = cv.span(
            box.cx - ex + min(ox, 0), box.cx + ex + max(ox, 0), box.cy - ey + min(oy, 0), box.cy + ey + max(oy, 0)
        )
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


def _disc_d2(cv: Canvas, sl, x: float, y: float) -> np.ndarray:
    """Squared distance to (x, y) over the slices: two small 1-D terms, one broadcast add."""
    dx = cv.x[:, sl[1]] - np.float32(x)
    dy = cv.y[sl[0], :] - np.float32(y)
    return dx * dx + dy * dy


def cast_tree_shadow(cv: Canvas, city: City, tree: Tree) -> None:
    """A crown's shadow: a soft-edged blob, so the core disc (slightly shrunk) is enough."""
    ox, oy = city.shadow_offset(tree.height)
    x, y, _ = tree.discs[0]
    x, y, r = x + ox, y + oy, 0.85 * tree.reach
    sl = cv.span(x - r, x + r, y - r, y + r)
    if sl is not None:
        cv.shadow[sl] |= _disc_d2(cv, sl, x, y) < np.float32(r * r)


def paint_tree(cv: Canvas, city: City, tree: Tree) -> None:
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
