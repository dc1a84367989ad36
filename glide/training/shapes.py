"""Training data of the embedded shapes family: the tokenizer's corpus and every stage's batches.

Kept apart from `glide.families.shapes` (what loading the family for inference needs), so that
generating images never imports training code.
"""
from pathlib import Path
from typing import Callable, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..data import shapes
from ..families import shapes as family
from ..tokenizer.bpe import Encoder, save_vocab, train_bpe

UPSAMPLE_TRAIN_CROP = 64  # the upsampler is fully convolutional: train on crops, 4x cheaper per example
P_UNCOND = 0.2  # share of empty captions in training, so classifier-free guidance has an unconditional model


def train_tokenizer(directory: Path = family.ASSET_DIR, num_captions: int = 20000, num_merges: int = 400, seed: int = 0):
    """Learn the family's byte-level BPE (same code as GLIDE's) on captions of the grammar."""
    rng = np.random.default_rng(seed)
    texts = [shapes.caption(shapes.random_scene(rng), rng) for _ in range(num_captions)]
    encoder, merges = train_bpe(texts, num_merges)
    return save_vocab(encoder, merges, directory)



def random_keep_masks(rng: np.random.Generator, n: int, size: int) -> torch.Tensor:
    """Inpainting masks [n, 1, size, size], 1 = keep: random rectangles or brush-like strokes."""
    masks = np.ones((n, 1, size, size), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        if rng.random() < 0.5:
            w, h = rng.uniform(0.25, 0.6, size=2)
            x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            masks[i, 0, int(y0 * size): int((y0 + h) * size) + 1, int(x0 * size): int((x0 + w) * size) + 1] = 0
        else:
            # A brush stroke: discs of random radius along a random walk.
            x, y = rng.uniform(0.25, 0.75, size=2)
            radius = rng.uniform(0.08, 0.16)
            for _ in range(int(rng.integers(3, 8))):
                masks[i, 0][(xx - x) ** 2 + (yy - y) ** 2 < radius ** 2] = 0
                x = float(np.clip(x + rng.normal(0, 0.1), 0.1, 0.9))
                y = float(np.clip(y + rng.normal(0, 0.1), 0.1, 0.9))
    return torch.from_numpy(masks)


def _captions_with_drop(rng, captions):
    return ["" if rng.random() < P_UNCOND else c for c in captions]


def batch_maker(stage: str, encoder: Encoder) -> Callable[[np.random.Generator, int], Tuple[torch.Tensor, dict]]:
    """make(rng, n) -> (x_start [n, 3, S, S] in [-1, 1], model_kwargs) for a diffusion stage."""
    super_res = stage.startswith("upsample")
    inpaint = stage.endswith("inpaint")
    size = family.UPSAMPLE_SIZE if super_res else family.BASE_SIZE

    def make(rng: np.random.Generator, n: int):
        images, captions, _ = shapes.sample_batch(rng, n, size)
        x_start = shapes.images_to_tensor(images)
        if super_res:
            # One random crop per batch, aligned to the 4x grid so low-res pixels stay whole.
            crop = UPSAMPLE_TRAIN_CROP
            y0, x0 = (int(v) * 4 for v in rng.integers(0, (size - crop) // 4 + 1, size=2))
            x_start = x_start[:, :, y0:y0 + crop, x0:x0 + crop]
            size_now = crop
        else:
            size_now = size
        tokens, mask = family.tokenize(encoder, _captions_with_drop(rng, captions))
        kwargs = {"tokens": tokens, "mask": mask}
        if super_res:
            # The low-res input is what the base model makes: the scene at 32 px (area-averaged).
            kwargs["low_res"] = F.avg_pool2d(x_start, family.UPSAMPLE_SIZE // family.BASE_SIZE)
        if inpaint:
            kwargs["inpaint_image"] = x_start
            kwargs["inpaint_mask"] = random_keep_masks(rng, n, size_now)
        return x_start, kwargs

    return make


def clip_batch_maker(encoder: Encoder, text_ctx: int = family.TEXT_CTX):
    """make(rng, n) -> a contrastive batch: images [n, 3, 32, 32] in [-1, 1], CLIP tokens [n, text_ctx],
    their lengths [n], and same [n, n] (1 where two captions are identical: they count as matches)."""
    clip_tokens = family.ClipTokens(encoder)

    def make(rng: np.random.Generator, n: int):
        images, captions, _ = shapes.sample_batch(rng, n, family.BASE_SIZE)
        pairs = [clip_tokens.padded_tokens_and_len(clip_tokens.encode(c), text_ctx) for c in captions]
        _, caption_ids = np.unique(np.array(captions), return_inverse=True)
        same = torch.from_numpy((caption_ids[:, None] == caption_ids[None, :]).astype(np.float32))
        return (shapes.images_to_tensor(images), torch.tensor([p[0] for p in pairs], dtype=torch.long),
                torch.tensor([p[1] for p in pairs], dtype=torch.long), same)

    return make
