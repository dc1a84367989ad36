"""The plugin contract for step rules, guidance strategies and the components they need.

This module is the reference: a plugin that uses only what is documented here works with the
pipeline, the CLI, the demo and the comparison, and needs nothing else from the project.

A plugin is any module or object with functions marked `@hookimpl` (named as the hooks below).
Built-ins are written exactly this way (`samplers.builtin_rules`, `samplers.builtin_guidance`), and a
third-party package is picked up when it advertises the entry-point group `glide.samplers`:

    [project.entry-points."glide.samplers"]
    my_plugin = "my_package.my_module"

Import what you use from `samplers`: `hookimpl`, `Param`, `Guided`, `SamplerError`. The two axes
are independent: any guidance strategy works with any step rule.

**Parameters.** `params` is a list of `samplers.Param(name, type, default, min, max, help)`, with
type int, float, bool or str. Values arrive validated: coerced to the type (booleans parsed from
"true"/"false", "yes"/"no", "on"/"off", "1"/"0"), finite, within [min, max], defaults filled in.
UIs build their controls from these; `--param NAME=VALUE` sets them on the command line.

**Step rule** (how x_t becomes x_{t-1}): an object with
    name: str                      the name users choose it by (`--sampler NAME`)
    description: str               one line for menus and `glide samplers`
    params: list[Param]
    sample(run: SamplingRun, x: Tensor, **params) -> Tensor
`sample` starts from x = x_T [N, C, H, W] and returns the final sample. It may use exactly these
members of `run` (a `samplers.SamplingRun`):
    run.timesteps                  indices of the respaced process, high to low (a list of int)
    run.t_batch(index, x)          that index for every item: a long tensor [N]
    run.denoise(x, t)              the guided model's p(x_{t-1} | x_t): a dict with "mean",
                                   "variance", "log_variance" and "pred_xstart" (x0, already clamped
                                   and passed through the run's denoised_fn), tensors like x
    run.guide_mean(out, x, t)      gradient guidance for ancestral rules: `out` with its mean
                                   shifted by variance * grad log p(y|x_t) (the reference's DDPM)
    run.guide_score(out, x, t)     gradient guidance for eps/ODE rules: `out` with epsilon shifted
                                   and the guided x0 clamped again. Apply gradient guidance only
                                   through these two; both return `out` unchanged when the strategy
                                   has no gradient, so call one on every step
    run.noise_like(x)              the only source of randomness: standard normal noise like x,
                                   drawn per item from that item's seed
    run.report(i, x0)              after every step i (0-based): progress, previews and
                                   cancellation (it raises `samplers.Cancelled` to stop the run)
    run.diffusion                  the respaced Gaussian diffusion; of it, rules may use
                                   num_timesteps, alphas_cumprod and alphas_cumprod_prev (float64
                                   numpy arrays indexed by run.timesteps' values),
                                   p_sample_from(out, x, t, noise=...) (one DDPM step from `out`),
                                   ddim_sample_from(out, x, t, eta=..., noise=...) (one DDIM step),
                                   q_posterior_mean_variance(x0, x_t, t) and q_sample(x0, t, noise)

**Guidance strategy** (how the prediction is steered): an object with
    name: str, description: str, params: list[Param]
    scale: str | None              the name of the parameter that is this strategy's guidance scale
                                   (it must be one of `params`), or None. `--guidance-scale`, the
                                   demo's scale inputs and comparison sweeps set it
    requires: tuple[str, ...]      components the strategy needs, e.g. ("clip",): a family's own
                                   ("base", "upsample", "clip", ...) or one a plugin provides
                                   through `glide_components`; the pipeline loads each once
    prepare(ctx: GuidanceContext, **params) -> Guided
`ctx` (a `samplers.GuidanceContext`) gives `ctx.model(x, t, **kwargs)` (raw output [N, 2C, H, W],
t on the original scale), `ctx.prompts`, `ctx.cond_kwargs` / `ctx.uncond_kwargs` (the model's
keyword arguments for the prompts and for the empty or negative prompt; their tensors have the
batch first) and `ctx.component(name)` for each required component. Return
`Guided(model_fn, cond_fn=None)`: `model_fn(x, t, **kw)` returns the (combined) raw model output
[N, 2C, H, W]; `cond_fn(x, t, **kw)`, or None, returns grad log p(y | x_t) [N, C, H, W] with t on
the original scale; the step rule applies it through guide_mean / guide_score.
"""
import pluggy

PROJECT = "glide.samplers"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def glide_step_rules():
    """Return a list of step-rule objects this plugin provides."""


@hookspec
def glide_guidance_strategies():
    """Return a list of guidance-strategy objects this plugin provides."""


@hookspec
def glide_components():
    """Return {name: load} for components this plugin provides, e.g. a classifier a strategy `requires`.

    `load(family: str, device: torch.device)` returns the component (an nn.Module or any object the
    strategy understands) for the named model family, on `device`; it may raise
    `samplers.SamplerError` to say the family has no such component. The pipeline calls it once
    per family and device and keeps the result. A family's own components take precedence.
    """
