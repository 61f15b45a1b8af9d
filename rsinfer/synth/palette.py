"""What the scene's things are and look like: ISPRS class ids and the colours they are painted in."""

from __future__ import annotations

from rsinfer.models.config import ISPRS_CLASSES

from .random import Stream, choose

# Class ids as the shared legend numbers them.
IMPERVIOUS, BUILDING, LOW_VEG, TREE, CAR, CLUTTER = (
    ISPRS_CLASSES.index(name)
    for name in ("impervious_surfaces", "building", "low_vegetation", "tree", "car", "clutter")
)

Color = tuple[float, float, float]

# Base colours, RGB in 0-255; pick() varies each object's a little.
LAWN = (92.0, 128.0, 58.0)
FOREST_FLOOR = (70.0, 92.0, 48.0)
FIELDS = ((112.0, 146.0, 64.0), (150.0, 148.0, 82.0), (132.0, 108.0, 76.0), (96.0, 132.0, 70.0))
PAVING = (142.0, 138.0, 132.0)
SOILS = ((168.0, 144.0, 112.0), (150.0, 134.0, 118.0), (176.0, 160.0, 130.0))
CONTAINERS = ((40.0, 80.0, 150.0), (190.0, 90.0, 40.0), (60.0, 120.0, 70.0), (150.0, 40.0, 40.0))
ROOFS = ((172.0, 76.0, 58.0), (128.0, 86.0, 62.0), (72.0, 74.0, 82.0), (128.0, 128.0, 134.0), (150.0, 100.0, 80.0))
ROOF_WEIGHTS = (0.35, 0.15, 0.2, 0.2, 0.1)
FLAT_ROOFS = ((184.0, 182.0, 176.0), (120.0, 122.0, 126.0), (160.0, 156.0, 148.0))
TREES = ((46.0, 82.0, 38.0), (56.0, 92.0, 42.0), (36.0, 64.0, 36.0), (74.0, 96.0, 42.0))
CARS = (
    (226.0, 226.0, 224.0),
    (30.0, 30.0, 34.0),
    (170.0, 172.0, 178.0),
    (104.0, 108.0, 112.0),
    (170.0, 32.0, 30.0),
    (36.0, 62.0, 140.0),
    (26.0, 40.0, 80.0),
    (200.0, 180.0, 40.0),
)
CAR_WEIGHTS = (0.22, 0.18, 0.2, 0.14, 0.08, 0.09, 0.06, 0.03)
GLASS = (40.0, 46.0, 56.0)
ASPHALT = (96.0, 97.0, 100.0)
SIDEWALK = (168.0, 164.0, 158.0)
MARKING = (222.0, 222.0, 214.0)


def pick(r: Stream, colors: tuple[Color, ...], weights=None, jitter: float = 0.06) -> Color:
    """One palette colour, brightness and tint varied a little so objects differ."""
    base = colors[choose(r, len(colors), weights)]
    k, tint = r.random(), (r.random(), r.random(), r.random())
    k = 1.0 + jitter * (2 * k - 1)
    red, green, blue = (min(255.0, c * k * (1.0 + 0.03 * (2 * t - 1))) for c, t in zip(base, tint, strict=True))
    return red, green, blue
