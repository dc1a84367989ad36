"""The plugin contract for step rules, guidance strategies and the components they need.

This module is the reference: a plugin that uses only what is documented here works with the
pipeline, the CLI, the demo and the comparison, and needs nothing else from the project.

A plugin is any module or object with functions marked `@hookimpl` (named as the hooks below).
Built-ins are written exactly this way (`samplers.builtin_rules`, `samplers.builtin_solvers`,
`samplers.builtin_guidance`), and a third-party package is picked up when it advertises the
entry-point group `glide.samplers`:

    [project.entry-points."glide.samplers"]
    my_plugin = "my_package.my_module"

Import what you use from `samplers`: `hookimpl`, `Param`, `Guided`, `SamplerError`, `concat_kwargs`,
`ComponentRequest`. The two axes are independent: any guidance strategy works with any step rule.
A plugin that fails to import, whose hook raises, whose rule or strategy lacks a member listed
below, or that reuses a name already registered (the built-ins' included) is left out with a
`samplers.PluginWarning` naming it; every other plugin still works.

**Parameters.** `params` is a list of `samplers.Param(name, type, default, min, max, help, choices)`,
with type int, float, bool or str; `choices`, a tuple of strings, limits a str parameter to those
(UIs show a menu). Values arrive validated: coerced to the type (booleans parsed from
"true"/"false", "yes"/"no", "on"/"off", "1"/"0"), finite, within [min, max], one of the choices,
defaults filled in. UIs build their controls from these; `--param NAME=VALUE` sets them on the
command line. A value that needs more checking (a str's format) is checked in `prepare` or
`timesteps`, raising `SamplerError` with a message that says what is allowed.

**Threads, gradients, dtypes.** One rule or strategy object serves every run, from several worker
threads at once: keep per-run state in local variables (`sample`'s, or the closures `prepare`
returns), never on `self`. Sampling runs under `torch.no_grad()`; a `cond_fn` that differentiates
must enable it itself (`with torch.enable_grad(): x = x.detach().requires_grad_(True) ...`). x, the
model's raw output and every tensor of `run` and `ctx` are float32, whatever precision the model
runs in; the schedule's arrays are float64 numpy arrays. Return tensors shaped and typed like x.

**Step rule** (how x_t becomes x_{t-1}): an object with
    name: str                      the name users choose it by (`--sampler NAME`)
    description: str               one line for menus and `glide samplers`
    params: list[Param]
    sample(run: SamplingRun, x: Tensor, **params) -> Tensor
    timesteps(trained, steps: int, **params) -> list[int]      (optional)
`timesteps`, when a rule has it, picks the timesteps to visit: any distinct timesteps of the
trained process (`trained.num_timesteps` of them, abar of each in `trained.alphas_cumprod`, a
float64 numpy array indexed by original t), from the `steps` the user asked for; the run then has
exactly those (`--steps` must then be a number, not a schedule like "fast27"), and the step count
every progress bar shows is how many it picked. Without it the run has `steps` spaced evenly, or
by the schedule given, as the reference's respacing does. `samplers.noise_spaced_timesteps(
trained.alphas_cumprod, steps, spacing)` gives the built-in spacings ("time", "logsnr", "karras").
`sample` starts from x = x_T [N, C, H, W] and returns the final sample x_0 [N, C, H, W] (the
pipeline clamps it to [-1, 1]; returning the last x0 prediction is the usual final step).
**An intermediate start** (image-to-image and sketch editing, a `strength` s below 1) needs nothing more
from a rule: the run's process is then the tail of the one the rule would run (of the n timesteps it
spaced or picked, the last max(1, round(s n))), `run.timesteps` lists only those, and x is the starting
image noised to the first of them, x_t = alpha_t x0 + sigma_t eps, not pure noise. So a rule starts from
run.timesteps[0] and reads each timestep's noise level from `run.diffusion.alphas_cumprod`, as always; it
must not assume that x starts as pure noise, nor that the first timestep is the trained process's last
(`timesteps`, when a rule has it, still picks for the full count). Such a run costs round(s n) steps. It may
use exactly these members of `run` (a `samplers.SamplingRun`):
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
    run.report(i, x0)              exactly once after each step i = 0, 1, ..., len(run.timesteps) - 1,
                                   in order: progress bars (planned from len(run.timesteps)),
                                   previews and cancellation (it raises `samplers.Cancelled`)
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
    uses_negative_prompt: bool     optional (default True): False for a strategy that never reads
                                   ctx.uncond_kwargs, so that a negative prompt given with it is
                                   dropped from the settings and its user told so
    prepare(ctx: GuidanceContext, **params) -> Guided
`prepare` runs once per sampling run. `ctx` (a `samplers.GuidanceContext`) gives
    ctx.model(x, t, **kwargs)      the diffusion model: raw output [N, 2C, H, W] (mean channels,
                                   then the learned variance's), t [N] on the original scale
    ctx.cond_kwargs, ctx.uncond_kwargs   its keyword arguments for the prompts and for the empty or
                                   negative prompt (tensors with the batch first, text encoded
                                   once); `concat_kwargs(a, b)` joins two along the batch, so both
                                   halves run as one call on torch.cat([x, x]), torch.cat([t, t])
    ctx.prompts                    the prompts, one per item
    ctx.component(name)            each required component
    ctx.prediction                 what the mean channels predict: "epsilon" (GLIDE) or "v" (the
                                   shapes family)
    ctx.alpha_sigma(t)             (alpha, sigma) = (sqrt(abar_t), sqrt(1 - abar_t)) for original t,
                                   float32 [N, 1, 1, 1]; x_t = alpha x0 + sigma eps, EDM's noise
                                   level is sigma / alpha
    ctx.predictions(out, x, t)     (x0, eps) that a raw output predicts at x (x0 unclamped)
    ctx.model_output(x0, eps, t, variance)   the raw output [N, 2C, H, W] predicting a pair with
                                   x_t = alpha x0 + sigma eps (any mix of the branches' pairs with
                                   the same weights is one), `variance` its variance channels
Return `Guided(model_fn, cond_fn=None)`. `model_fn(x, t)` returns the (combined) raw output
[N, 2C, H, W]; `cond_fn(x, t)`, or None, returns grad log p(y | x_t) [N, C, H, W], or None to
leave that step unguided (cheaper than a zero gradient, and exactly the unguided step). Both are called
with t on the original scale and no keyword arguments (take anything else from `ctx`), at each
step's t, once or more per step depending on the rule: schedule a scale over the steps by t or by
the noise level `ctx.alpha_sigma(t)`, not by counting calls. The step rule applies `cond_fn`
through guide_mean / guide_score.
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

    `load(request: samplers.ComponentRequest)` returns the component (an nn.Module or any object the
    strategy understands) for `request.family` (the family's name), on `request.device`, for a
    pipeline whose diffusion models run in `request.dtype` ("float32", "bfloat16" or "float16"; a
    component may run in float32 regardless, as the family's CLIP does), with checkpoints under
    `request.checkpoint_dir` (None: the default cache) and base images of `request.image_size`
    pixels. It may raise `samplers.SamplerError` to say the family has no such component. The
    pipeline calls it once per pipeline and keeps the result. A name that is one of a family's own
    components ("base", "upsample", "clip", "base-inpaint", "upsample-inpaint") is the family's:
    a plugin's component of that name is never loaded, with a `samplers.PluginWarning` when asked for.
    """
