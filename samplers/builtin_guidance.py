"""Built-in guidance strategies: none, classifier-free, classifier-free rescaled, CLIP.

Classifier-free (plain and rescaled) and CLIP guidance take an `interval` of noise levels to guide in
(Kynkaanniemi et al. 2024, "Applying Guidance in a Limited Interval Improves Sample and Distribution
Quality in Diffusion Models", arXiv 2404.07724): guidance at high noise costs diversity for little
gain, at low noise it does little; outside the interval a step is the conditional model's alone.

Registered through the same hooks a third-party plugin uses (see samplers.hookspecs).
"""
import torch

from .base import Guided, Param, SamplerError
from .hookspecs import hookimpl


def concat_kwargs(a: dict, b: dict) -> dict:
    """Concatenate two model-kwarg dicts along the batch (tensors, and dicts of tensors such as text_emb)."""
    out = {}
    for key, value in a.items():
        if isinstance(value, dict):
            out[key] = concat_kwargs(value, b[key])
        elif isinstance(value, torch.Tensor):
            out[key] = torch.cat([value, b[key]], dim=0)
        else:
            out[key] = value
    return out


class NoGuidance:
    name = "none"
    description = "The text-conditional model as it is, unguided"
    params = []
    scale = None
    requires = ()
    uses_negative_prompt = False

    def prepare(self, ctx):
        return Guided(model_fn=lambda x, t, **_: ctx.model(x, t, **ctx.cond_kwargs))


# The paper's interval for SD-XL, in EDM's sigma: on 10 time-uniform steps of a cosine schedule it guides the
# middle 6 (sigma 2.8 to 0.38). The trade-off sweep measures it and the `fast` preset uses it.
SDXL_INTERVAL = "0.28,5.42"
INTERVAL = Param("interval", str, "", help=(
    "LOW,HIGH: guide only where the noise level sigma = sqrt((1 - abar) / abar) is in (LOW, HIGH] (the paper's "
    "SD-XL interval: 0.28,5.42); empty = every step. Outside, a step is the conditional model's alone"))


def noise_interval(text: str):
    """(low, high) from an `interval` parameter's "LOW,HIGH", or None for every step; SamplerError when malformed."""
    if not text.strip():
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise SamplerError(f"interval must be LOW,HIGH (two noise levels sigma, e.g. 0.28,5.42) or empty, "
                           f"got {text!r}") from None
    if not 0 <= low < high:
        raise SamplerError(f"interval {text!r}: need 0 <= LOW < HIGH")
    return low, high


def guided_here(ctx, interval, t):
    """Which items of t [N] (original scale) lie inside the interval: a bool tensor [N] (all True without one)."""
    if interval is None:
        return torch.ones(t.shape, dtype=torch.bool, device=t.device)
    alpha, sigma = ctx.alpha_sigma(t)
    level = (sigma / alpha).view(-1)
    return (level > interval[0]) & (level <= interval[1])


def two_branches(ctx, guided_fn, interval):
    """model_fn running the conditional and unconditional halves as one batch where guidance applies and
    only the conditional half elsewhere. guided_fn(cond, uncond, x, t) combines two raw outputs."""
    both = concat_kwargs(ctx.cond_kwargs, ctx.uncond_kwargs)

    def model_fn(x, t, **_):
        inside = guided_here(ctx, interval, t)
        if not inside.any():
            return ctx.model(x, t, **ctx.cond_kwargs)
        cond, uncond = ctx.model(torch.cat([x, x]), torch.cat([t, t]), **both).chunk(2)
        out = guided_fn(cond, uncond, x, t)
        return out if inside.all() else torch.where(inside.view(-1, 1, 1, 1), out, cond)

    return model_fn


