"""The embedded default: a small GLIDE-architecture family trained on the procedural shapes domain.

Same classes, diffusion and samplers as GLIDE (filtered), scaled down to what 2 CPU cores train in
under two hours: a 32x32 text-conditional base, a 4x text-conditional upsampler (32 -> 128), the
inpainting variant of each, and a noised CLIP. This module holds what loading the family needs:
its configurations, its tokenizer and its loader. Training data lives in `glide.training.shapes`; `glide.training`
trains, `python -m glide.train_default` runs the whole recipe, and the weights ship in `glide/assets/shapes/`.
"""
import functools
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from safetensors.torch import load_file

from ..clip.model_creation import create_clip_model
from ..errors import ModelNotAvailable
from ..model_creation import load_model_and_diffusion
from ..tokenizer.bpe import Encoder
from .base import COMPONENTS, Family

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "shapes"
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
    """The family's BPE, parsed once per version of its files (training rewrites them) and shared."""
    files = (directory / "encoder.json", directory / "vocab.bpe")
    return _parsed_tokenizer(files, tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in files))


@functools.lru_cache(maxsize=None)
def _parsed_tokenizer(files: Tuple[Path, Path], _version: tuple) -> Encoder:
    return Encoder.from_files(*files)


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

def files(_checkpoint_dir=None) -> Dict[str, Path]:
    return {c: ASSET_DIR / f"{c}.safetensors" for c in COMPONENTS}


def load(component: str, device: torch.device, _checkpoint_dir=None):
    path = files()[component]
    if not path.exists():
        raise ModelNotAvailable(f"the embedded shapes model has no trained {component!r} weights ({path}); "
                                "run `make train-default` to train the family")
    encoder = load_tokenizer()
    if component == "clip":
        clip = create_clip_model(config={**CLIP_CONFIG, "n_vocab": encoder.n_vocab}, device=device,
                                 tokenizer=ClipTokens(encoder))
        state = load_file(path, device=str(device))
        clip.image_encoder.load_state_dict({k.removeprefix("image_encoder."): v for k, v in state.items()
                                            if k.startswith("image_encoder.")})
        clip.text_encoder.load_state_dict({k.removeprefix("text_encoder."): v for k, v in state.items()
                                           if k.startswith("text_encoder.")})
        clip.image_encoder.eval(), clip.text_encoder.eval()
        return clip
    model, diffusion = load_model_and_diffusion(load_file(path, device=str(device)), **MODEL_OPTIONS[component],
                                                tokenizer=encoder)
    return model.eval(), diffusion


FAMILY = Family(
    name="shapes", license="MIT (trained here)",
    description="The embedded default: a small GLIDE-architecture family trained on procedural shapes "
                "(32 px base, 128 px upsampler); no download",
    base_size=BASE_SIZE, upsample_size=UPSAMPLE_SIZE,
    text_ctx=TEXT_CTX, load=load, files=files,
    # Within noise of DDIM 25 (glide/assets/shapes/EVAL.json) in 10 model calls instead of 25; the upsampler
    # against DDPM fast27: EVAL_SAMPLERS.json, docs/shapes-family.md.
    default_sampler="dpm++2m", default_base_steps=10, default_upsample_sampler="ddim", default_upsample_steps="8",
    has_checker=True, tradeoff_report=ASSET_DIR / "EVAL_TRADEOFF.json")
