"""Model families the pipeline can load: the embedded `shapes` default and OpenAI's `glide-filtered`.

A family is a set of components — base, upsample, base-inpaint, upsample-inpaint, clip — that the
pipeline loads lazily, each once. `list_models()` tells what is ready locally.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from safetensors.torch import load_file

from . import download, shapes_family
from .clip.model_creation import create_clip_model
from .download import CHECKPOINT_FILENAMES, default_cache_dir, load_checkpoint
from .errors import UserError
from .model_creation import (
    create_model_and_diffusion,
    model_and_diffusion_defaults,
    model_and_diffusion_defaults_upsampler,
)

COMPONENTS = ("base", "upsample", "base-inpaint", "upsample-inpaint", "clip")


class ModelNotAvailable(UserError):
    """A component of a family is not present locally (and, for the embedded family, cannot be fetched)."""


@dataclass
class Family:
    """How to build and load one family's components."""

    name: str
    description: str
    license: str
    base_size: int
    upsample_size: int
    text_ctx: int
    load: Callable[[str, torch.device, Optional[Path]], object]   # component -> (model, diffusion) or CLIPModel
    files: Callable[[Optional[Path]], Dict[str, Path]]           # component -> file(s) it needs
    # Sampling defaults (the pipeline's, CLI's and demo's when a setting is not given).
    default_sampler: str = "ddim"
    default_base_steps: int = 50
    default_upsample_sampler: str = "ddpm"
    default_upsample_steps: str = "fast27"
    has_checker: bool = False
    diffusion_steps: int = 1000   # the trained processes' length, which step specs are resolved against
    tradeoff_report: Optional[Path] = None   # its measured guidance trade-off (glide.eval --tradeoff), if any


