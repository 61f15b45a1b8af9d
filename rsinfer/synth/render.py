"""One window of the scene, rendered from the cells and streets whose reach meets it.

The reach of a cell or street is its rectangle plus ``MARGIN`` (crowns and shadows spill
over). Layers are painted in a fixed order: ground, ground patches, sidewalks, asphalt,
markings, cars, building shadows, roofs, tree shadows, crowns. Later layers overwrite
earlier ones in the label too; shadows only darken the colour. Within a layer the order is
fixed by the indices, so overlaps resolve the same way in every window.
"""

from __future__ import annotations

import numpy as np

from .canvas import Canvas
from .layout import MARGIN, City, line_range
from .objects import segment_rect
from .paint import (
    cast_building_shadow,
    cast_tree_shadow,
    paint_asphalt,
    paint_building,
    paint_car,
    paint_ground,
    paint_marking,
    paint_patch,
    paint_sidewalk,
    paint_tree,
)
from .palette import BUILDING

__all__ = ["render_window"]


def render_window(city: City, row0: int, col0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB (3, h, w) and label (h, w) for one window, both uint8."""
    cv = Canvas(row0, col0, h, w, city.ps, city.salts)
    ps = city.ps
    wx0, wx1, wy0, wy1 = col0 * ps, (col0 + w) * ps, row0 * ps, (row0 + h) * ps
    j0, j1 = line_range(wx0, wx1)
    i0, i1 = line_range(wy0, wy1)

    def meets(rect, pad: float) -> bool:
        x0, x1, y0, y1 = rect
        return x0 - pad < wx1 and x1 + pad > wx0 and y0 - pad < wy1 and y1 + pad > wy0

    cells = [city.cell(i, j) for i in range(i0, i1) for j in range(j0, j1)]
    cells = [c for c in cells if meets(c.rect, MARGIN)]
    segments = [
        s
        for s in (
            [city.segment(0, j, i) for j in range(j0, j1 + 1) for i in range(i0, i1)]
            + [city.segment(1, i, j) for i in range(i0, i1 + 1) for j in range(j0, j1)]
        )
        if s.present and meets(segment_rect(s, s.width / 2, s.lo, s.hi), MARGIN)
    ]

    for cell in cells:
        paint_ground(cv, cell)
    for cell in cells:
        for patch in cell.patches:
            paint_patch(cv, patch)
    for painter in (paint_sidewalk, paint_asphalt, paint_marking):
        for seg in segments:
            painter(cv, seg)
    for car in [c for seg in segments for c in seg.cars] + [c for cell in cells for c in cell.cars]:
        paint_car(cv, car)
    for cell in cells:
        for bld in cell.buildings:
            cast_building_shadow(cv, city, bld)
    for cell in cells:
        for bld in cell.buildings:
            paint_building(cv, bld)
    cv.shadow &= cv.label != BUILDING  # building shadows fall on the ground, not on roofs
    trees = [t for seg in segments for t in seg.trees] + [t for cell in cells for t in cell.trees]
    for tree in trees:
        cast_tree_shadow(cv, city, tree)
    cv.apply_shadow()  # before the crowns, which stand above every shadow
    for tree in trees:
        paint_tree(cv, city, tree)
    return cv.finish()
