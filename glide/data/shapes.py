"""The procedural "shapes" domain: scenes, renderer, caption grammar and an automatic checker.

A scene is one or two flat shapes on a plain background. Everything about it is named in
its caption, so a text-to-image model trained on (render, caption) pairs can be *judged*
by reading its samples back with :func:`check` and comparing against the prompt with
:func:`matches`.

Geometry (all in fractions of the image side, which is also how :func:`render` works):

* each shape fits a ``2h x 2h`` box centred on its position, ``h`` being its half-width:
  a circle of radius ``h``, a square of half-side ``h``, and an upward isosceles triangle
  whose base is ``2h`` wide and whose height is ``2h``. The triangle is centred on its
  *bounding-box* centre (not its centroid, which lies ``h/3`` lower), so that "at the top"
  and "at the bottom" triangles stay inside the image like the other shapes do;
* ``h`` is drawn from ``SIZE_RANGES`` and the centre is jittered by up to ``JITTER``;
* two shapes stand at an opposite pair of positions. Two large ones on the same axis would
  be able to touch, so when the jittered boxes would leave less than ``MIN_GAP`` between
  them the pair is spread symmetrically about the image centre to exactly that gap. The
  worst case (two shapes with ``h = 0.23``) lands the centres at 0.25 / 0.75, which is still
  within ``JITTER`` of the nominal 0.28 / 0.72, so no shape is ever moved off its position.

Rendering evaluates the shapes' inside test on a ``SUPERSAMPLE``-times finer grid with
numpy and box-averages it (the anti-aliasing); the checker rasterises its shape templates
with the very same function, so renderer and checker can never disagree about geometry.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import permutations

import numpy as np
from PIL import Image

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

_COLOR_NAMES = tuple(PALETTE)
_COLORS = np.array([PALETTE[c] for c in _COLOR_NAMES], dtype=np.float64)
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


# --------------------------------------------------------------------------------------
# Sampling scenes and rendering them
# --------------------------------------------------------------------------------------

def random_scene(rng: np.random.Generator, num_shapes: int | None = None) -> Scene:
    """Draw a valid scene uniformly over its attributes; ``num_shapes`` None means 1 or 2
    shapes with probability 1/2 each."""
    if num_shapes is None:
        num_shapes = 1 + int(rng.integers(2))
    if num_shapes not in (1, 2):
        raise ValueError(f"num_shapes must be 1 or 2, got {num_shapes}")
    colors = rng.permutation(len(_COLOR_NAMES))[: num_shapes + 1]
    if num_shapes == 1:
        positions = [_POSITION_NAMES[rng.integers(len(_POSITION_NAMES))]]
    else:
        positions = list(OPPOSITE_PAIRS[rng.integers(len(OPPOSITE_PAIRS))])
    shapes = tuple(
        Shape(shape=SHAPES[rng.integers(len(SHAPES))], color=_COLOR_NAMES[colors[i + 1]],
              position=positions[i], size=SIZES[rng.integers(len(SIZES))])
        for i in range(num_shapes))
    return Scene(background=_COLOR_NAMES[colors[0]], shapes=shapes)


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


def _inside(shape: str, x: np.ndarray, y: np.ndarray, cx: float, cy: float, h: float) -> np.ndarray:
    """Whether the points (x, y) lie inside the shape (all in the same units)."""
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= h * h
    if shape == "square":
        return (np.abs(x - cx) <= h) & (np.abs(y - cy) <= h)
    # Upward triangle in a 2h x 2h box: apex (cx, cy - h), base from cx - h to cx + h at cy + h,
    # so its half-width grows by 1/2 per unit of depth below the apex.
    return (np.abs(x - cx) <= (y - (cy - h)) / 2) & (y <= cy + h)


def _coverage(shape, cx, cy, h, x0, y0, width, height):
    """Fraction of each pixel of the window [x0, x0+width) x [y0, y0+height) covered by the shape.

    Coordinates are in pixels, pixel (i, j) spanning [i, i+1) x [j, j+1).
    """
    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    xs = (x0 + np.arange(width)[:, None] + offsets).reshape(-1)
    ys = (y0 + np.arange(height)[:, None] + offsets).reshape(-1)
    inside = _inside(shape, xs[None, :], ys[:, None], cx, cy, h)
    return inside.reshape(height, SUPERSAMPLE, width, SUPERSAMPLE).mean(axis=(1, 3))


def _render_array(scene: Scene, size: int, rng: np.random.Generator | None) -> np.ndarray:
    return _paint(scene.background, zip(scene.shapes, layout(scene, rng)), size)


def _paint(background: str, placed, size: int) -> np.ndarray:
    """Draw ``(Shape, (cx, cy, h))`` pairs (fractions of the side) over a plain background."""
    canvas = np.empty((size, size, 3), dtype=np.float64)
    canvas[:] = PALETTE[background]
    for s, (fx, fy, fh) in placed:
        cx, cy, h = fx * size, fy * size, fh * size
        # Only the shape's box (plus a pixel of slack) can be covered.
        x0, x1 = max(int(np.floor(cx - h)) - 1, 0), min(int(np.ceil(cx + h)) + 1, size)
        y0, y1 = max(int(np.floor(cy - h)) - 1, 0), min(int(np.ceil(cy + h)) + 1, size)
        cov = _coverage(s.shape, cx, cy, h, x0, y0, x1 - x0, y1 - y0)[..., None]
        window = canvas[y0:y1, x0:x1]
        window += cov * (np.array(PALETTE[s.color], dtype=np.float64) - window)
    return np.rint(canvas).astype(np.uint8)


def render(scene: Scene, size: int, rng: np.random.Generator | None = None) -> Image.Image:
    """Draw ``scene`` as an anti-aliased ``size x size`` RGB image (jittered when ``rng`` is given)."""
    return Image.fromarray(_render_array(scene, size, rng), mode="RGB")


# --------------------------------------------------------------------------------------
# Caption grammar
# --------------------------------------------------------------------------------------

#: Words for each size; the first is the canonical one.
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
#: Phrases for each position; the first is the canonical one.
POSITION_PHRASES = {
    "left": ("on the left", "to the left", "at the left", "on the left side"),
    "right": ("on the right", "to the right", "at the right", "on the right side"),
    "top": ("at the top", "on top", "near the top"),
    "bottom": ("at the bottom", "on the bottom", "near the bottom"),
    "center": ("in the middle", "in the center", "in the centre", "at the center"),
}
#: Sentence templates by number of shapes; ``{s1}``/``{s2}`` are "a <size> <colour> <shape>
#: <position>" phrases and ``{bg}`` the background colour. The first one is canonical.
TEMPLATES = {
    1: (
        "{s1} on a {bg} background",
        "{s1} against a {bg} background",
        "{bg} background with {s1}",
        "a {bg} background with {s1}",
        "{s1}, {bg} background",
        "there is {s1} on a {bg} background",
        "on a {bg} background, {s1}",
        "a picture of {s1} on a {bg} background",
    ),
    2: (
        "{s1} and {s2} on a {bg} background",
        "{s1} and {s2} against a {bg} background",
        "{bg} background with {s1} and {s2}",
        "a {bg} background with {s1} and {s2}",
        "{s1}, {s2}, {bg} background",
        "there is {s1} and {s2} on a {bg} background",
        "on a {bg} background, {s1} and {s2}",
        "{s1} with {s2} on a {bg} background",
    ),
}


def _pick(options, rng):
    return options[0] if rng is None else options[rng.integers(len(options))]


def _shape_phrase(s: Shape, rng) -> str:
    return f"a {_pick(SIZE_WORDS[s.size], rng)} {s.color} {s.shape} {_pick(POSITION_PHRASES[s.position], rng)}"


def caption(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """Describe ``scene`` in English, naming every attribute of every shape and the background.

    With ``rng`` the template, the synonyms and the order the shapes are mentioned in are
    random; without it the canonical template and words are used, in the scene's order.
    """
    shapes = list(scene.shapes)
    if rng is not None and len(shapes) == 2 and rng.integers(2):
        shapes.reverse()
    template = _pick(TEMPLATES[len(shapes)], rng)
    phrases = {f"s{i + 1}": _shape_phrase(s, rng) for i, s in enumerate(shapes)}
    return template.format(bg=scene.background, **phrases)


def _alternation(words) -> str:
    # Longest first, so that e.g. "on the left side" is preferred over "on the left".
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[,.;:!]", " ", text.lower()).split())


def _compile_templates():
    size = _alternation(w for ws in SIZE_WORDS.values() for w in ws)
    color = _alternation(PALETTE)
    shape = _alternation(SHAPES)
    position = _alternation(p for ps in POSITION_PHRASES.values() for p in ps)
    compiled = []
    for templates in TEMPLATES.values():
        for template in templates:
            pattern = re.escape(_normalise(template))
            pattern = pattern.replace(re.escape("{bg}"), f"(?P<bg>{color})")
            for i in (1, 2):
                pattern = pattern.replace(
                    re.escape(f"{{s{i}}}"),
                    f"a (?P<size{i}>{size}) (?P<color{i}>{color}) (?P<shape{i}>{shape}) "
                    f"(?P<position{i}>{position})")
            compiled.append(re.compile(pattern))
    return compiled


_TEMPLATE_PATTERNS = _compile_templates()
_SIZE_OF_WORD = {w: size for size, ws in SIZE_WORDS.items() for w in ws}
_POSITION_OF_PHRASE = {p: pos for pos, ps in POSITION_PHRASES.items() for p in ps}


def parse_caption(text: str) -> Scene | None:
    """Read a caption of the grammar back into a Scene (case and punctuation are ignored).

    Returns None when ``text`` is not a sentence of the grammar or describes an invalid scene.
    """
    text = _normalise(text)
    for pattern in _TEMPLATE_PATTERNS:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        groups = match.groupdict()
        shapes = tuple(
            Shape(shape=groups[f"shape{i}"], color=groups[f"color{i}"],
                  position=_POSITION_OF_PHRASE[groups[f"position{i}"]],
                  size=_SIZE_OF_WORD[groups[f"size{i}"]])
            for i in (1, 2) if f"shape{i}" in groups)
        scene = Scene(background=groups["bg"], shapes=shapes)
        return scene if is_valid(scene) else None
    return None


# --------------------------------------------------------------------------------------
# The checker
# --------------------------------------------------------------------------------------

#: Connected regions smaller than this fraction of the image are specks, not shapes.
MIN_AREA_FRACTION = 0.015
#: Pixels farther than this (RGB distance) from every background-to-colour blend are
#: explained by no colour of the scene and belong to no shape.
MAX_RESIDUAL = 64.0
#: Edge softness (Gaussian sigma in pixels) the shape templates are tried with: generated
#: images have soft edges, and a blurred square otherwise matches a sharp circle best.
TEMPLATE_BLURS = (0.0, 0.5, 1.0)
#: Largest template mismatch (sum of absolute coverage differences over the region's area)
#: of a shape. Rendered shapes stay below about 0.5 even with strong noise and blur, while a
#: strip of blended pixels between two shapes, or a ring around one, scores above 1.
MAX_FIT_ERROR = 0.75
#: Half-width threshold between small (at most 0.15) and large (at least 0.20).
SIZE_THRESHOLD = 0.175
#: Regions of one shape colour from this fraction of the image up that are read as no shape are
#: stray blobs (at 32 px: 4 pixels); smaller ones are noise.
STRAY_AREA_FRACTION = 0.004
#: Largest fraction of off-palette pixels (explained by no background blend, see ``MAX_RESIDUAL``)
#: a clean image may hold: at 32 px, 10 pixels. Renders hold none, even with noise and blur.
MAX_OFF_PALETTE = 0.01


def _as_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {array.shape}")
    if min(array.shape[:2]) < 16:
        raise ValueError(f"image too small to check: {array.shape[:2]}")
    return array.astype(np.float64)


def _nearest_color(pixels: np.ndarray) -> np.ndarray:
    return np.argmin(((pixels[..., None, :] - _COLORS) ** 2).sum(-1), axis=-1)


def _background(pixels: np.ndarray) -> int:
    """The most common palette colour on the image border (ties go to the earlier colour)."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    return int(np.argmax(np.bincount(_nearest_color(border), minlength=len(_COLORS))))


