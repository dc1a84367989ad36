"""Scenes of the shapes domain: their attributes, the rules a valid scene obeys, random scenes, and
their continuous geometry (see the package docstring for the geometry)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 170),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle")
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.28, 0.5),
    "right": (0.72, 0.5),
    "top": (0.5, 0.28),
    "bottom": (0.5, 0.72),
    "center": (0.5, 0.5),
}
SIZES = ("small", "large")

#: Half-width ranges (fraction of the image side) for each size.
SIZE_RANGES: dict[str, tuple[float, float]] = {"small": (0.13, 0.15), "large": (0.20, 0.23)}
#: Maximum displacement of a shape's centre from its nominal position, per axis.
JITTER = 0.03
#: Smallest gap left between the boxes of the two shapes of a scene.
MIN_GAP = 0.04
#: The pairs of positions two shapes of one scene may stand at.
OPPOSITE_PAIRS = (("left", "right"), ("top", "bottom"))
#: Sub-samples per pixel and axis used for anti-aliasing.
SUPERSAMPLE = 4

COLOR_NAMES = tuple(PALETTE)
COLOR_VALUES = np.array([PALETTE[c] for c in COLOR_NAMES], dtype=np.float64)
_POSITION_NAMES = tuple(POSITIONS)


@dataclass(frozen=True)
class Shape:
    """One shape of a scene, by name: see ``SHAPES``, ``PALETTE``, ``POSITIONS``, ``SIZES``."""

    shape: str
    color: str
    position: str
    size: str


@dataclass(frozen=True)
class Scene:
    """A background colour and one or two shapes.

    The shapes are stored in a canonical order (by position, then colour, shape and size),
    so two scenes holding the same shapes compare equal whatever order they were listed in.
    """

    background: str
    shapes: tuple[Shape, ...]

    def __post_init__(self):
        # A frozen dataclass can only be normalised through object.__setattr__.
        object.__setattr__(self, "shapes", tuple(sorted(self.shapes, key=_shape_order)))


def _shape_order(s: Shape):
    # Unknown position names sort last rather than fail: is_valid() is where they are judged.
    rank = _POSITION_NAMES.index(s.position) if s.position in POSITIONS else len(POSITIONS)
    return (rank, s.position, s.color, s.shape, s.size)


def is_valid(scene: Scene) -> bool:
    """Whether ``scene`` obeys the domain's rules (known names, 1-2 shapes, distinct colours,
    shapes not in the background colour, and two shapes at an opposite pair of positions)."""
    shapes = scene.shapes
    if scene.background not in PALETTE or len(shapes) not in (1, 2):
        return False
    for s in shapes:
        if (s.shape not in SHAPES or s.color not in PALETTE or s.position not in POSITIONS
                or s.size not in SIZES or s.color == scene.background):
            return False
    if len(shapes) == 2:
        # The canonical order puts left before right and top before bottom.
        return (shapes[0].color != shapes[1].color
                and (shapes[0].position, shapes[1].position) in OPPOSITE_PAIRS)
    return True

def random_scene(rng: np.random.Generator, num_shapes: int | None = None) -> Scene:
    """Draw a valid scene uniformly over its attributes; ``num_shapes`` None means 1 or 2
    shapes with probability 1/2 each."""
    if num_shapes is None:
        num_shapes = 1 + int(rng.integers(2))
    if num_shapes not in (1, 2):
        raise ValueError(f"num_shapes must be 1 or 2, got {num_shapes}")
    colors = rng.permutation(len(COLOR_NAMES))[: num_shapes + 1]
    if num_shapes == 1:
        positions = [_POSITION_NAMES[rng.integers(len(_POSITION_NAMES))]]
    else:
        positions = list(OPPOSITE_PAIRS[rng.integers(len(OPPOSITE_PAIRS))])
    shapes = tuple(
        Shape(shape=SHAPES[rng.integers(len(SHAPES))], color=COLOR_NAMES[colors[i + 1]],
              position=positions[i], size=SIZES[rng.integers(len(SIZES))])
        for i in range(num_shapes))
    return Scene(background=COLOR_NAMES[colors[0]], shapes=shapes)


def layout(scene: Scene, rng: np.random.Generator | None = None) -> list[tuple[float, float, float]]:
    """Continuous geometry ``(cx, cy, h)`` of each shape of ``scene``, in fractions of the side.

    With ``rng`` the centre is jittered and ``h`` drawn from its size range; without it the
    shapes sit at their nominal positions with the mid-range half-width.
    """
    geometry = []
    for s in scene.shapes:
        fx, fy = POSITIONS[s.position]
        lo, hi = SIZE_RANGES[s.size]
        if rng is None:
            geometry.append((fx, fy, (lo + hi) / 2))
        else:
            dx, dy = rng.uniform(-JITTER, JITTER, size=2)
            geometry.append((fx + dx, fy + dy, rng.uniform(lo, hi)))
    if len(geometry) == 2:
        geometry = _separate(scene, geometry)
    return geometry


def _separate(scene, geometry):
    """Spread a pair of shapes about the image centre if their boxes are closer than MIN_GAP."""
    (x0, y0, h0), (x1, y1, h1) = geometry
    axis = 0 if scene.shapes[0].position in ("left", "right") else 1
    c0, c1 = (x0, x1) if axis == 0 else (y0, y1)
    needed = h0 + h1 + MIN_GAP
    if abs(c1 - c0) >= needed:
        return geometry
    sign = 1.0 if c1 > c0 else -1.0
    c0, c1 = 0.5 - sign * needed / 2, 0.5 + sign * needed / 2
    if axis == 0:
        return [(c0, y0, h0), (c1, y1, h1)]
    return [(x0, c0, h0), (x1, c1, h1)]
