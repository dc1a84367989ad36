"""What step rules and guidance strategies exchange: parameters, the sampling run, guidance context."""
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch


class SamplerError(ValueError):
    """A bad sampler request (unknown plugin, parameter out of range, ...); the message says what is allowed."""


class Cancelled(RuntimeError):
    """Sampling stopped between steps because `should_stop()` said so."""


@dataclass(frozen=True)
class Param:
    """A plugin parameter, described so that a UI or CLI can build a control for it."""

    name: str
    type: type
    default: Any
    min: Optional[float] = None
    max: Optional[float] = None
    help: str = ""

    def validate(self, value):
        """Coerce and check `value`; raise SamplerError naming the allowed range."""
        try:
            value = self.type(value)
        except (TypeError, ValueError):
            raise SamplerError(f"{self.name} must be a {self.type.__name__}, got {value!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise SamplerError(f"{self.name} must be a finite number, got {value}")
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise SamplerError(f"{self.name}={value} is out of range [{self.min}, {self.max}]")
        return value

    def describe(self) -> dict:
        return {"name": self.name, "type": self.type.__name__, "default": self.default, "min": self.min,
                "max": self.max, "help": self.help}


def validate_params(plugin, given: Dict[str, Any]) -> Dict[str, Any]:
    """Defaults filled in, every value checked; unknown names are an error listing the known ones."""
    known = {p.name: p for p in plugin.params}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise SamplerError(f"{plugin.name!r} has no parameter(s) {unknown}; its parameters: {sorted(known) or 'none'}")
    return {name: p.validate(given.get(name, p.default)) for name, p in known.items()}


@dataclass
class GuidanceContext:
    """What a guidance strategy may use to steer one sampling run.

    `cond_kwargs`/`uncond_kwargs` are the model's keyword arguments for the prompts and for the
    empty (or negative) prompt; both already hold the encoded text, computed once per run.
    """

    model: Callable
    prompts: List[str]
    cond_kwargs: Dict[str, Any]
    uncond_kwargs: Dict[str, Any]
    clip: Any = None


@dataclass
class Guided:
    model_fn: Callable
    cond_fn: Optional[Callable] = None


@dataclass
class SamplingRun:
    """One sampling run as a step rule sees it.

    `diffusion` is the respaced process; `timesteps` its indices, high to low; `denoise(x, t)`
    returns p_mean_variance's dict (mean, variance, log_variance, pred_xstart) for t [N];
    `noise_like(x)` is the only source of randomness (per-item seeded generators).
    """

    diffusion: Any
    guided: Guided
    noise_like: Callable[[torch.Tensor], torch.Tensor]
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    denoised_fn: Optional[Callable] = None
    clip_denoised: bool = True
    callback: Optional[Callable[[int, int, torch.Tensor], None]] = None
    should_stop: Optional[Callable[[], bool]] = None

    @property
    def timesteps(self) -> Sequence[int]:
        return list(range(self.diffusion.num_timesteps))[::-1]

    @property
    def cond_fn(self):
        return self.guided.cond_fn

    def t_batch(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), index, device=x.device, dtype=torch.long)

    def denoise(self, x, t):
        return self.diffusion.p_mean_variance(self.guided.model_fn, x, t, clip_denoised=self.clip_denoised,
                                              denoised_fn=self.denoised_fn, model_kwargs=self.model_kwargs)

    def guide_score(self, out, x, t):
        """Score-based guidance for the ODE rules (DDIM, DPM-Solver): `condition_score`, then the guided
        x0 clamped to [-1, 1] (and passed through `denoised_fn`) as the model's own x0 is.

        Unclamped, the first steps from a near-zero-SNR start (the cosine schedule's abar_T ~ 1e-8)
        multiply the gradient's shift of epsilon by about sqrt(abar_prev / abar), hundreds of times:
        CLIP guidance at any useful scale then destroys the image. The reference only guides DDPM
        (condition_mean), where this does not arise.
        """
        out = self.diffusion.condition_score(self.cond_fn, out, x, t, self.model_kwargs)
        x0 = out["pred_xstart"]
        if self.denoised_fn is not None:
            x0 = self.denoised_fn(x0)
        if self.clip_denoised:
            x0 = x0.clamp(-1, 1)
        out["pred_xstart"] = x0
        out["mean"], _, _ = self.diffusion.q_posterior_mean_variance(x0, x, t)
        return out

    def report(self, i: int, pred_xstart: torch.Tensor):
        """After step i (0-based) of len(timesteps): progress callback, then the cancellation check."""
        if self.callback is not None:
            self.callback(i, self.diffusion.num_timesteps, pred_xstart)
        if self.should_stop is not None and self.should_stop():
            raise Cancelled(f"sampling cancelled after step {i + 1} of {self.diffusion.num_timesteps}")
