"""What step rules and guidance strategies exchange: parameters, the sampling run, guidance context."""
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from glide.errors import Cancelled, SamplerError

_TRUE_WORDS = {"true", "1", "yes", "on"}
_FALSE_WORDS = {"false", "0", "no", "off"}


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
        """Coerce and check `value`; raise SamplerError naming the allowed range.

        Booleans are parsed, not cast: "false", "0", "no" and "off" (any case) are False, as a
        command-line `--param x=false` or a JSON string means, where bool("false") would be True.
        """
        if self.type is bool:
            return self._boolean(value)
        try:
            if isinstance(value, bool) and self.type in (int, float):
                raise TypeError("a boolean is not a number")
            value = self.type(value)
        except (TypeError, ValueError):
            raise SamplerError(f"{self.name} must be a {self.type.__name__}, got {value!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise SamplerError(f"{self.name} must be a finite number, got {value}")
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise SamplerError(f"{self.name}={value} is out of range [{self.min}, {self.max}]")
        return value

    def _boolean(self, value) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
            return value.strip().lower() in _TRUE_WORDS
        raise SamplerError(f"{self.name} must be true or false (also: yes/no, on/off, 1/0), got {value!r}")

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

    `model(x, t, **kwargs)` is the diffusion model (raw output [N, 2C, H, W], t on the original
    scale). `cond_kwargs`/`uncond_kwargs` are its keyword arguments for the prompts and for the
    empty (or negative) prompt; both already hold the encoded text, computed once per run.
    `components` holds every component the strategy `requires`, loaded once by the pipeline
    (e.g. components["clip"], the family's noised CLIP).
    """

    model: Callable
    prompts: List[str]
    cond_kwargs: Dict[str, Any]
    uncond_kwargs: Dict[str, Any]
    components: Dict[str, Any] = field(default_factory=dict)

    def component(self, name: str):
        """A required component; a SamplerError naming it when the run was not given it."""
        if name not in self.components:
            raise SamplerError(f"this guidance needs the component {name!r}, which this run was not given "
                               f"(declare it in the strategy's `requires`)")
        return self.components[name]


@dataclass
class Guided:
    """A prepared strategy: `model_fn(x, t, **kw)` returns the (combined) raw model output [N, 2C, H, W];
    `cond_fn(x, t, **kw)`, or None, returns grad log p(y | x_t) [N, C, H, W] (t on the original scale)."""

    model_fn: Callable
    cond_fn: Optional[Callable] = None


@dataclass
class SamplingRun:
    """One sampling run as a step rule sees it (the full contract is in samplers.hookspecs).

    `diffusion` is the respaced process; `timesteps` its indices, high to low; `denoise(x, t)`
    returns p_mean_variance's dict (mean, variance, log_variance, pred_xstart) for t [N];
    `noise_like(x)` is the only source of randomness (per-item seeded generators).
    """

    diffusion: Any
    guided: Guided
    noise_like: Callable[[torch.Tensor], torch.Tensor]
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
        """Timestep `index` (of the respaced process) for every item of x: a long tensor [N]."""
        return torch.full((x.shape[0],), index, device=x.device, dtype=torch.long)

    def denoise(self, x, t):
        """p(x_{t-1} | x_t) from the guided model: a dict of mean, variance, log_variance, pred_xstart."""
        return self.diffusion.p_mean_variance(self.guided.model_fn, x, t, clip_denoised=self.clip_denoised,
                                              denoised_fn=self.denoised_fn)

    def guide_mean(self, out, x, t):
        """Gradient guidance for ancestral (DDPM-like) rules: the mean shifted by variance * cond_fn
        (`condition_mean`, as the reference guides p_sample). `out` unchanged without a cond_fn."""
        if self.cond_fn is None:
            return out
        out = dict(out)
        out["mean"] = self.diffusion.condition_mean(self.cond_fn, out, x, t)
        return out

    def guide_score(self, out, x, t):
        """Gradient guidance for eps/ODE rules (DDIM, DPM-Solver): `condition_score`, then the guided
        x0 clamped to [-1, 1] (and passed through `denoised_fn`) as the model's own x0 is.

        Unclamped, the first steps from a near-zero-SNR start (the cosine schedule's abar_T ~ 1e-8)
        multiply the gradient's shift of epsilon by about sqrt(abar_prev / abar), hundreds of times:
        CLIP guidance at any useful scale then destroys the image. The reference only guides DDPM
        (condition_mean), where this does not arise. `out` unchanged without a cond_fn.
        """
        if self.cond_fn is None:
            return out
        out = self.diffusion.condition_score(self.cond_fn, out, x, t)
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