class ClassifierFree:
    name = "classifier-free"
    description = ("Mixes the model's predictions with and without the prompt: 0 ignores the prompt, "
                   "1 is the plain conditional model, larger follows the prompt more closely")
    params = [Param("guidance_scale", float, 3.0, 0.0, 50.0,
                    "s in eps(x|empty) + s * (eps(x|prompt) - eps(x|empty)): 0 = ignore the prompt, "
                    "1 = the conditional model as trained (no extra push), larger = closer to the prompt"),
              INTERVAL]
    scale = "guidance_scale"
    requires = ()

    def prepare(self, ctx, guidance_scale=3.0, interval=""):
        interval = noise_interval(interval)
        if guidance_scale == 1.0:  # exactly the conditional model; skip the unconditional half
            return NoGuidance().prepare(ctx)

        def mix(cond, uncond, x, t):
            c = x.shape[1]
            mean = uncond[:, :c] + guidance_scale * (cond[:, :c] - uncond[:, :c])
            return torch.cat([mean, cond[:, c:]], dim=1)

        return Guided(model_fn=two_branches(ctx, mix, interval))


class CFGRescale:
    """Classifier-free guidance rescaled (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps
    are Flawed", section 3.4): the guided x0 is scaled so its standard deviation moves towards the
    conditional x0's, x0 * (phi * std(x0_cond) / std(x0_cfg) + 1 - phi), per image. Large scales otherwise
    inflate x0 (over-saturated colour). Done on x0, where the over-exposure is, so it means the same for
    epsilon and v models (the paper's listing rescales its v-model's raw output)."""

    name = "cfg-rescale"
    description = "Classifier-free guidance with the guided x0's spread pulled back to the conditional one's (phi)"
    params = [Param("guidance_scale", float, 3.0, 0.0, 50.0,
                    "classifier-free scale s: 1 = the conditional model, larger = closer to the prompt"),
              Param("phi", float, 0.7, 0.0, 1.0, "how much of the rescale: 0 = plain classifier-free, "
                                                 "1 = the conditional x0's spread exactly (the paper uses 0.7)"),
              INTERVAL]
    scale = "guidance_scale"
    requires = ()

    def prepare(self, ctx, guidance_scale=3.0, phi=0.7, interval=""):
        interval = noise_interval(interval)
        if guidance_scale == 1.0:  # the guided x0 is the conditional one: nothing to rescale
            return NoGuidance().prepare(ctx)

        def rescaled(cond, uncond, x, t):
            x0_cond, eps_cond = ctx.predictions(cond, x, t)
            x0_uncond, eps_uncond = ctx.predictions(uncond, x, t)
            x0 = x0_uncond + guidance_scale * (x0_cond - x0_uncond)
            eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
            dims = tuple(range(1, x.ndim))
            factor = phi * x0_cond.std(dims, keepdim=True) / x0.std(dims, keepdim=True) + 1 - phi
            alpha, sigma = ctx.alpha_sigma(t)
            # x0 scaled by `factor` at the same x_t: eps moves by alpha * (1 - factor) * x0 / sigma
            eps = eps + alpha * (1 - factor) * x0 / sigma
            return ctx.model_output(factor * x0, eps, t, cond[:, x.shape[1]:])

        return Guided(model_fn=two_branches(ctx, rescaled, interval))


class ClipGuidance:
    name = "clip"
    description = "Steers each step along the gradient of the noised CLIP's image-text similarity"
    params = [Param("guidance_scale", float, 3.0, 0.0, 1000.0,
                    "gradient scale: 0 = unguided, larger = pushed harder towards CLIP's reading of the prompt"),
              INTERVAL]
    scale = "guidance_scale"
    requires = ("clip",)
    uses_negative_prompt = False   # steers with the prompt's CLIP embedding; the model runs conditional only

    def prepare(self, ctx, guidance_scale=3.0, interval=""):
        interval = noise_interval(interval)
        clip = ctx.component("clip")
        guided = NoGuidance().prepare(ctx)
        if not guidance_scale:
            return guided
        gradient = clip.cond_fn(ctx.prompts, guidance_scale)
        if interval is None:
            guided.cond_fn = gradient
            return guided

        def cond_fn(x, t, **kwargs):
            inside = guided_here(ctx, interval, t)
            if not inside.any():   # no CLIP forward and backward pass outside the interval: an unguided step
                return None
            return gradient(x, t) * inside.view(-1, 1, 1, 1)

        guided.cond_fn = cond_fn
        return guided


@hookimpl
def glide_guidance_strategies():
    return [NoGuidance(), ClassifierFree(), CFGRescale(), ClipGuidance()]
