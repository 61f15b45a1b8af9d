"""One window of the scene being painted: label, RGB and shadow mask, plus the texture fields
(mottle, grain) and sensor noise every painter shares.

Textures and noise are integer hashes of the global pixel indices, never a sequential
generator, and per-pixel arithmetic is elementwise IEEE (+ - * /, floor) on coordinates
computed from global indices, so no value depends on where a window boundary fell.
"""

from __future__ import annotations

import math

import numpy as np

from .objects import Box
from .palette import Color
from .random import SALT_GRAIN, SALT_MOTTLE, SALT_NOISE, hash2

__all__ = ["Canvas", "frac"]

_U32 = np.uint32


def frac(a: np.ndarray) -> np.ndarray:
    """a - floor(a): where stripes, joints and dashes repeat."""
    return a - np.floor(a)


class Canvas:
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
        self.mottle = self._value_noise(max(2, round(5.0 / pixel_size)), salts[SALT_MOTTLE])
        self.grain = self._grain(max(1, round(0.4 / pixel_size)), salts[SALT_GRAIN])

    def _lattice(self, scale: int, salt: int, extra: int) -> tuple[np.ndarray, int, int]:
        """Hashed values in [0, 1) on the global lattice of every `scale`-th pixel covering the window."""
        gy0, gx0 = self.row0 // scale, self.col0 // scale
        ny = (self.row0 + self.h - 1) // scale - gy0 + 1 + extra
        nx = (self.col0 + self.w - 1) // scale - gx0 + 1 + extra
        ly = np.arange(gy0, gy0 + ny, dtype=np.uint32)[:, None]
        lx = np.arange(gx0, gx0 + nx, dtype=np.uint32)[None, :]
        values = (hash2(ly, lx, salt) >> _U32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))
        return values, gy0, gx0

    def _grain(self, size: int, salt: int) -> np.ndarray:
        """Blocky noise in [-1, 1): one value per size x size pixels (leaf clumps, gravel)."""
        values, gy0, gx0 = self._lattice(size, salt, 0)
        big = np.repeat(np.repeat(values, size, axis=0), size, axis=1)
        oy, ox = self.row0 - gy0 * size, self.col0 - gx0 * size
        return big[oy : oy + self.h, ox : ox + self.w] * np.float32(2.0) - np.float32(1.0)

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

    def box_uv(self, box: Box, pad: float = 0.0):
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
        for band, c in zip(self.rgb, color, strict=True):  # band by band keeps the float temporary small
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
        for band, dark in zip(self.rgb, (0.39, 0.44, 0.54), strict=True):
            np.multiply(band, np.float32(dark), out=band, where=self.shadow, casting="unsafe")

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Add per-pixel sensor noise (luminance and a little chroma); return uint8 (rgb, label)."""
        for r0 in range(0, self.h, 128):  # strips keep the temporaries small
            rows = slice(r0, r0 + 128)
            h = hash2(self.rows[rows], self.cols, self.salts[SALT_NOISE])
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
