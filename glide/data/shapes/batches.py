"""Training examples of the shapes domain, and the conversions between images and model tensors."""
from __future__ import annotations

import numpy as np

from .captions import caption
from .render import render_array
from .scene import random_scene


def sample_batch(rng: np.random.Generator, n: int, size: int):
    """``n`` random training examples: (uint8 images [n, size, size, 3], captions, scenes)."""
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    captions, scenes = [], []
    for i in range(n):
        scene = random_scene(rng)
        images[i] = render_array(scene, size, rng)
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
