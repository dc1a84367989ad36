"""Samplers: step rules x guidance strategies, as pluggy plugins, composed by `sample`.

    from samplers import sample
    x0 = sample(model, diffusion, (2, 3, 64, 64), steps=50, sampler="dpm++2m", guidance="classifier-free",
                guidance_params={"guidance_scale": 3.0}, prompts=prompts,
                cond_kwargs=cond_kwargs, uncond_kwargs=uncond_kwargs, seeds=[0, 1])
"""
import math
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from glide.respace import NOISE_SPACINGS, noise_spaced_timesteps, space_timesteps

from .base import (
    Cancelled,
    ComponentRequest,
    GuidanceContext,
    Guided,
    Param,
    PluginWarning,
    SamplerError,
    SamplingRun,
    validate_params,
)
from .builtin_guidance import concat_kwargs
from .hookspecs import hookimpl
from .registry import Registry, get_registry

__all__ = ["sample", "Cancelled", "ComponentRequest", "GuidanceContext", "Guided", "Param", "PluginWarning",
           "SamplerError", "SamplingRun", "Registry", "get_registry", "hookimpl", "concat_kwargs", "respace",
           "seeded_noise", "start_at", "NOISE_SPACINGS", "noise_spaced_timesteps"]


def respace(diffusion, steps: Union[int, str]):
    """The model's diffusion respaced to `steps` (an int in [1, original steps], or a spec like "fast27")."""
    if isinstance(steps, str) and not steps.isdigit():
        try:
            return diffusion.respaced_to(space_timesteps(diffusion.original_num_steps, steps))
        except ValueError as e:
            raise SamplerError(f"bad step schedule {steps!r}: {e}") from None
    if isinstance(steps, float) and not steps.is_integer():
        raise SamplerError(f"steps must be a whole number, got {steps}")
    steps = int(steps)
    if not 1 <= steps <= diffusion.original_num_steps:
        raise SamplerError(f"steps must be between 1 and {diffusion.original_num_steps} (the model's "
                           f"diffusion steps), got {steps}")
    return diffusion.respaced_to(space_timesteps(diffusion.original_num_steps, [steps]))


def respace_for(rule, diffusion, steps: Union[int, str], params: Dict):
    """The process `rule` runs on: the timesteps it picks itself (its optional `timesteps` method), else `steps`
    respaced as the reference does. SamplerError for a schedule spec given to a rule that picks its own, or a
    rule that picks timesteps outside the trained process."""
    choose = getattr(rule, "timesteps", None)
    if choose is None:
        return respace(diffusion, steps)
    if isinstance(steps, str) and not steps.isdigit():
        raise SamplerError(f"the step rule {rule.name!r} picks its own timesteps: give a number of steps, "
                           f"not the schedule {steps!r}")
    count = respace(diffusion, steps).num_timesteps   # the same checks of the number as every rule gets
    trained = diffusion.respaced_to(range(diffusion.original_num_steps))
    chosen = list(choose(trained, count, **params))
    total = diffusion.original_num_steps
    if not chosen or any(int(t) != t or not 0 <= t < total for t in chosen) or len(set(chosen)) != len(chosen):
        raise SamplerError(f"the step rule {rule.name!r} picked timesteps {chosen}: they must be distinct whole "
                           f"numbers in [0, {total - 1}], at least one")
    return diffusion.respaced_to(int(t) for t in chosen)


def start_at(spaced, strength: float):
    """The tail of a respaced process that a run from an intermediate start visits: its last
    max(1, round(strength * n)) timesteps of the n it has (diffusers' image-to-image `strength`). The tail is a
    process of its own, so a step rule runs it from its first timestep as always."""
    if not 0 < strength <= 1:
        raise SamplerError(f"strength must be above 0 and at most 1, got {strength}")
    kept = max(1, round(strength * spaced.num_timesteps))
    return spaced.respaced_to(spaced.timestep_map[:kept])


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
           init_image: Optional[torch.Tensor] = None, strength: float = 1.0,
           callback: Optional[Callable] = None, should_stop: Optional[Callable[[], bool]] = None,
           registry: Optional[Registry] = None) -> torch.Tensor:
    """Sample a batch [shape] with the named step rule and guidance strategy.

    `cond_kwargs` / `uncond_kwargs` are the model's keyword arguments for the prompts and for the
    empty or negative prompt. `components` holds what the strategy `requires` (e.g. {"clip": ...}).
    `seeds[i]` seeds item i. `temperature` scales the initial noise (GLIDE's upsampler uses 0.997).
    `steps` is a number of steps or a respacing spec ("fast27"); a rule that picks its own timesteps
    takes a number only. With `strength` below 1 the run starts from `init_image` [shape] (in [-1, 1]) noised
    to an intermediate time instead of from pure noise, and visits only the last max(1, round(strength *
    steps)) of its timesteps (SDEdit; see `start_at`); strength 1 ignores `init_image`. Returns the rule's
    final sample [shape] (unclamped; the pipeline clamps it). Raises SamplerError for bad names or
    parameters, Cancelled when stopped.
    """
    registry = registry or get_registry()
    rule = registry.step_rule(sampler)
    strategy = registry.guidance_strategy(guidance)
    rule_params = validate_params(rule, sampler_params or {})
    strategy_params = validate_params(strategy, guidance_params or {})
    if not (math.isfinite(float(temperature)) and float(temperature) > 0):
        raise SamplerError(f"temperature must be a positive number, got {temperature}")
    spaced = respace_for(rule, diffusion, steps, rule_params)
    device = next(model.parameters()).device
    seeds = list(range(shape[0])) if seeds is None else list(seeds)
    noise_like = seeded_noise(seeds, device)

    ctx = GuidanceContext(model=model, prompts=list(prompts), cond_kwargs=cond_kwargs,
                          uncond_kwargs=uncond_kwargs if uncond_kwargs is not None else cond_kwargs,
                          components=dict(components or {}), prediction=diffusion.model_mean_type,
                          alphas_cumprod=np.cumprod(1.0 - diffusion.base_betas))
    guided = strategy.prepare(ctx, **strategy_params)
    x_T = noise_like(torch.empty(shape, device=device)) * temperature
    if strength < 1:
        if init_image is None:
            raise SamplerError("a strength below 1 starts from an image: give init_image")
        spaced = start_at(spaced, strength)
        top = torch.full((shape[0],), spaced.num_timesteps - 1, device=device, dtype=torch.long)
        x_T = spaced.q_sample(init_image.to(device=device, dtype=x_T.dtype).expand(shape), top, noise=x_T)
    run = SamplingRun(diffusion=spaced, guided=guided, noise_like=noise_like, denoised_fn=denoised_fn,
                      clip_denoised=clip_denoised, callback=callback, should_stop=should_stop)
    with torch.no_grad():
        return rule.sample(run, x_T, **rule_params)
