"""Polygons of a label map built strip by strip, merged across the borders between strips.

Everything here is in *pixel* coordinates (x = column, y = row, y downwards): every vertex
is an integer, so unions of neighbouring pieces are exact and a border is the line
``y = row``. The caller maps finished polygons to the raster's CRS.

A strip's polygons that reach its bottom row wait in a *pending* set; the next strip's
polygons that reach its top row join them when a pending piece and a new piece of the same
class lie on the two sides of one border pixel edge (4-connectivity, as ``shapes`` uses
within a strip: pieces touching only at a corner stay apart). Pieces joined this way are
unioned; whatever no longer reaches the bottom of the current strip cannot grow and is
handed back at once. Only the pending set crosses from one strip to the next, and every
pending polygon covers at least one pixel of the border row, so it never holds more than
``width`` polygons (a polygon that stays connected to the border is held whole until it
stops: its size is that of the output feature itself).
"""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine
from rasterio.features import shapes

# Data types rasterio.features.shapes polygonizes directly.
SHAPES_DTYPES = ("uint8", "int16", "uint16", "int32", "float32")


class StripMerger:
    """Feed strips top to bottom with :meth:`add`; each call returns the polygons it finished."""

    def __init__(self, width: int):
        self.width = width
        self._pending = np.empty(0, dtype=object)  # polygons reaching the border below the last strip
        self._pending_cls = np.empty(0, dtype=np.int64)
        self._pending_joined = np.empty(0, dtype=bool)  # unioned from pieces: has vertices on old borders
        self._owner = np.full(width, -1, dtype=np.int64)  # pending index over each column of the border
        self._border = 0  # row of the border line below the last strip
        self.max_pending = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, labels: np.ndarray, mask: np.ndarray, row0: int, last: bool) -> tuple[np.ndarray, np.ndarray]:
        """Polygonize ``labels`` (rows ``row0 ..``; pixels where ``mask`` is true) and merge them.

        Returns the finished polygons (pixel coordinates) and their class ids. With ``last``
        every polygon is finished.
        """
        if row0 != self._border:
            raise ValueError(f"strip starts at row {row0}, expected {self._border}")
        bottom = row0 + labels.shape[0]
        geoms, classes = _polygonize(labels, mask, row0)
        pieces = np.concatenate([self._pending, geoms])
        piece_cls = np.concatenate([self._pending_cls, classes])
        groups = self._groups(geoms, classes, row0)

        merged = np.empty(len(groups), dtype=object)
        merged_cls = np.empty(len(groups), dtype=np.int64)
        joined = np.concatenate([self._pending_joined, np.zeros(len(geoms), dtype=bool)])
        merged_joined = np.empty(len(groups), dtype=bool)
        for k, members in enumerate(groups):
            merged[k] = pieces[members[0]] if len(members) == 1 else _union(pieces[members])
            merged_cls[k] = piece_cls[members[0]]
            merged_joined[k] = len(members) > 1 or joined[members[0]]

        if last or len(merged) == 0:
            waiting = np.zeros(len(merged), dtype=bool)
        else:
            waiting = shapely.bounds(merged)[:, 3] >= bottom  # reaches the border below this strip
        self._pending, self._pending_cls = merged[waiting], merged_cls[waiting]
        self._pending_joined = merged_joined[waiting]
        self._owner = _row_owner(self._pending, bottom, self.width)
        self._border = bottom
        self.max_pending = max(self.max_pending, len(self._pending))
        finished, tidy = merged[~waiting], merged_joined[~waiting]
        # Once, when a joined polygon is done: drop the collinear vertices left where borders were.
        finished[tidy] = shapely.simplify(finished[tidy], 0.0, preserve_topology=False)
        return finished, merged_cls[~waiting]

    def _groups(self, geoms: np.ndarray, classes: np.ndarray, row0: int) -> list[list[int]]:
        """Indices into pending + new pieces, grouped by what joins across the border ``y = row0``."""
        n_pending = len(self._pending)
        parent = list(range(n_pending + len(geoms)))
        if n_pending and len(geoms):
            below = _row_owner(geoms, row0, self.width)
            above = self._owner
            edge = (above >= 0) & (below >= 0)
            a, b = above[edge], below[edge]
            same_class = self._pending_cls[a] == classes[b]
            for i, j in set(zip(a[same_class].tolist(), (b[same_class] + n_pending).tolist())):
                ri, rj = _find(parent, i), _find(parent, j)
                if ri != rj:
                    parent[rj] = ri
        groups: dict[int, list[int]] = {}
        for i in range(len(parent)):
            groups.setdefault(_find(parent, i), []).append(i)
        return list(groups.values())


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving keeps the trees flat
        i = parent[i]
    return i


def _polygonize(labels: np.ndarray, mask: np.ndarray, row0: int) -> tuple[np.ndarray, np.ndarray]:
    """The 4-connected regions of one strip as polygons in pixel coordinates, with their classes."""
    # Rings are gathered and built in one vectorized call: one Polygon() per region is far slower.
    coords: list = []
    ring_sizes: list[int] = []
    ring_polygon: list[int] = []
    classes: list[int] = []
    for geom, value in shapes(labels, mask=mask, connectivity=4, transform=Affine.translation(0, row0)):
        for ring in geom["coordinates"]:
            coords.extend(ring)
            ring_sizes.append(len(ring))
            ring_polygon.append(len(classes))
        classes.append(int(value))
    if not classes:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    rings = shapely.linearrings(
        np.asarray(coords, dtype=float), indices=np.repeat(np.arange(len(ring_sizes)), ring_sizes)
    )
    geoms = shapely.polygons(rings, indices=np.asarray(ring_polygon))
    return geoms, np.array(classes, dtype=np.int64)


def _union(pieces: np.ndarray):
    """One polygon from pieces joined along border edges (never a multipolygon: they share edges).

    Only the shells are overlaid: a piece's holes never reach a border, so they stay holes
    of the union as they are. A region with thousands of holes (noise inside a field) is
    then carried from strip to strip without overlaying its holes again each time.
    """
    joined = shapely.union_all(shapely.polygons(shapely.get_exterior_ring(pieces)))
    if joined.geom_type != "Polygon":  # not expected; the full overlay is right in any case
        return shapely.union_all(pieces)
    rings, owner = shapely.get_rings(pieces, return_index=True)
    shell = np.r_[True, owner[1:] != owner[:-1]]  # each piece's rings start with its shell
    new_rings = shapely.get_rings(joined)  # the joined shell, and holes the joining closed
    return shapely.polygons(new_rings[0], holes=np.concatenate([new_rings[1:], rings[~shell]]))


def _row_owner(geoms: np.ndarray, y: int, width: int) -> np.ndarray:
    """For each column, the index of the polygon with an edge on the line ``y`` there, else -1.

    Only exteriors are scanned: a hole cannot reach a strip's top or bottom row, since it
    would then be open on that side.
    """
    owner = np.full(width, -1, dtype=np.int64)
    if len(geoms) == 0:
        return owner
    bounds = shapely.bounds(geoms)
    touching = np.flatnonzero((bounds[:, 1] <= y) & (bounds[:, 3] >= y))
    if len(touching) == 0:
        return owner
    coords, index = shapely.get_coordinates(shapely.get_exterior_ring(geoms[touching]), return_index=True)
    on_line = coords[:, 1] == y
    segment = on_line[:-1] & on_line[1:] & (index[:-1] == index[1:])
    for k in np.flatnonzero(segment):
        x0, x1 = sorted((int(coords[k, 0]), int(coords[k + 1, 0])))
        owner[x0:x1] = touching[index[k]]
    return owner
