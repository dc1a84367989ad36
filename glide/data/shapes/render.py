"""Rendering a scene: the shapes' inside tests on a supersampled grid, box-averaged (the anti-aliasing).

The checker rasterises its templates with the same functions, so renderer and checker agree on geometry."""
from __future__ import annotations

import numpy as np
from PIL import Image

from .scene import PALETTE, SUPERSAMPLE, Scene, layout


def _inside(shape: str, x: np.ndarray, y: np.ndarray, cx: float, cy: float, h: float) -> np.ndarray:
    """Whether the points (x, y) lie inside the shape (all in the same units)."""
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= h * h
    if shape == "square":
        return (np.abs(x - cx) <= h) & (np.abs(y - cy) <= h)
    # Upward triangle in a 2h x 2h box: apex (cx, cy - h), base from cx - h to cx + h at cy + h,
    # so its half-width grows by 1/2 per unit of depth below the apex.
    return (np.abs(x - cx) <= (y - (cy - h)) / 2) & (y <= cy + h)


def coverage(shape, cx, cy, h, x0, y0, width, height):
    """Fraction of each pixel of the window [x0, x0+width) x [y0, y0+height) covered by the shape.

    Coordinates are in pixels, pixel (i, j) spanning [i, i+1) x [j, j+1).
    """
    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    xs = (x0 + np.arange(width)[:, None] + offsets).reshape(-1)
    ys = (y0 + np.arange(height)[:, None] + offsets).reshape(-1)
    inside = _inside(shape, xs[None, :], ys[:, None], cx, cy, h)
    return inside.reshape(height, SUPERSAMPLE, width, SUPERSAMPLE).mean(axis=(1, 3))


def render_array(scene: Scene, size: int, rng: np.random.Generator | None) -> np.ndarray:
    return paint(scene.background, zip(scene.shapes, layout(scene, rng)), size)


def paint(background: str, placed, size: int) -> np.ndarray:
    """Draw ``(Shape, (cx, cy, h))`` pairs (fractions of the side) over a plain background."""
    canvas = np.empty((size, size, 3), dtype=np.float64)
    canvas[:] = PALETTE[background]
    for s, (fx, fy, fh) in placed:
        cx, cy, h = fx * size, fy * size, fh * size
        # Only the shape's box (plus a pixel of slack) can be covered.
        x0, x1 = max(int(np.floor(cx - h)) - 1, 0), min(int(np.ceil(cx + h)) + 1, size)
        y0, y1 = max(int(np.floor(cy - h)) - 1, 0), min(int(np.ceil(cy + h)) + 1, size)
        cov = coverage(s.shape, cx, cy, h, x0, y0, x1 - x0, y1 - y0)[..., None]
        window = canvas[y0:y1, x0:x1]
        window += cov * (np.array(PALETTE[s.color], dtype=np.float64) - window)
    return np.rint(canvas).astype(np.uint8)


def render(scene: Scene, size: int, rng: np.random.Generator | None = None) -> Image.Image:
    """Draw ``scene`` as an anti-aliased ``size x size`` RGB image (jittered when ``rng`` is given)."""
    return Image.fromarray(render_array(scene, size, rng), mode="RGB")
