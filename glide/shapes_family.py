"""The embedded default: a small GLIDE-architecture family trained on the procedural shapes domain.

Same classes, diffusion and samplers as GLIDE (filtered), scaled down to what 2 CPU cores train in
under two hours: a 32x32 text-conditional base, a 4x text-conditional upsampler (32 -> 128), the
inpainting variant of each, and a noised CLIP. This module holds the family's configurations, its
tokenizer and the training batches of every stage; `glide.train` trains, `glide.train_default`
runs the whole recipe, and the weights ship in `glide/assets/shapes/`.
"""
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .data import shapes
from .tokenizer.bpe import Encoder, save_vocab, train_bpe

ASSET_DIR = Path(__file__).resolve().parent / "assets" / "shapes"
BASE_SIZE, UPSAMPLE_SIZE = 32, 128
UPSAMPLE_TRAIN_CROP = 64  # the upsampler is fully convolutional: train on crops, 4x cheaper per example
TEXT_CTX = 32
P_UNCOND = 0.2  # share of empty captions in training, so classifier-free guidance has an unconditional model

_COMMON = dict(
    channel_mult="", num_heads=1, num_head_channels=32, num_heads_upsample=-1, dropout=0.0,
    text_ctx=TEXT_CTX, xf_width=64, xf_layers=2, xf_heads=2, xf_final_ln=True, xf_padding=True,
    diffusion_steps=1000, timestep_respacing="", use_scale_shift_norm=True, resblock_updown=True,
    use_fp16=False, cache_text_emb=False, inpaint=False, super_res=False, model_mean_type="v",
)

MODEL_OPTIONS: Dict[str, dict] = {
    "base": {**_COMMON, "image_size": BASE_SIZE, "num_channels": 32, "channel_mult": "1,2,2",
             "num_res_blocks": 1, "attention_resolutions": "16,8", "noise_schedule": "squaredcos_cap_v2"},
    "upsample": {**_COMMON, "image_size": UPSAMPLE_SIZE, "num_channels": 32, "channel_mult": "1,1,2,2,2",
                 "num_res_blocks": 1, "attention_resolutions": "8", "noise_schedule": "linear",
                 "super_res": True, "xf_layers": 1},
}
MODEL_OPTIONS["base-inpaint"] = {**MODEL_OPTIONS["base"], "inpaint": True}
MODEL_OPTIONS["upsample-inpaint"] = {**MODEL_OPTIONS["upsample"], "inpaint": True}

CLIP_CONFIG = dict(
    logit_scale=100.0, beta_schedule="squaredcos_cap_v2", n_timesteps=1000, image_size=BASE_SIZE, patch_size=4,
    n_vocab=None, max_text_len=TEXT_CTX, n_embd=128, n_head_state_text=32, n_head_text=4, n_xf_blocks_text=2,
    n_head_state_image=32, n_head_image=4, n_xf_blocks_image=3,
)


# ---------------------------------------------------------------------------------------------- tokenizer
def train_tokenizer(directory: Path = ASSET_DIR, num_captions: int = 20000, num_merges: int = 400, seed: int = 0):
    """Learn the family's byte-level BPE (same code as GLIDE's) on captions of the grammar."""
    rng = np.random.default_rng(seed)
    texts = [shapes.caption(shapes.random_scene(rng), rng) for _ in range(num_captions)]
    encoder, merges = train_bpe(texts, num_merges)
    return save_vocab(encoder, merges, directory)


def load_tokenizer(directory: Path = ASSET_DIR) -> Encoder:
    return Encoder.from_files(directory / "encoder.json", directory / "vocab.bpe")


class ClipTokens:
    """The family's BPE with CLIP's `padded_tokens_and_len` contract: tokens then the end token.

    The text encoder reads its features at index len - 1, i.e. at the end token.
    """

    def __init__(self, encoder: Encoder):
        self.encoder = encoder
        self.n_vocab = encoder.n_vocab

    def encode(self, text: str) -> List[int]:
        return self.encoder.encode(text)

    def padded_tokens_and_len(self, tokens: List[int], text_ctx: int) -> Tuple[List[int], int]:
        tokens = list(tokens)[: text_ctx - 1] + [self.encoder.end_token]
        length = len(tokens)
        return tokens + [self.encoder.end_token] * (text_ctx - length), length


def tokenize(encoder: Encoder, captions: List[str], text_ctx: int = TEXT_CTX):
    """Tokens [N, text_ctx] and mask [N, text_ctx] tensors, as GLIDE pads them."""
    pairs = [encoder.padded_tokens_and_mask(encoder.encode(c), text_ctx) for c in captions]
    return (torch.tensor([p[0] for p in pairs], dtype=torch.long),
            torch.tensor([p[1] for p in pairs], dtype=torch.bool))


# ---------------------------------------------------------------------------------------------- batches
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
    size = UPSAMPLE_SIZE if super_res else BASE_SIZE

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
        tokens, mask = tokenize(encoder, _captions_with_drop(rng, captions))
        kwargs = {"tokens": tokens, "mask": mask}
        if super_res:
            # The low-res input is what the base model makes: the scene at 32 px (area-averaged).
            kwargs["low_res"] = F.avg_pool2d(x_start, UPSAMPLE_SIZE // BASE_SIZE)
        if inpaint:
            kwargs["inpaint_image"] = x_start
            kwargs["inpaint_mask"] = random_keep_masks(rng, n, size_now)
        return x_start, kwargs

    return make


def clip_batch_maker(encoder: Encoder, text_ctx: int = TEXT_CTX):
    """make(rng, n) -> a contrastive batch: images [n, 3, 32, 32] in [-1, 1], CLIP tokens [n, text_ctx],
    their lengths [n], and same [n, n] (1 where two captions are identical: they count as matches)."""
    clip_tokens = ClipTokens(encoder)

    def make(rng: np.random.Generator, n: int):
        images, captions, _ = shapes.sample_batch(rng, n, BASE_SIZE)
        pairs = [clip_tokens.padded_tokens_and_len(clip_tokens.encode(c), text_ctx) for c in captions]
        _, caption_ids = np.unique(np.array(captions), return_inverse=True)
        same = torch.from_numpy((caption_ids[:, None] == caption_ids[None, :]).astype(np.float32))
        return (shapes.images_to_tensor(images), torch.tensor([p[0] for p in pairs], dtype=torch.long),
                torch.tensor([p[1] for p in pairs], dtype=torch.long), same)

    return make
