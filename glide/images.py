"""Image and mask conversions between what users have (PIL, numpy, any size/mode) and model tensors.

Conventions: model images are float tensors [N, 3, S, S] in [-1, 1]. User masks are "white = edit"
(as image editors draw them); GLIDE's inpainting models take keep-masks [N, 1, S, S], 1 = keep.
"""
import hashlib
from dataclasses import dataclass
from typing import Tuple, Union

import numpy as np
import torch
from PIL import Image

from .errors import InputError

ImageLike = Union[Image.Image, np.ndarray]


def to_pil(image: ImageLike, what: str = "image") -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.size == 0:
            raise InputError(f"{what} array must be HxW or HxWxC, got shape {image.shape}")
        if image.dtype != np.uint8:
            if not np.isfinite(image).all():
                raise InputError(f"{what} contains NaN or infinite values")
            scale = 255.0 if image.max() <= 1.0 else 1.0
            image = np.clip(image * scale, 0, 255).round().astype(np.uint8)
        return Image.fromarray(image)
    raise InputError(f"{what} must be a PIL image or a numpy array, got {type(image).__name__}")


def image_digest(image: ImageLike) -> str:
    """"sha256:<hex>" of an image's size and RGB pixels: what a PNG records of the image a run started from."""
    rgb = to_pil(image).convert("RGB")
    return "sha256:" + hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + rgb.tobytes()).hexdigest()


def center_crop_square(image: Image.Image) -> Image.Image:
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


def image_to_tensor(image: ImageLike, size: int) -> torch.Tensor:
    """Any image -> [1, 3, size, size] in [-1, 1]: RGB, centre-cropped to a square, resized (bicubic)."""
    image = to_pil(image)
    if min(image.size) < 8:
        raise InputError(f"image is too small ({image.size[0]}x{image.size[1]}); give at least 8x8 pixels")
    image = center_crop_square(image.convert("RGB"))
    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    array = np.asarray(image, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1)[None] / 127.5 - 1.0


def edit_mask(mask: ImageLike, size) -> Image.Image:
    """A user mask as an L image of `size` (w, h), 255 = edit. RGBA / LA masks (a brush layer) use alpha: painted
    pixels are edited; other modes use brightness (above 127). A mask of another size is resized to `size`
    (nearest), as an image editor scales a layer with its picture; an empty mask is an InputError."""
    mask = to_pil(mask, "mask")
    if mask.mode in ("RGBA", "LA") or (mask.mode == "P" and "transparency" in mask.info):
        edit = mask.convert("RGBA").getchannel("A")
    else:
        edit = mask.convert("L")
    if edit.size != tuple(size):
        edit = edit.resize(tuple(size), Image.NEAREST)
    edit = edit.point(lambda v: 255 if v > 127 else 0)
    if edit.getbbox() is None:
        raise InputError("the mask is empty: paint (white) the region to replace")
    return edit


