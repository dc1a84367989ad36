"""An example glide sampler plugin, written only from `samplers/hookspecs.py`.

* `trailing-ddim`, a step rule that picks its own timesteps: DDIM on the "trailing" spacing of Lin et al.
  2023 (table 2), t_i = round(T - i T / n) - 1, which starts at the last timestep and stops short of t = 0
  (the last step goes straight to x0).
* `apg`, an x0-space guidance strategy: adaptive projected guidance (Sadat et al. 2024, arXiv 2410.02416).
  The classifier-free update x0_cond - x0_uncond is split into its part parallel to x0_cond (which mostly
  over-saturates) and the orthogonal rest; `eta` keeps some of the parallel part, and `norm_limit` caps
  the update's size per image.
"""
import torch

from samplers import Guided, Param, concat_kwargs, hookimpl


class TrailingDDIM:
    name = "trailing-ddim"
    description = "DDIM on trailing timesteps (Lin et al. 2023): from the last timestep down, never t = 0"
    params = []

    def timesteps(self, trained, steps):
        total = trained.num_timesteps
        return sorted({round(total - i * total / steps) - 1 for i in range(steps)}, reverse=True)

    def sample(self, run, x):
        for i, index in enumerate(run.timesteps):
            t = run.t_batch(index, x)
            out = run.guide_score(run.denoise(x, t), x, t)
            out = run.diffusion.ddim_sample_from(out, x, t, eta=0.0, noise=torch.zeros_like(x))
            x = out["sample"]
            run.report(i, out["pred_xstart"])
        return x


class AdaptiveProjectedGuidance:
    name = "apg"
    description = "Adaptive projected guidance: classifier-free guidance in x0 without its saturating part"
    params = [Param("guidance_scale", float, 3.0, 1.0, 50.0, "w: 1 = the conditional model, larger = closer to the prompt"),
              Param("eta", float, 0.0, 0.0, 1.0, "how much of the update parallel to x0 to keep (1 = classifier-free)"),
              Param("norm_limit", float, 0.0, 0.0, 1000.0, "cap on the update's norm per image (0 = none)")]
    scale = "guidance_scale"
    requires = ()

    def prepare(self, ctx, guidance_scale=3.0, eta=0.0, norm_limit=0.0):
        both = concat_kwargs(ctx.cond_kwargs, ctx.uncond_kwargs)

        def model_fn(x, t, **kwargs):
            cond, uncond = ctx.model(torch.cat([x, x]), torch.cat([t, t]), **both).chunk(2)
            x0_cond, _ = ctx.predictions(cond, x, t)
            x0_uncond, _ = ctx.predictions(uncond, x, t)
            update = x0_cond - x0_uncond
            dims = tuple(range(1, x.ndim))
            if norm_limit:
                norm = update.flatten(1).norm(dim=1).view(-1, *[1] * (x.ndim - 1))
                update = update * (norm_limit / norm).clamp(max=1.0)
            unit = x0_cond / x0_cond.flatten(1).norm(dim=1).clamp(min=1e-8).view(-1, *[1] * (x.ndim - 1))
            parallel = (update * unit).sum(dims, keepdim=True) * unit
            x0 = x0_cond + (guidance_scale - 1) * (update - parallel + eta * parallel)
            alpha, sigma = ctx.alpha_sigma(t)
            return ctx.model_output(x0, (x - alpha * x0) / sigma, t, cond[:, x.shape[1]:])

        return Guided(model_fn)


@hookimpl
def glide_step_rules():
    return [TrailingDDIM()]


@hookimpl
def glide_guidance_strategies():
    return [AdaptiveProjectedGuidance()]
