"""The embedded default: a small GLIDE-architecture family trained on the procedural shapes domain.

Same classes, diffusion and samplers as GLIDE (filtered), scaled down to what 2 CPU cores train in
under two hours: a 32x32 text-conditional base, a 4x text-conditional upsampler (32 -> 128), the
inpainting variant of each, and a noised CLIP. This module holds what loading the family needs:
its configurations and its tokenizer. Training data lives in `glide.shapes_training`; `glide.train`
trains, `glide.train_default` runs the whole recipe, and the weights ship in `glide/assets/shapes/`.
"""
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from .tokenizer.bpe import Encoder

ASSET_DIR = Path(__file__).resolve().parent / "assets" / "shapes"
BASE_SIZE, UPSAMPLE_SIZE = 32, 128
TEXT_CTX = 32

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
