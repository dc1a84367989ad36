"""Image and mask conversions between what users have (PIL, numpy, any size/mode) and model tensors.

Conventions: model images are float tensors [N, 3, S, S] in [-1, 1]. User masks are "white = edit"
(as image editors draw them); GLIDE's inpainting models take keep-masks [N, 1, S, S], 1 = keep.
"""
import hashlib
from typing import Union

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


def check_mask_fits(mask: ImageLike, image: ImageLike) -> None:
    """An InputError unless the mask has the image's aspect ratio (within 1%): each is centre-cropped and
    resized on its own, which keeps them aligned only then."""
    (mw, mh), (iw, ih) = to_pil(mask, "mask").size, to_pil(image).size
    if min(mw, mh, iw, ih) < 1 or abs(mw / mh - iw / ih) > 0.01 * (iw / ih):
        raise InputError(f"the mask is {mw}x{mh} but the image is {iw}x{ih}: give a mask of the image's shape")


def mask_to_keep(mask: ImageLike, size: int) -> torch.Tensor:
    """A user mask (white or painted = edit) -> keep-mask [1, 1, size, size] (1 = keep), nearest resize.

    RGBA / LA masks (a brush layer) use alpha: painted pixels are edited. Other modes use brightness.
    The mask is centre-cropped like the image so the two stay aligned.
    """
    mask = to_pil(mask, "mask")
    if mask.mode in ("RGBA", "LA") or (mask.mode == "P" and "transparency" in mask.info):
        edit = mask.convert("RGBA").getchannel("A")
    else:
        edit = mask.convert("L")
    edit = center_crop_square(edit).resize((size, size), Image.NEAREST)
    edit = np.asarray(edit, dtype=np.float32) > 127
    if not edit.any():
        raise InputError("the mask is empty: paint (white) the region to replace")
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
