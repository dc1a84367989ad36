"""The inpainting tab's mask painter: a canvas of our own (gr.HTML and demo/painter.js), not gr.ImageMask.

gradio 6.31's ImageEditor loses strokes: on an editor mounted again for the next edit a mouse drag often
never reaches its layer, and a second value set into a shown editor can stay on its spinner
(shared notes on gr.ImageMask; tests/test_browser.py paints as a person does and fails on a lost stroke).
This painter keeps the mask itself, at the image's resolution, and draws it in whole pixels.

Its value, both ways, is a dict: `id` (a new one for every image set, so that setting the same picture
again still starts afresh), `image` (a PNG data URL), `base` (the model's base side: the brush size is in
its pixels), `grow` ("Grow the mask" in model pixels, which the page shows around the mask; a value without
it keeps the one shown), `mask` (a PNG data URL whose opaque pixels are the region to replace, or None) and
`sketch` (a PNG data URL of the colour strokes, opaque where painted, or None). The server sets `id`, `image`
and `base` (`painter_value`), and `base` and `grow` when they change (`with_settings`); the page adds `mask`
and `sketch` after every stroke, so an event that takes the painter as an input gets them exactly as painted
(demo.imaging.painting_to_image_and_mask).

What the page shows is what the model edits: the mask and what growing adds, and on a picture that is not
square the square of it the model works on (glide.images.EditWindow); the result is the whole picture.

The Colour brush paints a sketch: its strokes are drawn into the picture and are part of the region to
replace, so an edit with a strength below 1 starts from them (SDEdit) and keeps their colour and layout.
"""
import base64
import io
import uuid
from pathlib import Path
from typing import Dict, Optional, Tuple

import gradio as gr
from PIL import Image

HERE = Path(__file__).resolve().parent

TEMPLATE = """
<div class="painter" data-ready="false" data-height="${height}">
  <div class="painter-bar">
    <span class="painter-tools" role="group" aria-label="Tool">
      <button type="button" data-tool="brush" aria-pressed="true" title="Paint the region to replace">Brush</button>
      <button type="button" data-tool="colour" aria-pressed="false"
              title="Paint colour strokes: a rough sketch of what goes there (also the region to replace)">Colour</button>
      <button type="button" data-tool="rect" aria-pressed="false" title="Drag a rectangle">Rectangle</button>
      <button type="button" data-tool="fill" aria-pressed="false"
              title="Click a shape (or the background): all of its colour that touches is marked">Fill</button>
    </span>
    <span class="painter-colours" role="group" aria-label="Colour">
      <input class="painter-colour" type="color" value="${colour}" aria-label="Brush colour">
      <span class="painter-swatches" data-palette="${palette}"></span>
    </span>
    <label class="painter-size-label" title="Keys: [ smaller, ] larger">Brush
      <input class="painter-size" type="range" min="1" max="8" step="1" value="${brush}" aria-label="Brush size">
      <span class="painter-size-text"></span>
    </label>
    <span class="painter-actions">
      <button type="button" class="painter-undo" title="Ctrl+Z (Cmd+Z)" disabled>Undo</button>
      <button type="button" class="painter-clear" disabled>Clear</button>
      <label class="painter-upload" title="Or drop an image on the canvas">Upload…
        <input class="painter-file" type="file" accept="image/png,image/jpeg,image/webp" hidden>
      </label>
    </span>
  </div>
  <div class="painter-stage painter-empty" style="min-height: ${height}px">
    <canvas class="painter-view" aria-label="The image: paint over the region to replace"></canvas>
  </div>
  <div class="painter-status" role="status" aria-live="polite"></div>
</div>
"""


def painter_value(image, base_side: int) -> dict:
    """A painter value showing `image` (a path or PIL image) with an empty mask."""
    if not isinstance(image, Image.Image):
        image = Image.open(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"id": uuid.uuid4().hex, "image": data_url(buffer.getvalue()), "base": base_side, "mask": None,
            "sketch": None}


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def with_settings(value: Optional[dict], **settings) -> dict:
    """The painter's value with other `base` or `grow` (the page keeps the image and its mask)."""
    return {**(value or {"id": None, "image": None, "mask": None, "sketch": None}), **settings}


def mask_painter(base_side: int, palette: Dict[str, Tuple[int, int, int]], brush: int = 3, height: int = 420,
                 **kwargs) -> gr.HTML:
    """The painter: Brush, Colour, Rectangle and Fill tools, a brush sized in the model's pixels (`brush` of them
    across), a colour picker with `palette`'s swatches (name: RGB; the shapes family's colours), Undo, Clear and
    Upload, on a canvas `height` px high.

    A configured gr.HTML rather than a subclass: gradio writes a .pyi stub beside the module of every
    component subclass it meets."""
    swatches = ",".join(f"{name}:#{r:02x}{g:02x}{b:02x}" for name, (r, g, b) in palette.items())
    first = swatches.split(":")[1].split(",")[0] if swatches else "#e6c619"
    return gr.HTML(value={"id": None, "image": None, "base": base_side, "mask": None, "sketch": None},
                   html_template=TEMPLATE, css_template=(HERE / "painter.css").read_text(),
                   js_on_load=(HERE / "painter.js").read_text(), apply_default_css=False, brush=brush, height=height,
                   palette=swatches, colour=first, **kwargs)
