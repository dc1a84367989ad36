"""The models under test: GLIDE (filtered)'s base and upsampler at full size with random weights, or tiny twins.

Weights are random because the benchmark measures speed, not images, and must run without the
5 GB download. FLOPs are counted on the `meta` device: the same ops with shapes only, so counting
costs no compute and no memory however large the model.
"""
import math
import random
from typing import Dict, List, Optional, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

from glide.model_creation import (
    create_model_and_diffusion,
    model_and_diffusion_defaults,
    model_and_diffusion_defaults_upsampler,
)

PROMPT_TOKENS = 20  # valid (unmasked) tokens in the random captions: a typical short prompt


class RandomTokenizer:
    """Stands in for GLIDE's BPE (random weights need no real words, and no vocabulary download): a prompt
    becomes PROMPT_TOKENS tokens drawn from its text, padded as GLIDE pads."""

    n_vocab = 50257

    def encode(self, text: str) -> List[int]:
        rng = random.Random(text)
        return [rng.randrange(self.n_vocab - 1) for _ in range(PROMPT_TOKENS)]

    def padded_tokens_and_mask(self, tokens: List[int], text_ctx: int) -> Tuple[List[int], List[bool]]:
        tokens = list(tokens)[:text_ctx]
        padding = text_ctx - len(tokens)
        return tokens + [self.n_vocab - 1] * padding, [True] * len(tokens) + [False] * padding


def full_options() -> Dict[str, dict]:
    """The released configurations, float32 (use_fp16=False: half precision is a benchmark variant instead)."""
    base = model_and_diffusion_defaults()
    upsample = model_and_diffusion_defaults_upsampler()
    for options in (base, upsample):
        options.update(use_fp16=False)
    return {"base": base, "upsample": upsample}


def quick_options() -> Dict[str, dict]:
    """Tiny models of the same classes (16 px base, 2x upsampler to 32 px) for a run of seconds."""
    common = dict(num_res_blocks=1, num_heads=1, num_head_channels=16, num_heads_upsample=-1, dropout=0.0,
                  text_ctx=16, xf_width=32, xf_layers=1, xf_heads=2, xf_final_ln=True, xf_padding=True,
                  diffusion_steps=1000, timestep_respacing="", use_scale_shift_norm=True, resblock_updown=True,
                  use_fp16=False, cache_text_emb=False, inpaint=False)
    return {
        "base": {**common, "image_size": 16, "num_channels": 32, "channel_mult": "1,2",
                 "attention_resolutions": "8", "noise_schedule": "squaredcos_cap_v2", "super_res": False},
        "upsample": {**common, "image_size": 32, "num_channels": 32, "channel_mult": "1,2",
                     "attention_resolutions": "16", "noise_schedule": "linear", "super_res": True},
    }


def low_res_size(options: Dict[str, dict]) -> int:
    """The upsampler's input size: the base model's output (64 for GLIDE)."""
    return options["base"]["image_size"]


def _create(options: dict):
    return create_model_and_diffusion(**options, tokenizer=RandomTokenizer())


_POOL_SIZE = 1_000_003  # prime, so the repetition never lines up with a tensor's rows or channels


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill every parameter with well-scaled random values, in place.

    Not PyTorch's default init: GLIDE zero-initialises each block's last layer and the output
    convolution, so a default-initialised model outputs exactly zero, which would make the
    half-precision error meaningless (0/0). Matrices get N(0, 1/fan_in), so activations keep unit
    scale through the depth like a trained network's; norm scales 1, biases small.

    Values are read from one pool of a million normals at random offsets rather than drawn per
    element: drawing 400M normals costs ~20 s of a 2-core CPU, copying them a fraction of that.
    """
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    pool = torch.randn(_POOL_SIZE, generator=gen).to(device)
    for name, p in model.named_parameters():
        if p.dim() == 1 and name.endswith("weight"):
            p.fill_(1.0)
            continue
        n = p.numel()
        start = int(torch.randint(0, _POOL_SIZE, (1,), generator=gen))
        values = pool.repeat(-(-(start + n) // _POOL_SIZE))[start:start + n]
        std = 1.0 / math.sqrt(p[0].numel()) if p.dim() >= 2 else 0.02
        p.copy_(values.view_as(p) * std)
    return model


def build(options: dict, device: torch.device, seed: int = 0):
    """(model, diffusion) with random weights on `device`, in eval mode.

    Built on the meta device and materialised empty, skipping PyTorch's default initialisation
    (seconds of CPU time for 400M parameters) since `randomize_` overwrites it anyway.
    """
    with torch.device("meta"):
        model, diffusion = _create(options)
    model = model.to_empty(device=device)
    return randomize_(model, seed).eval(), diffusion


def make_inputs(options: dict, batch: int, device: torch.device, low_res: Optional[int] = None, seed: int = 0) -> Dict:
    """Random forward inputs for a batch: x, timesteps, tokens+mask (and low_res for an upsampler)."""
    gen = torch.Generator().manual_seed(seed)
    size, ctx = options["image_size"], options["text_ctx"]
    tokens = torch.randint(0, RandomTokenizer.n_vocab, (batch, ctx), generator=gen)
    mask = torch.zeros(batch, ctx, dtype=torch.bool)
    mask[:, :min(PROMPT_TOKENS, ctx)] = True
    inputs = {"x": torch.randn(batch, 3, size, size, generator=gen),
              "timesteps": torch.randint(0, options["diffusion_steps"], (batch,), generator=gen),
              "tokens": tokens, "mask": mask}
    if options["super_res"]:
        inputs["low_res"] = torch.rand(batch, 3, low_res, low_res, generator=gen) * 2 - 1
    return {k: v.to(device) for k, v in inputs.items()}


_META_MODELS: Dict[str, torch.nn.Module] = {}


def count_flops(options: dict, batch: int, low_res: Optional[int] = None) -> Tuple[float, float]:
    """(FLOPs of one full forward with tokens, FLOPs of its text encoder alone) for a batch.

    The full forward is what the reference computes per sampling step; our sampler encodes the
    text once per run, so a step costs the first number minus the second.
    """
    key = repr(sorted(options.items()))
    if key not in _META_MODELS:
        with torch.device("meta"):
            _META_MODELS[key] = _create(options)[0]
    model = _META_MODELS[key]
    inputs = make_inputs(options, batch, torch.device("meta"), low_res)
    with torch.no_grad():
        total = FlopCounterMode(display=False)
        with total:
            model(**inputs)
        text = FlopCounterMode(display=False)
        with text:
            model.encode_text(inputs["tokens"], inputs["mask"])
    return float(total.get_total_flops()), float(text.get_total_flops())


def forward_fn(model, inputs: Dict):
    """A no-argument forward of the model on fixed inputs (what the timers call)."""
    kwargs = {k: v for k, v in inputs.items() if k not in ("x", "timesteps")}
    return lambda: model(inputs["x"], inputs["timesteps"], **kwargs)
