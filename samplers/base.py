"""What step rules and guidance strategies exchange: parameters, the sampling run, guidance context."""
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from glide.errors import Cancelled, SamplerError

_TRUE_WORDS = {"true", "1", "yes", "on"}
_FALSE_WORDS = {"false", "0", "no", "off"}


class PluginWarning(UserWarning):
    """A plugin left out of the registry (it failed to import, its hook raised, it broke the contract, or it
    reused a name); the message names it, and everything else still works."""


@dataclass(frozen=True)
class Param:
    """A plugin parameter, described so that a UI or CLI can build a control for it."""

    name: str
    type: type
    default: Any
    min: Optional[float] = None
    max: Optional[float] = None
    help: str = ""
    choices: Optional[Tuple[str, ...]] = None   # a str parameter's allowed values (UIs show a menu)

    def validate(self, value):
        """Coerce and check `value`; raise SamplerError naming the allowed range or choices.

        Booleans are parsed, not cast: "false", "0", "no" and "off" (any case) are False, as a
        command-line `--param x=false` or a JSON string means, where bool("false") would be True.
        """
        if self.type is bool:
            return self._boolean(value)
        if self.choices is not None:
            if str(value) not in self.choices:
                raise SamplerError(f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}")
            return str(value)
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
                "max": self.max, "help": self.help, "choices": list(self.choices) if self.choices else None}


def validate_params(plugin, given: Dict[str, Any]) -> Dict[str, Any]:
    """Defaults filled in, every value checked; unknown names are an error listing the known ones."""
    known = {p.name: p for p in plugin.params}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise SamplerError(f"{plugin.name!r} has no parameter(s) {unknown}; its parameters: {sorted(known) or 'none'}")
    return {name: p.validate(given.get(name, p.default)) for name, p in known.items()}


@dataclass
class GuidanceContext:
    """What a guidance strategy may use to steer one sampling run (the contract: samplers.hookspecs).

    `model(x, t, **kwargs)` is the diffusion model (raw output [N, 2C, H, W], t on the original
    scale). `cond_kwargs`/`uncond_kwargs` are its keyword arguments for the prompts and for the
    empty (or negative) prompt; both already hold the encoded text, computed once per run.
    `components` holds every component the strategy `requires`, loaded once by the pipeline
    (e.g. components["clip"], the family's noised CLIP). `prediction` is what the model's mean
    channels predict ("epsilon" or "v"), `alphas_cumprod` the trained process's abar by original t.
    """

    model: Callable
    prompts: List[str]
    cond_kwargs: Dict[str, Any]
    uncond_kwargs: Dict[str, Any]
    components: Dict[str, Any] = field(default_factory=dict)
    prediction: str = "epsilon"
    alphas_cumprod: Optional[np.ndarray] = None
    _abar: Dict[Any, torch.Tensor] = field(default_factory=dict, repr=False)

    def component(self, name: str):
        """A required component; a SamplerError naming it when the run was not given it."""
        if name not in self.components:
            raise SamplerError(f"this guidance needs the component {name!r}, which this run was not given "
                               f"(declare it in the strategy's `requires`)")
        return self.components[name]

    def alpha_sigma(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(alpha, sigma) = (sqrt(abar_t), sqrt(1 - abar_t)) for original-scale t [N]: float32 [N, 1, 1, 1]."""
        if self.alphas_cumprod is None:
            raise SamplerError("this run was not given the trained process's alphas_cumprod")
        if t.device not in self._abar:
            self._abar[t.device] = torch.from_numpy(np.asarray(self.alphas_cumprod, dtype=np.float64)).to(t.device)
        abar = self._abar[t.device][t.long()].view(-1, 1, 1, 1)
        return abar.sqrt().float(), (1 - abar).sqrt().float()

    def predictions(self, output: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) that a raw model output [N, 2C, H, W] (or its mean channels [N, C, H, W]) predicts at x_t."""
        mean = output[:, :x.shape[1]].float()
        alpha, sigma = self.alpha_sigma(t)
        if self.prediction == "v":
            return alpha * x - sigma * mean, sigma * x + alpha * mean
        return (x - sigma * mean) / alpha, mean

    def model_output(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        """The raw model output [N, 2C, H, W] that predicts (x0, eps), a pair with x_t = alpha x0 + sigma eps,
        with `variance` [N, C, H, W] as its variance channels (e.g. the conditional output's [:, C:]).

        Linear mixes of the branches' pairs (same weights for x0 and eps) keep that identity; for an x0 of
        your own, eps = (x - alpha x0) / sigma. Both are taken so no conversion divides by a tiny alpha or sigma.
        """
        if self.prediction == "v":
            alpha, sigma = self.alpha_sigma(t)
            mean = alpha * eps - sigma * x0
        else:
            mean = eps
        return torch.cat([mean.to(variance.dtype), variance], dim=1)


@dataclass(frozen=True)
class ComponentRequest:
    """What a plugin's component loader (`glide_components`) is asked for: the model family by name, the
    device, the precision the family's diffusion models run in ("float32", "bfloat16", "float16"), the
    checkpoint directory the pipeline was given (None: the default cache) and the base model's image size."""

    family: str
    device: torch.device
    dtype: str
    checkpoint_dir: Optional[Path]
    image_size: int


@dataclass
class Guided:
    """A prepared strategy: `model_fn(x, t, **kw)` returns the (combined) raw model output [N, 2C, H, W];
    `cond_fn(x, t, **kw)`, or None, returns grad log p(y | x_t) [N, C, H, W], or None for no gradient at
    that step (t on the original scale)."""

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
        (`condition_mean`, as the reference guides p_sample). `out` unchanged without a gradient at this step."""
        gradient = self._gradient(x, t)
        if gradient is None:
            return out
        out = dict(out)
        out["mean"] = self.diffusion.condition_mean(lambda *_: gradient, out, x, t)
        return out

    def _gradient(self, x, t):
        """cond_fn at this step (t: indices of the respaced process), or None: no cond_fn, or it gives none here."""
        return None if self.cond_fn is None else self.cond_fn(x, self.diffusion.model_timesteps(t))

    def guide_score(self, out, x, t):
        """Gradient guidance for eps/ODE rules (DDIM, DPM-Solver): `condition_score`, then the guided
        x0 clamped to [-1, 1] (and passed through `denoised_fn`) as the model's own x0 is.

        Unclamped, the first steps from a near-zero-SNR start (the cosine schedule's abar_T ~ 1e-8)
        multiply the gradient's shift of epsilon by about sqrt(abar_prev / abar), hundreds of times:
        CLIP guidance at any useful scale then destroys the image. The reference only guides DDPM
        (condition_mean), where this does not arise. `out` unchanged without a gradient at this step.
        """
        gradient = self._gradient(x, t)
        if gradient is None:
            return out
        out = self.diffusion.condition_score(lambda *_: gradient, out, x, t)
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