# ------------------------------------------------------------------------------------------ shapes
def channels_last_on_cpu(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Channels-last layout on CPU, where oneDNN's convolutions are faster in it; unchanged elsewhere.

    Measured on 2 EPYC cores: the full-size GLIDE base forward 5.21 vs 5.41 s, its upsampler 14.2 vs
    14.8 s, the shapes upsampler's steps ~25% faster (bench/results). On the H200 it made the base
    forward slower (59 vs 36 ms at batch 2), so GPUs keep the default layout.
    """
    return model.to(memory_format=torch.channels_last) if device.type == "cpu" else model


def _shapes_files(_checkpoint_dir=None) -> Dict[str, Path]:
    return {c: shapes_family.ASSET_DIR / f"{c}.safetensors" for c in COMPONENTS}


def _load_shapes(component: str, device: torch.device, _checkpoint_dir=None):
    path = _shapes_files()[component]
    if not path.exists():
        raise ModelNotAvailable(f"the embedded shapes model has no trained {component!r} weights ({path}); "
                                "run `make train-default` to train the family")
    encoder = shapes_family.load_tokenizer()
    if component == "clip":
        clip = create_clip_model(config={**shapes_family.CLIP_CONFIG, "n_vocab": encoder.n_vocab}, device=device,
                                 tokenizer=shapes_family.ClipTokens(encoder))
        state = load_file(path, device=str(device))
        clip.image_encoder.load_state_dict({k.removeprefix("image_encoder."): v for k, v in state.items()
                                            if k.startswith("image_encoder.")})
        clip.text_encoder.load_state_dict({k.removeprefix("text_encoder."): v for k, v in state.items()
                                           if k.startswith("text_encoder.")})
        clip.image_encoder.eval(), clip.text_encoder.eval()
        return clip
    model, diffusion = create_model_and_diffusion(**shapes_family.MODEL_OPTIONS[component], tokenizer=encoder)
    model.load_state_dict(load_file(path, device=str(device)))
    # Channels-last: the upsampler ~25% faster on a CPU, the base 5-12% at batch 2-64 in float32 (2 EPYC cores).
    return channels_last_on_cpu(model, device).to(device).eval(), diffusion


# ------------------------------------------------------------------------------------------ glide-filtered
_GLIDE_CHECKPOINTS = {"base": ["base"], "upsample": ["upsample"], "base-inpaint": ["base-inpaint"],
                      "upsample-inpaint": ["upsample-inpaint"], "clip": ["clip/image-enc", "clip/text-enc"]}


def _glide_files(checkpoint_dir: Optional[Path] = None) -> Dict[str, List[Path]]:
    cache = Path(checkpoint_dir) if checkpoint_dir else default_cache_dir()
    return {c: [cache / CHECKPOINT_FILENAMES[n] for n in names] for c, names in _GLIDE_CHECKPOINTS.items()}


def _load_glide(component: str, device: torch.device, checkpoint_dir: Optional[Path] = None):
    if component == "clip":
        clip = create_clip_model(device=device)
        clip.image_encoder.load_state_dict(load_checkpoint("clip/image-enc", device, cache_dir=checkpoint_dir))
        clip.text_encoder.load_state_dict(load_checkpoint("clip/text-enc", device, cache_dir=checkpoint_dir))
        clip.image_encoder.eval(), clip.text_encoder.eval()
        return clip
    options = (model_and_diffusion_defaults_upsampler() if component.startswith("upsample")
               else model_and_diffusion_defaults())
    options.update(use_fp16=False, inpaint=component.endswith("inpaint"))
    model, diffusion = create_model_and_diffusion(**options)
    model.load_state_dict(load_checkpoint(component, device, cache_dir=checkpoint_dir))
    return channels_last_on_cpu(model, device).to(device).eval(), diffusion


FAMILIES: Dict[str, Family] = {
    "shapes": Family(
        name="shapes", license="MIT (trained here)",
        description="The embedded default: a small GLIDE-architecture family trained on procedural shapes "
                    "(32 px base, 128 px upsampler); no download",
        base_size=shapes_family.BASE_SIZE, upsample_size=shapes_family.UPSAMPLE_SIZE,
        text_ctx=shapes_family.TEXT_CTX, load=_load_shapes, files=_shapes_files,
        # Within noise of DDIM 25 (glide/assets/shapes/EVAL.json) in 10 model calls instead of 25; the upsampler
        # against DDPM fast27: EVAL_SAMPLERS.json, README.
        default_sampler="dpm++2m", default_base_steps=10, default_upsample_sampler="ddim", default_upsample_steps="8",
        has_checker=True, tradeoff_report=shapes_family.ASSET_DIR / "EVAL_TRADEOFF.json"),
    "glide-filtered": Family(
        name="glide-filtered", license="MIT (OpenAI, glide-text2im)",
        description="OpenAI's released GLIDE (filtered): 64 px base, 256 px upsampler, noised CLIP; "
                    "downloaded on first use (~5.4 GB)",
        base_size=64, upsample_size=256, text_ctx=128, load=_load_glide, files=_glide_files,
        default_base_steps=100),
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise UserError(f"unknown model {name!r}; available: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def list_models(checkpoint_dir: Optional[Path] = None) -> List[dict]:
    """Each family: name, description, licence, and per component whether it is on disk and its size."""
    rows = []
    for family in FAMILIES.values():
        components = {}
        for component, paths in family.files(checkpoint_dir).items():
            paths = paths if isinstance(paths, list) else [paths]
            present = all(p.exists() for p in paths)
            components[component] = {"ready": present,
                                     "bytes": sum(p.stat().st_size for p in paths if p.exists()),
                                     "files": [str(p) for p in paths]}
        rows.append({"name": family.name, "description": family.description, "license": family.license,
                     "ready": components["base"]["ready"], "components": components,
                     "bytes": sum(c["bytes"] for c in components.values())})
    return rows


def download_family(name: str, checkpoint_dir: Optional[Path] = None, progress: bool = True) -> List[Path]:
    """Fetch every checkpoint of a downloadable family into the cache (no-op for files present)."""
    family = get_family(name)
    if name == "shapes":
        return [p for p in family.files(checkpoint_dir).values() if p.exists()]
    cache = Path(checkpoint_dir) if checkpoint_dir else default_cache_dir()
    paths = [download.fetch_file(download.checkpoint_url(n), cache / CHECKPOINT_FILENAMES[n], progress=progress)
             for names in _GLIDE_CHECKPOINTS.values() for n in names]
    # The tokenizers' files too, where get_encoder / SimpleTokenizer look for them (the default cache).
    return paths + [download.resolve_vocab_file(filename, progress=progress) for filename in download.VOCAB_FILES]
