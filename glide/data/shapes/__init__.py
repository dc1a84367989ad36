"""The procedural "shapes" domain: scenes, renderer, caption grammar and an automatic checker.

One idea per module: `scene` (attributes, rules, random scenes, geometry), `render`, `captions`
(the grammar, both ways), `checker` (reading a picture back) and `batches` (training examples).
The package exports what users of the domain need, so `from glide.data import shapes` is enough.

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
from .batches import images_to_tensor, sample_batch, tensor_to_images
from .captions import POSITION_PHRASES, SIZE_WORDS, TEMPLATES, caption, parse_caption
from .checker import MAX_OFF_PALETTE, Reading, check, matches, read
from .render import render
from .scene import (
    JITTER,
    MIN_GAP,
    OPPOSITE_PAIRS,
    PALETTE,
    POSITIONS,
    SHAPES,
    SIZE_RANGES,
    SIZES,
    Scene,
    Shape,
    is_valid,
    layout,
    random_scene,
)

__all__ = ["JITTER", "MAX_OFF_PALETTE", "MIN_GAP",
           "OPPOSITE_PAIRS", "PALETTE", "POSITIONS", "POSITION_PHRASES", "Reading", "SHAPES", "SIZES", "SIZE_RANGES",
           "SIZE_WORDS", "Scene", "Shape", "TEMPLATES", "caption", "check", "images_to_tensor", "is_valid", "layout",
           "matches", "parse_caption", "random_scene", "read", "render", "sample_batch", "tensor_to_images"]
