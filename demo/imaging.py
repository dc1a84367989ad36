"""Image chores of the demo: reading uploads safely, the editor's layers as a mask, previews and grids.

Only PIL work lives here; everything that touches a model goes through glide.pipeline.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from glide.errors import InputError
from glide.images import check_mask_fits, tensor_to_pil

DISPLAY_SIZE = 256  # previews of 32 px samples are scaled up to this, pixel-exact (nearest)


def open_upload(path, what: str = "image", max_side: int = 4096) -> Image.Image:
    """A user-supplied file as a loaded PIL image, or an InputError saying what is wrong with it."""
    if path is None:
        raise InputError(f"give an {what}: upload a PNG or JPEG file")
    if isinstance(path, Image.Image):
        image = path
    else:
        try:
            image = Image.open(path)
            image.load()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
            raise InputError(f"the {what} could not be read as a picture: upload a PNG, JPEG or WebP file") from None
    return check_size(image, what, max_side)


def check_size(image: Image.Image, what: str, max_side: int) -> Image.Image:
    w, h = image.size
    if max(w, h) > max_side:
        raise InputError(f"the {what} is {w}x{h} pixels; give one of at most {max_side} pixels a side")
    if min(w, h) < 8:
        raise InputError(f"the {what} is only {w}x{h} pixels; give one of at least 8x8")
    return image


def editor_to_image_and_mask(value, max_side: int = 4096) -> Tuple[Image.Image, Image.Image]:
    """gr.ImageEditor / gr.ImageMask value (background, layers, composite; type="pil") -> (RGB image, L mask).

    Every painted pixel of any layer (alpha > 0) is part of the region to replace (white in the
    mask), whatever brush colour was used, so a light stroke counts as much as a dark one.
    """
    if not value:
        raise InputError("upload an image to edit, then paint the region to replace")
    background = value.get("background")
    if background is None:
        background = value.get("composite")
    if background is None:
        raise InputError("upload an image to edit first, then paint the region to replace")
    image = check_size(background, "image", max_side)
    if image.mode in ("RGBA", "LA", "P"):
        # Transparent parts of an uploaded picture become white rather than arbitrary colours.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    image = image.convert("RGB")
    painted = np.zeros((image.height, image.width), dtype=bool)
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        alpha = layer.convert("RGBA").getchannel("A")
        if alpha.size != image.size:  # layers normally match the canvas; be safe if not
            alpha = alpha.resize(image.size, Image.NEAREST)
        painted |= np.asarray(alpha) > 0
    if not painted.any():
        raise InputError("the mask is empty: paint over the region to replace with the brush")
    return image, Image.fromarray((painted * 255).astype(np.uint8), "L")


def fit_mask(mask: Image.Image, image: Image.Image) -> Image.Image:
    """The mask resized to the image when their shapes agree; an InputError when they cannot be aligned."""
    if mask.size == image.size:
        return mask
    check_mask_fits(mask, image)
    if mask.mode in ("RGBA", "LA", "P"):
        mask = mask.convert("RGBA")
    return mask.resize(image.size, Image.NEAREST)


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
