"""OpenAI's released GLIDE (filtered): checkpoints downloaded on first use, loaded unchanged."""
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..clip.model_creation import create_clip_model
from ..download import CHECKPOINT_FILENAMES, default_cache_dir, load_checkpoint
from ..model_creation import load_model_and_diffusion, model_and_diffusion_defaults, model_and_diffusion_defaults_upsampler
from .base import Family

CHECKPOINTS = {"base": ["base"], "upsample": ["upsample"], "base-inpaint": ["base-inpaint"],
                      "upsample-inpaint": ["upsample-inpaint"], "clip": ["clip/image-enc", "clip/text-enc"]}


def files(checkpoint_dir: Optional[Path] = None) -> Dict[str, List[Path]]:
    cache = Path(checkpoint_dir) if checkpoint_dir else default_cache_dir()
    return {c: [cache / CHECKPOINT_FILENAMES[n] for n in names] for c, names in CHECKPOINTS.items()}


def load(component: str, device: torch.device, checkpoint_dir: Optional[Path] = None):
    if component == "clip":
        clip = create_clip_model(device=device)
        clip.image_encoder.load_state_dict(load_checkpoint("clip/image-enc", device, cache_dir=checkpoint_dir))
        clip.text_encoder.load_state_dict(load_checkpoint("clip/text-enc", device, cache_dir=checkpoint_dir))
        clip.image_encoder.eval(), clip.text_encoder.eval()
        return clip
    options = (model_and_diffusion_defaults_upsampler() if component.startswith("upsample")
               else model_and_diffusion_defaults())
    options.update(use_fp16=False, inpaint=component.endswith("inpaint"))
    # Mapped, not read: the weights come from the page cache as they are converted or first used, and a
    # download replacing the file (os.replace) leaves a mapped file intact.
    state = load_checkpoint(component, "cpu", cache_dir=checkpoint_dir, mmap=True)
    model, diffusion = load_model_and_diffusion(state, **options)
    return model.to(device).eval(), diffusion


FAMILY = Family(
    name="glide-filtered", license="MIT (OpenAI, glide-text2im)",
    description="OpenAI's released GLIDE (filtered): 64 px base, 256 px upsampler, noised CLIP; "
                "downloaded on first use (~5.4 GB)",
    base_size=64, upsample_size=256, text_ctx=128, load=load, files=files,
    default_base_steps=100)
