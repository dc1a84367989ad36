"""What a model family is: its components, how to load them, and its sampling defaults."""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

COMPONENTS = ("base", "upsample", "base-inpaint", "upsample-inpaint", "clip")


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

    def prompt_warning(self, prompt: str) -> str:
        """Why this family cannot draw `prompt`, for the CLI, the API and the UI to say; empty when it can (or
        cannot tell). A family with a checker knows only the sentences of its grammar (glide.data.shapes)."""
        if not self.has_checker or not isinstance(prompt, str) or not prompt.strip():
            return ""
        from ..data import shapes

        if shapes.parse_caption(prompt) is not None:
            return ""
        example = shapes.caption(shapes.Scene("blue", (shapes.Shape("circle", "red", "left", "small"),)))
        return (f"the {self.name} model only knows sentences like “{example}” (a size, colour, shape and position "
                f"for each shape, and a background): it will make an image, but not of “{prompt.strip()}”")


def channels_last_on_cpu(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Channels-last layout on CPU, where oneDNN's convolutions are faster in it; unchanged elsewhere.

    Measured on 2 EPYC cores: the full-size GLIDE base forward 5.21 vs 5.41 s, its upsampler 14.2 vs
    14.8 s, the shapes upsampler's steps ~25% faster (bench/results). On the H200 it made the base
    forward slower (59 vs 36 ms at batch 2), so GPUs keep the default layout.
    """
    return model.to(memory_format=torch.channels_last) if device.type == "cpu" else model
