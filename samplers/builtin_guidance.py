"""Built-in guidance strategies: none, classifier-free, CLIP.

Registered through the same hooks a third-party plugin uses (see samplers.hookspecs).
"""
import torch

from .base import Guided, Param
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

    def prepare(self, ctx):
        return Guided(model_fn=lambda x, t, **_: ctx.model(x, t, **ctx.cond_kwargs))


class ClassifierFree:
    name = "classifier-free"
    description = ("Mixes the model's predictions with and without the prompt: 0 ignores the prompt, "
                   "1 is the plain conditional model, larger follows the prompt more closely")
    params = [Param("guidance_scale", float, 3.0, 0.0, 50.0,
                    "s in eps(x|empty) + s * (eps(x|prompt) - eps(x|empty)): 0 = ignore the prompt, "
                    "1 = the conditional model as trained (no extra push), larger = closer to the prompt")]
    scale = "guidance_scale"
    requires = ()

    def prepare(self, ctx, guidance_scale=3.0):
        if guidance_scale == 1.0:  # exactly the conditional model; skip the unconditional half
            return NoGuidance().prepare(ctx)
        both = concat_kwargs(ctx.cond_kwargs, ctx.uncond_kwargs)

        def model_fn(x, t, **_):
            out = ctx.model(torch.cat([x, x]), torch.cat([t, t]), **both)
            cond, uncond = out.chunk(2)
            c = x.shape[1]
            mean = uncond[:, :c] + guidance_scale * (cond[:, :c] - uncond[:, :c])
            return torch.cat([mean, cond[:, c:]], dim=1)

        return Guided(model_fn=model_fn)


class ClipGuidance:
    name = "clip"
    description = "Steers each step along the gradient of the noised CLIP's image-text similarity"
    params = [Param("guidance_scale", float, 3.0, 0.0, 1000.0,
                    "gradient scale: 0 = unguided, larger = pushed harder towards CLIP's reading of the prompt")]
    scale = "guidance_scale"
    requires = ("clip",)

    def prepare(self, ctx, guidance_scale=3.0):
        clip = ctx.component("clip")
        guided = NoGuidance().prepare(ctx)
        if guidance_scale:
            guided.cond_fn = clip.cond_fn(ctx.prompts, guidance_scale)
        return guided


@hookimpl
def glide_guidance_strategies():
    return [NoGuidance(), ClassifierFree(), ClipGuidance()]
