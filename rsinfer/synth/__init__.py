"""Synthetic orthophoto + ISPRS label scenes of any size, written in bounded memory.

Design: a city laid out by hashing, so that any window can be drawn on its own. A street
grid cuts the plane into cells (blocks); each street stretch and each cell draws its plan
from a stream seeded by its own indices (:mod:`.layout`, :mod:`.cells`, :mod:`.objects`).
A window is painted from the plans that reach it, layer by layer in a fixed order
(:mod:`.render`, :mod:`.paint`), with textures and noise hashed from global pixel indices
(:mod:`.canvas`, :mod:`.random`). Hence every pixel is a pure function of (seed,
pixel_size, row, column), and :mod:`.scene` streams the files window by window.

Modules, from the bottom up:

- :mod:`.random`: seeded scalar streams and per-pixel integer hashes.
- :mod:`.palette`: class ids and the colours objects are painted in.
- :mod:`.objects`: the objects (boxes, buildings, trees, cars, streets, cells) as data, and
  how one object's plan is drawn.
- :mod:`.cells`: the cell kinds (houses, halls, park, ...) and what each places.
- :mod:`.layout`: the city of one seed: street lines, street segments, cached cell plans.
- :mod:`.canvas`: one window's label/RGB/shadow arrays and texture fields.
- :mod:`.paint`: one painter per kind of object, and the shadows.
- :mod:`.render`: which plans meet a window, and the order the layers are painted in.
- :mod:`.scene`: the GeoTIFF profile and the streamed, atomic writing of both files.
"""

from __future__ import annotations

from .scene import scene_profile, write_synthetic_scene

__all__ = ["scene_profile", "write_synthetic_scene"]