def _fit_blends(pixels: np.ndarray, bg: int):
    """Fit each pixel as a blend ``bg + a * (c - bg)`` of the background with each colour c.

    Returns ``(alpha, residual)``, both [colours, H, W]: the coverage ``a`` in [0, 1] and the
    RGB distance left unexplained (infinite for the background itself).
    """
    base = _COLORS[bg]
    offset = pixels - base
    directions = _COLORS - base  # [colours, 3]; the background's own row is zero
    norms = (directions ** 2).sum(-1)
    norms[bg] = 1.0
    alpha = np.clip(np.einsum("hwk,ck->chw", offset, directions) / norms[:, None, None], 0.0, 1.0)
    residual = np.linalg.norm(offset[None] - alpha[..., None] * directions[:, None, None, :], axis=-1)
    residual[bg] = np.inf
    return alpha, residual


def _labels(pixels: np.ndarray, bg: int) -> np.ndarray:
    """Which colour each pixel shows: the blend explaining it best, if its coverage is >= 1/2.

    Anti-aliased and blurred edges are exactly background blends, and a blend of two colours
    can be nearer to a third palette colour than to either (red over yellow looks orange), so
    plain nearest-colour labels would draw spurious rings around shapes; this does not.
    Background pixels get ``bg`` and pixels no blend explains get -1.
    """
    alpha, residual = _fit_blends(pixels, bg)
    best = np.argmin(residual, axis=0)
    best_alpha = np.take_along_axis(alpha, best[None], axis=0)[0]
    label = np.where(best_alpha >= 0.5, best, bg)
    label[np.min(residual, axis=0) > MAX_RESIDUAL] = -1
    return label


