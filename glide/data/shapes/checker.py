"""The checker: reads a picture back into a scene (shapes, colours, positions, sizes) to judge samples."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np
from PIL import Image

from .render import coverage, paint
from .scene import COLOR_NAMES, COLOR_VALUES, POSITIONS, SHAPES, Scene, Shape

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
    return np.argmin(((pixels[..., None, :] - COLOR_VALUES) ** 2).sum(-1), axis=-1)


def _background(pixels: np.ndarray) -> int:
    """The most common palette colour on the image border (ties go to the earlier colour)."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    return int(np.argmax(np.bincount(_nearest_color(border), minlength=len(COLOR_VALUES))))


def _fit_blends(pixels: np.ndarray, bg: int):
    """Fit each pixel as a blend ``bg + a * (c - bg)`` of the background with each colour c.

    Returns ``(alpha, residual)``, both [colours, H, W]: the coverage ``a`` in [0, 1] and the
    RGB distance left unexplained (infinite for the background itself).
    """
    base = COLOR_VALUES[bg]
    offset = pixels - base
    directions = COLOR_VALUES - base  # [colours, 3]; the background's own row is zero
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
        template = coverage(shape, mx, cy, h, x0, y0, x1 - x0, y1 - y0)
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
        return Image.fromarray(paint(self.background, zip(self.shapes, self.geometry), size), mode="RGB")


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
    for color in range(len(COLOR_VALUES)):
        if color == bg:
            continue
        for region in _components(label == color):
            # The coverage of this colour over the region and its soft edge (two pixels of
            # background around it), which is what the region's area and geometry are read from.
            edge = _dilate(_dilate(region)) & (label == bg)
            weights = np.where(region | edge, alpha[color], 0.0)
            if weights.sum() < stray_area:
                continue
            shape = _read_shape(weights, COLOR_NAMES[color], height, width) if weights.sum() >= min_area else None
            if shape is None:
                stray += 1
            else:
                found.append(shape)
    return Reading(background=COLOR_NAMES[bg], shapes=tuple(s for s, _ in found),
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
