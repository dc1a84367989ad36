"""Image chores of the demo: reading uploads safely, the painted mask, previews and grids.

Only PIL work lives here; everything that touches a model goes through glide.pipeline.
"""
import base64
import io
import math
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from glide.errors import InputError
from glide.fileio import human_bytes
from glide.images import tensor_to_pil

DISPLAY_SIZE = 256  # previews of 32 px samples are scaled up to this, pixel-exact (nearest)
# The largest file a user may send: gradio's max_file_size for uploads (demo.app), and the same for the
# pictures the mask painter sends inside its value as data URLs, which gradio's limit does not see.
MAX_UPLOAD_BYTES = 25 * 10 ** 6


def open_upload(path, what: str = "image", max_side: int = 4096) -> Image.Image:
    """A user-supplied file as a loaded PIL image, or an InputError saying what is wrong with it. Its size is
    checked from its header, before any pixel is decoded: a small file may unpack to gigabytes."""
    if path is None:
        raise InputError(f"give an {what}: upload a PNG or JPEG file")
    if isinstance(path, Image.Image):
        return check_size(path, what, max_side)
    try:
        image = Image.open(path)
    except Image.DecompressionBombError:
        raise InputError(f"the {what} has more pixels than a picture of at most {max_side} pixels a side can "
                         "have: give a smaller one") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InputError(f"the {what} could not be read as a picture: upload a PNG, JPEG or WebP file") from None
    check_size(image, what, max_side)
    try:
        image.load()
    except (OSError, ValueError):
        raise InputError(f"the {what} could not be read as a picture: upload a PNG, JPEG or WebP file") from None
    return image


def check_size(image: Image.Image, what: str, max_side: int) -> Image.Image:
    w, h = image.size
    if max(w, h) > max_side:
        raise InputError(f"the {what} is {w}x{h} pixels; give one of at most {max_side} pixels a side")
    if min(w, h) < 8:
        raise InputError(f"the {what} is only {w}x{h} pixels; give one of at least 8x8")
    return image


def painting_to_image_and_mask(value, max_side: int = 4096) -> Tuple[Image.Image, Image.Image]:
    """The mask painter's value (demo.painter: the image and the painted mask as PNG data URLs) -> (RGB image,
    L mask), the mask white where pixels were painted (opaque in the painter's mask), exactly as painted."""
    if not value or not value.get("image"):
        raise InputError("upload an image to edit (or send one from Text to image), then paint the region to replace")
    image = flatten(decode_data_url(value["image"], "image", max_side))
    if value.get("sketch"):   # the Colour brush's strokes become part of the picture the edit starts from
        sketch = decode_data_url(value["sketch"], "sketch", max_side).convert("RGBA")
        if sketch.size != image.size:
            raise InputError(f"the sketch is {sketch.width}x{sketch.height} but the image is {image.width}x"
                             f"{image.height}: paint it again on this image")
        image.paste(sketch.convert("RGB"), mask=sketch.getchannel("A"))
    if not value.get("mask"):
        raise InputError("the mask is empty: paint over the region to replace (Brush, Rectangle or Fill)")
    painted = decode_data_url(value["mask"], "mask", max_side).convert("RGBA").getchannel("A")
    if painted.size != image.size:
        raise InputError(f"the mask is {painted.width}x{painted.height} but the image is {image.width}x{image.height}: "
                         "paint the mask again on this image")
    mask = painted.point(lambda a: 255 if a > 0 else 0)
    if mask.getbbox() is None:
        raise InputError("the mask is empty: paint over the region to replace (Brush, Rectangle or Fill)")
    return image, mask


def decode_data_url(url, what: str, max_side: int, max_bytes: int = MAX_UPLOAD_BYTES) -> Image.Image:
    """A data URL the page sent (data:image/...;base64,...) as a loaded PIL image, or an InputError; one whose
    file would exceed `max_bytes` is refused before it is decoded."""
    header, _, payload = str(url).partition(",")
    if not (header.startswith("data:image/") and header.endswith(";base64")):
        raise InputError(f"the {what} did not arrive as an image: load it again")
    if len(payload) * 3 // 4 > max_bytes:     # base64: 4 characters for every 3 bytes
        raise InputError(f"the {what} is a file of about {human_bytes(len(payload) * 3 // 4)}; give one of at most "
                         f"{human_bytes(max_bytes)}")
    try:
        data = base64.b64decode(payload, validate=True)
    except ValueError:
        raise InputError(f"the {what} arrived damaged: load it again") from None
    return open_upload(io.BytesIO(data), what, max_side)


def flatten(image: Image.Image) -> Image.Image:
    """RGB, transparent parts of an uploaded picture white rather than arbitrary colours."""
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert("RGB")


def grow_mask(mask: Image.Image, base_pixels: int, base_side: int) -> Image.Image:
    """The mask grown by `base_pixels` pixels of the model's resolution in every direction (a square's
    reach), so that a region painted tight against a shape also takes its soft edge."""
    if not base_pixels:
        return mask
    # One base pixel in mask pixels: the model works on a square of the short side (glide.images.EditWindow)
    # at base_side. Rounded half up, as the painter's preview of the grown mask rounds (demo/painter.js).
    reach = max(1, math.floor(base_pixels * min(mask.size) / base_side + 0.5))
    painted = np.asarray(mask) > 127
    # Any painted pixel within `reach` in x and in y: a window sum over an integral image, linear in the size.
    sums = np.pad(painted, ((1, 0), (1, 0))).cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)
    h, w = painted.shape
    y0, y1 = np.clip(np.arange(h) - reach, 0, h), np.clip(np.arange(h) + reach + 1, 0, h)
    x0, x1 = np.clip(np.arange(w) - reach, 0, w), np.clip(np.arange(w) + reach + 1, 0, w)
    window = sums[y1][:, x1] - sums[y0][:, x1] - sums[y1][:, x0] + sums[y0][:, x0]
    return Image.fromarray(((window > 0) * 255).astype(np.uint8), "L")


def upscale(image: Image.Image, size: int = DISPLAY_SIZE) -> Image.Image:
    """Scale a small image up pixel-exactly (nearest) so its pixels are visible, not blurred."""
    if image.width >= size:
        return image
    factor = max(1, size // image.width)
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def tile(images: Sequence[Image.Image], columns: int = 4, gap: int = 4) -> Image.Image:
    """Images of one size side by side, in rows of `columns`."""
    columns = max(1, min(columns, len(images)))
    rows = (len(images) + columns - 1) // columns
    w, h = images[0].size
    sheet = Image.new("RGB", (columns * w + (columns - 1) * gap, rows * h + (rows - 1) * gap), (255, 255, 255))
    for i, im in enumerate(images):
        sheet.paste(im, ((i % columns) * (w + gap), (i // columns) * (h + gap)))
    return sheet


def preview_image(x0) -> Optional[Image.Image]:
    """A live-preview picture of an x0 prediction [N, 3, S, S]: the batch tiled, scaled up for display."""
    if x0 is None or len(x0) == 0:
        return None
    return tile([upscale(im) for im in tensor_to_pil(x0.clamp(-1, 1))])
