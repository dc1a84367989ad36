"""The inpainting tab's mask painter: a canvas of our own (gr.HTML and demo/painter.js), not gr.ImageMask.

gradio 6.31's ImageEditor loses strokes: on an editor mounted again for the next edit a mouse drag often
never reaches its layer, and a second value set into a shown editor can stay on its spinner
(shared notes on gr.ImageMask; tests/test_browser.py paints as a person does and fails on a lost stroke).
This painter keeps the mask itself, at the image's resolution, and draws it in whole pixels.

Its value, both ways, is a dict: `id` (a new one for every image set, so that setting the same picture
again still starts afresh), `image` (a PNG data URL), `base` (the model's base side: the brush size is in
its pixels) and `mask` (a PNG data URL whose opaque pixels are the region to replace, or None). The server
sets `id`, `image` and `base` (`painter_value`); the page adds `mask` after every stroke, so an event that
takes the painter as an input gets the mask exactly as painted (demo.imaging.painting_to_image_and_mask).
"""
import base64
import io
import uuid
from pathlib import Path
from typing import Optional

import gradio as gr
from PIL import Image

HERE = Path(__file__).resolve().parent

TEMPLATE = """
<div class="painter" data-ready="false" data-height="${height}">
  <div class="painter-bar">
    <span class="painter-tools" role="group" aria-label="Tool">
      <button type="button" data-tool="brush" aria-pressed="true" title="Paint the region to replace">Brush</button>
      <button type="button" data-tool="rect" aria-pressed="false" title="Drag a rectangle">Rectangle</button>
      <button type="button" data-tool="fill" aria-pressed="false"
              title="Click a shape (or the background): all of its colour that touches is marked">Fill</button>
    </span>
    <label class="painter-size-label">Brush
      <input class="painter-size" type="range" min="1" max="8" step="1" value="${brush}" aria-label="Brush size">
      <span class="painter-size-text"></span>
    </label>
    <span class="painter-actions">
      <button type="button" class="painter-undo" disabled>Undo</button>
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
    return {"id": uuid.uuid4().hex, "image": data_url(buffer.getvalue()), "base": base_side, "mask": None}


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def with_base(value: Optional[dict], base_side: int) -> dict:
    """The painter's value with another model's base side (the page keeps the image and its mask)."""
    return {**(value or {"id": None, "image": None, "mask": None}), "base": base_side}


def mask_painter(base_side: int, brush: int = 3, height: int = 420, **kwargs) -> gr.HTML:
    """The painter: Brush, Rectangle and Fill tools, a brush sized in the model's pixels (`brush` of them
    across), Undo, Clear and Upload, on a canvas `height` px high.

    A configured gr.HTML rather than a subclass: gradio writes a .pyi stub beside the module of every
    component subclass it meets."""
    return gr.HTML(value={"id": None, "image": None, "base": base_side, "mask": None}, html_template=TEMPLATE,
                   css_template=(HERE / "painter.css").read_text(), js_on_load=(HERE / "painter.js").read_text(),
                   apply_default_css=False, brush=brush, height=height, **kwargs)
