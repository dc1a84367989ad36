"""The plugin contract for step rules and guidance strategies (pluggy project name "glide.samplers").

A plugin is any module or object with functions marked `@hookimpl` (named as below). Built-ins are
written exactly this way (`samplers.builtin_rules`, `samplers.builtin_guidance`), and a third-party
package is picked up when it advertises the entry-point group `glide.samplers`:

    [project.entry-points."glide.samplers"]
    my_plugin = "my_package.my_module"

The two axes are independent: any guidance strategy works with any step rule.

**Step rule** (how x_t becomes x_{t-1}): an object with
    name: str, description: str, params: list[samplers.Param], stochastic: bool
    sample(run: samplers.SamplingRun, x: Tensor, **params) -> Tensor
`sample` walks `run.timesteps` (indices of the respaced process, high to low), asks
`run.denoise(x, t)` for p(x_{t-1}|x_t) and the x0 prediction (guidance already applied), applies
`run.cond_fn` through `run.diffusion.condition_mean` (mean-based rules) or `condition_score`
(eps/ODE rules), draws noise only from `run.noise_like(x)`, and calls `run.report(i, x0)` after
every step (progress, previews and cancellation).

**Guidance strategy** (how the prediction is steered): an object with
    name: str, description: str, params: list[samplers.Param], needs_clip: bool
    prepare(ctx: samplers.GuidanceContext, **params) -> samplers.Guided
`Guided.model_fn(x, t, **kw)` returns the (combined) raw model output [N, 2C, H, W];
`Guided.cond_fn(x, t, **kw)`, or None, returns a gradient of log p(y | x_t) (t on the original scale).
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
