"""What both notebook tests use: random-weight checkpoints of narrow GLIDE models under the official file
names (a cache folder that `$GLIDE_CACHE_DIR` can point to, so the notebooks' `load_checkpoint(...)` finds
them offline), and the check of a notebook's samples."""
import shutil
from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest
import torch
import torch.nn as nn
import yaml

from glide.clip.model_creation import create_clip_model
from glide.download import CHECKPOINT_FILENAMES, VOCAB_FILES
from glide.model_creation import create_model_and_diffusion

# component -> (the reference's defaults function, the narrow options laid over them, inpainting?)
Checkpoints = Dict[str, Tuple[Callable[[], dict], dict, bool]]


def randomize(module: nn.Module, gen: torch.Generator) -> None:
    """Replace every parameter with random values of a sensible scale.

    Random init alone would leave the zero-initialised output layers at zero (and the
    `torch.empty` embeddings undefined), so sampling would not really exercise the model.
    """
    with torch.no_grad():
        for sub in module.modules():
            is_norm = "norm" in type(sub).__name__.lower()
            for name, p in sub.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=gen)
                if is_norm and name in ("weight", "g"):
                    p.copy_(1 + 0.1 * noise)
                elif p.dim() >= 2:
                    p.copy_(noise / p[0].numel() ** 0.5)
                else:
                    p.copy_(0.1 * noise)


def fill_cache(cache: Path, vocab_dir: Path, checkpoints: Checkpoints, clip: dict) -> Path:
    """`cache` filled: the tokenizer files, a random checkpoint per component, and the CLIP config `clip` (as
    clip_small.yaml) with random encoders."""
    for filename in VOCAB_FILES:
        shutil.copy(vocab_dir / filename, cache / filename)
    clip_config = cache / "clip_small.yaml"
    clip_config.write_text(yaml.safe_dump(clip))
    gen = torch.Generator().manual_seed(0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLIDE_CACHE_DIR", str(cache))
        for name, (defaults, small, inpaint) in checkpoints.items():
            options = defaults()
            options.update(small, inpaint=inpaint, use_fp16=False)
            model, _ = create_model_and_diffusion(**options)
            randomize(model, gen)
            torch.save(model.state_dict(), cache / CHECKPOINT_FILENAMES[name])
        clip_model = create_clip_model(config_path=clip_config, device="cpu")
        for name, encoder in [("clip/image-enc", clip_model.image_encoder), ("clip/text-enc", clip_model.text_encoder)]:
            randomize(encoder, gen)
            torch.save(encoder.state_dict(), cache / CHECKPOINT_FILENAMES[name])
    return cache


def check_samples(samples, shape, bound=1.0):
    """A notebook's final samples: the shape asked for, finite, within [-bound, bound], not one flat colour,
    and not the same picture twice.

    An unguided last step returns the clamped x0 prediction (the t = 0 posterior mean is x0 itself),
    so a value beyond 1 means a step went wrong; CLIP guidance may shift that last mean slightly.
    """
    assert tuple(samples.shape) == shape
    assert torch.isfinite(samples).all()
    assert samples.abs().max() <= bound + 1e-5, samples.abs().max()
    assert samples.flatten(1).std(dim=1).min() > 1e-3
    if shape[0] > 1:
        assert not torch.allclose(samples[0], samples[1])