def _smooth(pixels: np.ndarray) -> np.ndarray:
    """Filter with the separable [1, 2, 1] / 4 kernel (edges replicated)."""
    padded = np.pad(pixels, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4
    return (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4


def _neighbours(mask: np.ndarray, fill, offsets):
    """The arrays of ``mask`` shifted by each (dy, dx) in ``offsets``, padded with ``fill``."""
    height, width = mask.shape
    padded = np.pad(mask, 1, constant_values=fill)
    return [padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width] for dy, dx in offsets]


_SQUARE = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """The 8-connected components of a boolean mask, as boolean masks."""
    height, width = mask.shape
    none = height * width
    index = np.arange(none).reshape(height, width)
    labels = np.where(mask, index, none)
    while True:
        # Each pixel takes the smallest label around it, then jumps to the label its label
        # points at (labels are pixel indices of the same component), which converges in a
        # few rounds even for long components.
        smallest = np.minimum.reduce(_neighbours(labels, none, _SQUARE))
        smallest = np.where(mask, smallest, none)
        flat = np.append(smallest.reshape(-1), none)
        smallest = flat[smallest]
        if np.array_equal(smallest, labels):
            break
        labels = smallest
    return [labels == root for root in np.unique(labels[mask])]


def _dilate(mask: np.ndarray) -> np.ndarray:
    return np.logical_or.reduce(_neighbours(mask, False, _SQUARE))


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a 2-D array (zero outside it); sigma in pixels, 0 for none."""
    if sigma == 0:
        return image
    radius = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    height, width = image.shape
    padded = np.pad(image, radius)
    rows = sum(k * padded[i:i + height] for i, k in enumerate(kernel))
    return sum(k * rows[:, i:i + width] for i, k in enumerate(kernel))


def _read_shape(weights: np.ndarray, color: str, height: int, width: int):
    """Name the shape whose coverage map is ``weights`` by matching rasterised templates.

    For each candidate shape the template is sized to the measured area, placed on the
    measured centroid and softened by each of ``TEMPLATE_BLURS``; the one differing least
    from the observation wins. Its half-width gives the size and its box centre the
    position. Returns ``(Shape, (cx, cy, h))`` with the geometry in fractions of the side, or
    None when even the best template misses by more than ``MAX_FIT_ERROR``: a thin fringe or
    smear is no shape.
    """
    area = weights.sum()
    ys, xs = np.nonzero(weights)
    mx = (weights[ys, xs] * (xs + 0.5)).sum() / area
    my = (weights[ys, xs] * (ys + 0.5)).sum() / area
    # Window around the region, with room for a template that is wider than the region.
    margin = 2 + int(np.sqrt(area) / 2)
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + 1 + margin, width)
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + 1 + margin, height)
    observed = weights[y0:y1, x0:x1]
    best = None
    for shape in SHAPES:
        # Area of each template in terms of its half-width h: pi h^2, 4 h^2, 2 h^2.
        h = float(np.sqrt(area / {"circle": np.pi, "square": 4.0, "triangle": 2.0}[shape]))
        cy = my - h / 3 if shape == "triangle" else my  # centroid -> box centre
        template = _coverage(shape, mx, cy, h, x0, y0, x1 - x0, y1 - y0)
        for sigma in TEMPLATE_BLURS:
            error = np.abs(observed - _blur(template, sigma)).sum()
            if best is None or error < best[0]:
                best = (error, shape, mx, cy, h)
    error, shape, cx, cy, h = best
    if error > MAX_FIT_ERROR * area:
        return None
    side = np.sqrt(width * height)
    fx, fy = cx / width, cy / height
    position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - fx) ** 2 + (POSITIONS[p][1] - fy) ** 2)
    size = "small" if h / side < SIZE_THRESHOLD else "large"
    return Shape(shape=shape, color=color, position=position, size=size), (float(fx), float(fy), float(h / side))


@dataclass(frozen=True)
class Reading:
    """Everything the checker reads from an image (see :func:`read`).

    ``shapes`` are in the order found and ``geometry`` holds each one's ``(cx, cy, h)`` in
    fractions of the side, as :func:`layout` gives them for a render. ``stray_blobs`` counts the
    regions of a shape colour too big to be specks that fit no shape template, and
    ``off_palette`` is the fraction of pixels that no blend of the background with one palette
    colour explains. A clean image has neither (see ``MAX_OFF_PALETTE``).
    """

    background: str
    shapes: tuple[Shape, ...]
    geometry: tuple[tuple[float, float, float], ...]
    stray_blobs: int
    off_palette: float

    @property
    def clean(self) -> bool:
        return self.stray_blobs == 0 and self.off_palette <= MAX_OFF_PALETTE

    def scene(self) -> Scene | None:
        """The scene seen, or None when no shape or more than two were found."""
        return Scene(self.background, self.shapes) if 1 <= len(self.shapes) <= 2 else None

    def render(self, size: int) -> Image.Image:
        """A clean render of exactly what was read: its background, shapes and geometry."""
        return Image.fromarray(_paint(self.background, zip(self.shapes, self.geometry), size), mode="RGB")


def read(image) -> Reading:
    """Read an image: background, shapes with their geometry, stray blobs and off-palette pixels.

    ``image`` is a PIL image or an HxWx3 uint8 array, at least 16 px on each side. Steps:
    the background is the most common palette colour on the border; every pixel is
    explained as a blend of the background and one palette colour (see ``_labels``); each
    8-connected region of one colour that covers at least ``MIN_AREA_FRACTION`` of the image
    is read by template matching (see ``_read_shape``), which names its shape, size and
    position, or rejects it as a stray blob when it looks like none of the shapes. Regions
    between ``STRAY_AREA_FRACTION`` and ``MIN_AREA_FRACTION`` are stray blobs too: too small
    for a shape of the domain (the smallest, a small triangle, covers 3.4% of the image), too big
    for noise.
    """
    pixels = _as_array(image)
    height, width = pixels.shape[:2]
    bg = _background(pixels)
    # Labels come from a lightly smoothed copy: yellow, orange and red lie almost on one line
    # in RGB, so on a noisy pixel "orange" and "half yellow over red" are hard to tell apart,
    # but averaging with the neighbours settles it. Coverage is read from the raw pixels.
    label = _labels(_smooth(pixels), bg)
    alpha, _ = _fit_blends(pixels, bg)
    min_area = MIN_AREA_FRACTION * height * width
    stray_area = STRAY_AREA_FRACTION * height * width
    found, stray = [], 0
    for color in range(len(_COLORS)):
        if color == bg:
            continue
        for region in _components(label == color):
            # The coverage of this colour over the region and its soft edge (two pixels of
            # background around it), which is what the region's area and geometry are read from.
            edge = _dilate(_dilate(region)) & (label == bg)
            weights = np.where(region | edge, alpha[color], 0.0)
            if weights.sum() < stray_area:
                continue
            shape = _read_shape(weights, _COLOR_NAMES[color], height, width) if weights.sum() >= min_area else None
            if shape is None:
                stray += 1
            else:
                found.append(shape)
    return Reading(background=_COLOR_NAMES[bg], shapes=tuple(s for s, _ in found),
                   geometry=tuple(g for _, g in found), stray_blobs=stray, off_palette=float(np.mean(label == -1)))


def check(image) -> Scene | None:
    """Read the scene an image shows (see :func:`read`): the checker used to judge generated samples.

    Returns None when no shape or more than two are found. Otherwise the Scene reports what
    is seen even if it breaks the domain's rules (e.g. two shapes side by side at "left" and
    "center"), so that :func:`matches` can still judge each attribute; see :func:`is_valid`.
    Stray blobs and off-palette pixels are not part of a Scene: :func:`matches` judges them.
    """
    return read(image).scene()


_ATTRIBUTES = ("shape", "color", "position", "size")


def matches(image, scene: Scene) -> dict:
    """Judge ``image`` against the description ``scene``, attribute by attribute.

    Returns ``{"background": bool, "count": bool, "clean": bool, "shapes": [...], "all": bool}``
    where ``clean`` says the image holds no stray blob and at most ``MAX_OFF_PALETTE`` of
    off-palette pixels (garbage beside a correct scene fails it), and ``shapes`` holds, for
    each shape of ``scene`` (in its order), a dict of verdicts for "shape", "color",
    "position" and "size". Shapes are paired with the shapes seen by colour first (the shapes
    of a scene have distinct colours, so "the red one is at the wrong place" is the natural
    reading), then by the most agreeing attributes; the order they are listed in is
    irrelevant. A described shape left without a partner gets all False.
    """
    reading = read(image)
    seen = reading.scene()
    seen_shapes = list(seen.shapes) if seen is not None else []
    wanted = list(scene.shapes)
    # Pad with None so every wanted shape has a partner (possibly none) in each permutation.
    candidates = seen_shapes + [None] * max(len(wanted) - len(seen_shapes), 0)

    def verdicts(want, got):
        return {a: got is not None and getattr(want, a) == getattr(got, a) for a in _ATTRIBUTES}

    best = None
    for pairing in permutations(candidates, len(wanted)):
        result = [verdicts(w, g) for w, g in zip(wanted, pairing)]
        score = (sum(v["color"] for v in result), sum(sum(v.values()) for v in result))
        if best is None or score > best[0]:
            best = (score, result)
    shape_verdicts = best[1]
    background = seen is not None and seen.background == scene.background
    count = len(seen_shapes) == len(wanted)
    return {
        "background": background,
        "count": count,
        "clean": reading.clean,
        "shapes": shape_verdicts,
        "all": background and count and reading.clean and all(all(v.values()) for v in shape_verdicts),
    }


# --------------------------------------------------------------------------------------
# Training data
# --------------------------------------------------------------------------------------

def sample_batch(rng: np.random.Generator, n: int, size: int):
    """``n`` random training examples: (uint8 images [n, size, size, 3], captions, scenes)."""
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    captions, scenes = [], []
    for i in range(n):
        scene = random_scene(rng)
        images[i] = _render_array(scene, size, rng)
        captions.append(caption(scene, rng))
        scenes.append(scene)
    return images, captions, scenes


def images_to_tensor(images: np.ndarray):
    """uint8 images [n, h, w, 3] -> float32 torch tensor [n, 3, h, w] in [-1, 1] (model input)."""
    import torch  # lazily: the domain itself needs only numpy and PIL

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def tensor_to_images(tensor) -> np.ndarray:
    """Model output [n, 3, h, w] in [-1, 1] -> uint8 images [n, h, w, 3], e.g. to :func:`check`."""
    array = tensor.detach().float().cpu().clamp(-1, 1).permute(0, 2, 3, 1).numpy()
    return np.rint((array + 1.0) * 127.5).astype(np.uint8)