@dataclass(frozen=True)
class EditWindow:
    """An inpainting edit of a picture of any shape: the square of it the model works on, and the way back.

    The models see squares. The window is the largest square the picture holds (its short side) placed over the
    mask's bounding box, grown to cover a bounding box longer than that (up to the long side, the picture then
    centred in it and its edge pixels repeated beyond it). So the model sees as much of the picture as it can at
    its own resolution around what is edited, and every painted pixel is edited wherever it is; padding the whole
    picture to a square instead would spend the model's few pixels (32 across for shapes) on padding, and a
    centre crop would drop the strokes outside it. The model's output is resized to the window and put back
    into the picture only where the mask is: outside it the picture is its own pixels, at its own size (or a
    whole number of times it, when the upsampler made more pixels than the window has: `put_back`).
    A square picture's window is the whole picture. `demo/painter.js` outlines the same window
    (`modelWindow`)."""

    image: Image.Image   # the picture, RGB, at its size
    edit: Image.Image    # L at the picture's size, 255 = replace
    left: int            # the window in picture pixels; it reaches past the picture where the side is longer
    top: int
    side: int

    @classmethod
    def of(cls, image: ImageLike, mask: ImageLike) -> "EditWindow":
        """The window of an edit; InputError for a picture under 8x8 or an empty mask."""
        image = to_pil(image)
        if min(image.size) < 8:
            raise InputError(f"image is too small ({image.size[0]}x{image.size[1]}); give at least 8x8 pixels")
        image = image.convert("RGB")
        edit = edit_mask(mask, image.size)
        (w, h), (x0, y0, x1, y1) = image.size, edit.getbbox()
        side = min(max(w, h), max(min(w, h), x1 - x0, y1 - y0))

        def start(lo: int, hi: int, extent: int) -> int:
            if side >= extent:   # the whole axis, centred
                return (extent - side) // 2
            return min(max((lo + hi - side) // 2, 0), extent - side)   # centred on the mask, inside the picture

        return cls(image, edit, start(x0, x1, w), start(y0, y1, h), side)

    def square(self) -> Tuple[Image.Image, Image.Image]:
        """(image, mask) of the window, `side` pixels square: what the model is given."""
        return self._crop(self.image, "edge"), self._crop(self.edit, "constant")

    def put_back(self, edited: Image.Image) -> Image.Image:
        """The picture with the model's output of the window put back where the mask is. An output a whole
        number of times the window's side (the upsampler's on a small picture: 128 px for a 32 px window) keeps
        its pixels: the picture is enlarged by that factor, as upsampling a whole image would; otherwise the
        output is resized to the window and the picture keeps its size."""
        edited = edited.convert("RGB")
        scale = max(1, edited.width // self.side)
        side = self.side * scale
        if edited.size != (side, side):
            edited = edited.resize((side, side), Image.BICUBIC)
        image, edit = self.image, self._crop(self.edit, "constant")
        if scale > 1:
            image = image.resize((image.width * scale, image.height * scale), Image.BICUBIC)
            edit = edit.resize((side, side), Image.NEAREST)
        out = image.copy()
        out.paste(edited, (self.left * scale, self.top * scale), edit)
        return out

    def _crop(self, image: Image.Image, padding: str) -> Image.Image:
        """The window of `image`; beyond the picture its edge pixels repeated ("edge") or 0 ("constant")."""
        array = np.asarray(image)
        (w, h), right, bottom = image.size, self.left + self.side, self.top + self.side
        pads = [(max(0, -self.top), max(0, bottom - h)), (max(0, -self.left), max(0, right - w))]
        array = np.pad(array, pads + [(0, 0)] * (array.ndim - 2), mode=padding)
        y, x = self.top + pads[0][0], self.left + pads[1][0]
        return Image.fromarray(array[y:y + self.side, x:x + self.side], image.mode)


def mask_to_keep(mask: Image.Image, size: int) -> torch.Tensor:
    """A square edit mask (`edit_mask`'s: 255 = edit) -> keep-mask [1, 1, size, size] (1 = keep), nearest resize."""
    edit = np.asarray(mask.convert("L").resize((size, size), Image.NEAREST), dtype=np.float32) > 127
    if not edit.any():
        raise InputError("the mask is empty at the model's resolution: paint a larger region to replace")
    return torch.from_numpy(1.0 - edit.astype(np.float32))[None, None]


def tensor_to_pil(x: torch.Tensor) -> list:
    """[N, 3, H, W] in [-1, 1] -> list of PIL RGB images (rounded as the reference notebooks do)."""
    scaled = ((x.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in scaled]


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels, as an image saved and reloaded would be (the upsampler's low-res input)."""
    return ((x + 1) * 127.5).round().clamp(0, 255) / 127.5 - 1


def masked_preview(image: torch.Tensor, keep: torch.Tensor) -> list:
    """The input with the region to replace greyed out, for showing beside the result."""
    return tensor_to_pil(image * keep + (1 - keep) * 0.0)
