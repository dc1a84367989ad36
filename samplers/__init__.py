"""Samplers: step rules x guidance strategies, as pluggy plugins, composed by `sample`.

    from samplers import sample
    x0 = sample(model, diffusion, (2, 3, 64, 64), steps=50, sampler="dpm++2m", guidance="classifier-free",
                guidance_params={"guidance_scale": 3.0}, prompts=prompts,
                cond_kwargs=cond_kwargs, uncond_kwargs=uncond_kwargs, seeds=[0, 1])
"""
import math
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch

from .base import Cancelled, GuidanceContext, Guided, Param, SamplerError, SamplingRun, validate_params
from .hookspecs import hookimpl
from .registry import Registry, get_registry

__all__ = ["sample", "Cancelled", "GuidanceContext", "Guided", "Param", "SamplerError", "SamplingRun",
           "Registry", "get_registry", "hookimpl", "respace", "seeded_noise"]


def respace(diffusion, steps: Union[int, str]):
    """The model's diffusion respaced to `steps` (an int in [1, original steps], or a spec like "fast27")."""
    if isinstance(steps, str) and not steps.isdigit():
        try:
            return diffusion.respaced(steps)
        except ValueError as e:
            raise SamplerError(f"bad step schedule {steps!r}: {e}") from None
    if isinstance(steps, float) and not steps.is_integer():
        raise SamplerError(f"steps must be a whole number, got {steps}")
    steps = int(steps)
    if not 1 <= steps <= diffusion.original_num_steps:
        raise SamplerError(f"steps must be between 1 and {diffusion.original_num_steps} (the model's "
                           f"diffusion steps), got {steps}")
    return diffusion.respaced(str(steps))


def seeded_noise(seeds: Sequence[int], device) -> Callable[[torch.Tensor], torch.Tensor]:
    """noise_like(x): row i drawn from its own generator seeded with seeds[i], on the CPU.

    Drawing per item means item i of a batch equals the same seed sampled alone, and drawing on
    the CPU makes the noise identical on every device.
    """
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def noise_like(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(generators):
            raise ValueError(f"batch of {x.shape[0]} but {len(generators)} seeds")
        rows = [torch.randn(x.shape[1:], generator=g) for g in generators]
        return torch.stack(rows).to(device=x.device, dtype=x.dtype)

    return noise_like


def sample(model, diffusion, shape: Sequence[int], *, steps: Union[int, str], prompts: List[str],
           cond_kwargs: Dict, uncond_kwargs: Optional[Dict] = None, sampler: str = "ddpm",
           sampler_params: Optional[Dict] = None, guidance: str = "classifier-free",
           guidance_params: Optional[Dict] = None, components: Optional[Dict] = None,
           seeds: Optional[Sequence[int]] = None,
           denoised_fn: Optional[Callable] = None, clip_denoised: bool = True, temperature: float = 1.0,
           callback: Optional[Callable] = None, should_stop: Optional[Callable[[], bool]] = None,
           registry: Optional[Registry] = None) -> torch.Tensor:
    """Sample a batch [shape] with the named step rule and guidance strategy.

    `cond_kwargs` / `uncond_kwargs` are the model's keyword arguments for the prompts and for the
    empty or negative prompt. `components` holds what the strategy `requires` (e.g. {"clip": ...}).
    `seeds[i]` seeds item i. `temperature` scales the initial noise (GLIDE's upsampler uses 0.997).
    Raises SamplerError for bad names or parameters, Cancelled when stopped.
    """
    registry = registry or get_registry()
    rule = registry.step_rule(sampler)
    strategy = registry.guidance_strategy(guidance)
    rule_params = validate_params(rule, sampler_params or {})
    strategy_params = validate_params(strategy, guidance_params or {})
    if not (math.isfinite(float(temperature)) and float(temperature) > 0):
        raise SamplerError(f"temperature must be a positive number, got {temperature}")
    spaced = respace(diffusion, steps)
    device = next(model.parameters()).device
    seeds = list(range(shape[0])) if seeds is None else list(seeds)
    noise_like = seeded_noise(seeds, device)

    ctx = GuidanceContext(model=model, prompts=list(prompts), cond_kwargs=cond_kwargs,
                          uncond_kwargs=uncond_kwargs if uncond_kwargs is not None else cond_kwargs,
                          components=dict(components or {}))
    guided = strategy.prepare(ctx, **strategy_params)
    run = SamplingRun(diffusion=spaced, guided=guided, noise_like=noise_like, denoised_fn=denoised_fn,
                      clip_denoised=clip_denoised, callback=callback, should_stop=should_stop)
    x_T = noise_like(torch.empty(shape, device=device)) * temperature
    with torch.no_grad():
        return rule.sample(run, x_T, **rule_params)
