"""Step rules and guidance strategies: reference goldens, guidance identities, plugins, errors, seeds."""
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import samplers
from glide.clip.model_creation import create_clip_model
from glide.evaluation.shapes import GAUSSIAN_RULES, gaussian_ode_errors, solve
from glide.families.shapes import ClipTokens, load_tokenizer, tokenize
from glide.model_creation import create_gaussian_diffusion, create_model_and_diffusion
from glide.respace import space_timesteps
from samplers import Cancelled, Guided, SamplerError, SamplingRun, get_registry

CASES = {"cosine150": ("squaredcos_cap_v2", "150"), "linear_fast27": ("linear", "fast27")}


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("rule,golden", [("ddpm", "p_loop"), ("ddim", "ddim_loop")])
def test_rules_match_reference_loops(reference_dir, case, rule, golden):
    f = load_file(reference_dir / "diffusion.safetensors")
    inp = {k.split("/")[-1]: v for k, v in f.items() if k.startswith(f"{case}/input/")}
    schedule, respacing = CASES[case]
    diffusion = create_gaussian_diffusion(steps=1000, noise_schedule=schedule, timestep_respacing=respacing)

    def loop_model(x, ts, **kw):
        return torch.cat([0.5 * x + inp["loop_E"] * (ts.float() / 1000).view(-1, 1, 1, 1), inp["loop_V"]], dim=1)

    run = SamplingRun(diffusion=diffusion, guided=Guided(loop_model), noise_like=lambda x: inp["loop_noise"].clone())
    out = get_registry().step_rule(rule).sample(run, inp["loop_init"].clone())
    assert rel_err(out, f[f"{case}/{golden}/sample"]) < 1e-4


# --------------------------------------------------------------------------- a tiny text-conditional model
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    encoder = load_tokenizer()
    options = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", num_heads=1,
                   num_head_channels=32, num_heads_upsample=-1, attention_resolutions="8", dropout=0.0,
                   text_ctx=32, xf_width=32, xf_layers=1, xf_heads=1, xf_final_ln=True, xf_padding=True,
                   diffusion_steps=1000, noise_schedule="squaredcos_cap_v2", timestep_respacing="",
                   use_scale_shift_norm=True, resblock_updown=True, use_fp16=False, cache_text_emb=False,
                   inpaint=False, super_res=False)
    model, diffusion = create_model_and_diffusion(**options, tokenizer=encoder)
    with torch.no_grad():
        for p in model.parameters():  # zero-initialised output layers would make every sample alike
            p.add_(torch.randn_like(p) * 0.05)
    clip = create_clip_model(config=dict(logit_scale=100.0, beta_schedule="squaredcos_cap_v2", n_timesteps=1000,
                                         image_size=16, patch_size=4, n_vocab=encoder.n_vocab, max_text_len=32,
                                         n_embd=16, n_head_state_text=8, n_head_text=2, n_xf_blocks_text=1,
                                         n_head_state_image=8, n_head_image=2, n_xf_blocks_image=1),
                             device="cpu", tokenizer=ClipTokens(encoder))
    prompts = ["a small red circle on the left on a blue background", "a big green square at the top"]
    tokens, mask = tokenize(encoder, prompts)
    empty_tokens, empty_mask = tokenize(encoder, [""] * len(prompts))
    return dict(model=model.eval(), diffusion=diffusion, clip=clip, prompts=prompts,
                cond_kwargs={"tokens": tokens, "mask": mask},
                uncond_kwargs={"tokens": empty_tokens, "mask": empty_mask})


def run_tiny(tiny, model=None, **kw):
    args = dict(steps=6, prompts=tiny["prompts"], cond_kwargs=tiny["cond_kwargs"], uncond_kwargs=tiny["uncond_kwargs"],
                components={"clip": tiny["clip"]}, seeds=[3, 4])
    args.update(kw)
    return samplers.sample(model or tiny["model"], tiny["diffusion"], (2, 3, 16, 16), **args)


RULES = ["ddpm", "ddim", "dpm++2m", "unipc", "dpm++3m"]


@pytest.mark.parametrize("rule", RULES)
def test_guidance_identities(tiny, rule):
    plain = run_tiny(tiny, sampler=rule, guidance="none")
    assert torch.equal(run_tiny(tiny, sampler=rule, guidance="classifier-free", guidance_params={"guidance_scale": 1.0}), plain)
    assert torch.equal(run_tiny(tiny, sampler=rule, guidance="clip", guidance_params={"guidance_scale": 0.0}), plain)
    # And the guidance really acts when its scale is not neutral.
    assert not torch.allclose(run_tiny(tiny, sampler=rule, guidance="classifier-free"), plain)
    assert not torch.allclose(run_tiny(tiny, sampler=rule, guidance="clip", guidance_params={"guidance_scale": 50.0}), plain)


@pytest.mark.parametrize("rule", RULES)
def test_seeds(tiny, rule):
    params = {"eta": 1.0} if rule == "ddim" else {}
    a = run_tiny(tiny, sampler=rule, sampler_params=params, seeds=[7, 8])
    b = run_tiny(tiny, sampler=rule, sampler_params=params, seeds=[7, 8])
    assert torch.equal(a, b)
    alone = samplers.sample(tiny["model"], tiny["diffusion"], (1, 3, 16, 16), steps=6, sampler=rule, sampler_params=params,
                            prompts=tiny["prompts"][1:], seeds=[8],
                            cond_kwargs={k: v[1:] for k, v in tiny["cond_kwargs"].items()},
                            uncond_kwargs={k: v[1:] for k, v in tiny["uncond_kwargs"].items()})
    assert (alone[0] - a[1]).abs().max() < 1e-4  # same image alone as in a batch (kernel rounding only)
    assert not torch.allclose(run_tiny(tiny, sampler=rule, sampler_params=params, seeds=[9, 8])[0], a[0])


@pytest.mark.parametrize("rule", RULES)
def test_one_step(tiny, rule):
    out = run_tiny(tiny, sampler=rule, steps=1)
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()


def test_half_precision_autocast_leaves_the_output_layer_in_float32(tiny):
    """Under autocast the torso runs in bfloat16, but epsilon comes out in float32 (the reference's fp16
    layout keeps the output layer there), so guidance and the step rules compute in float32."""
    model = tiny["model"]
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([500, 500])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t, **tiny["cond_kwargs"])
    assert out.dtype == torch.float32
    with torch.no_grad():
        reference = model(x, t, **tiny["cond_kwargs"])
    assert ((out - reference).norm() / reference.norm()).item() < 0.05


def test_callback_and_cancel(tiny):
    seen = []
    run_tiny(tiny, sampler="ddim", callback=lambda i, n, x0: seen.append((i, n, tuple(x0.shape))))
    assert seen == [(i, 6, (2, 3, 16, 16)) for i in range(6)]
    with pytest.raises(Cancelled, match="after step 2 of 6"):
        calls = []
        run_tiny(tiny, sampler="dpm++2m", callback=lambda *a: calls.append(1), should_stop=lambda: len(calls) >= 2)


@pytest.mark.parametrize("kw,message", [
    (dict(steps=0), "between 1 and 1000"),
    (dict(steps=1001), "between 1 and 1000"),
    (dict(steps="ddim7x"), "bad step schedule"),
    (dict(sampler="euler"), "available: ddim, ddpm, dpm\\+\\+2m, dpm\\+\\+3m, unipc"),
    (dict(guidance="magic"), "available: cfg-rescale, classifier-free, clip, none"),
    (dict(guidance_params={"guidance_scale": float("nan")}), "finite"),
    (dict(guidance_params={"guidance_scale": -1.0}), "out of range"),
    (dict(sampler="ddim", sampler_params={"eta": 2.0}), "out of range"),
    (dict(sampler="ddim", sampler_params={"etta": 0.5}), "parameters: \\['eta'\\]"),
    (dict(temperature=0.0), "temperature"),
    (dict(sampler="unipc", sampler_params={"spacing": "cosine"}), "spacing must be one of time, logsnr, karras"),
    (dict(sampler="unipc", sampler_params={"order": 4}), "out of range"),
    (dict(sampler="dpm++3m", steps="fast27"), "picks its own timesteps: give a number of steps"),
    (dict(sampler="unipc", steps=0), "between 1 and 1000"),
    (dict(guidance_params={"interval": "5"}), "interval must be LOW,HIGH"),
    (dict(guidance="clip", guidance_params={"interval": "3,1"}), "LOW < HIGH"),
    (dict(guidance="cfg-rescale", guidance_params={"phi": 1.5}), "out of range"),
])
def test_bad_parameters(tiny, kw, message):
    with pytest.raises(SamplerError, match=message):   # (the built-ins alone: installed plugins add names)
        run_tiny(tiny, registry=samplers.Registry(load_entry_points=False), **kw)


# --------------------------------------------------------------------------- solver accuracy on a known ODE
ODE_RULES = GAUSSIAN_RULES   # every deterministic rule, the new solvers on each spacing


@pytest.mark.parametrize("mean_type", ["epsilon", "v"])
@pytest.mark.parametrize("rule,params", ODE_RULES)
def test_solvers_reach_the_data_point(rule, params, mean_type):
    """With one data point x*, the ideal model's ODE ends exactly at x*; the deterministic rules must too."""
    base = create_gaussian_diffusion(steps=1000, noise_schedule="squaredcos_cap_v2", model_mean_type=mean_type)
    target = torch.linspace(-0.9, 0.9, 2 * 3 * 4 * 4).view(2, 3, 4, 4)

    def ideal(x, ts):
        abar = torch.from_numpy(base.alphas_cumprod)[ts].float().view(-1, 1, 1, 1)
        eps = (x - abar.sqrt() * target) / (1 - abar).sqrt()
        mean = eps if mean_type == "epsilon" else abar.sqrt() * eps - (1 - abar).sqrt() * target
        return torch.cat([mean, torch.zeros_like(x)], dim=1)

    out, _ = solve(rule, params, base, 10, ideal, torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)))
    assert (out - target).abs().max() < 1e-3


def test_dpm_solver_beats_ddim_on_gaussian_data_where_the_ode_is_exact():
    """A second-order solver must be far closer than DDIM at few steps; a second-order step into t = 0 (whose
    log-SNR jump dwarfs the previous one) was 1.8x *worse* than DDIM."""
    for steps, dpm_bound in ((10, 0.2), (20, 0.02)):
        errors = gaussian_ode_errors(steps, ODE_RULES[:2])
        assert errors["dpm++2m"] < dpm_bound and errors["dpm++2m"] < errors["ddim"] / 2, (steps, errors)


def test_unipc_and_dpm_solver_3m_on_gaussian_data_where_the_ode_is_exact():
    """The higher-order solvers on their default (time-uniform) spacing: closer than DPM-Solver++(2M) at 6 to 10
    steps, as close at 20 (where the first-order step into t = 0 that all three take dominates). The measured
    errors of every spacing are in README ("Step rules on the embedded family")."""
    for steps in (6, 8, 10):
        errors = gaussian_ode_errors(steps)
        assert errors["unipc time"] < errors["dpm++2m"] and errors["dpm++3m time"] < errors["dpm++2m"], (steps, errors)
    errors = gaussian_ode_errors(20)
    assert max(errors["unipc time"], errors["dpm++3m time"]) < 0.01, errors
    # UniPC's corrector is what it adds: order 1 (DDIM plus the corrector) is closer than DDIM alone.
    order_one = gaussian_ode_errors(10, [("ddim", {}), ("unipc", {"order": 1})])
    assert order_one["unipc 1"] < 0.8 * order_one["ddim"], order_one


@pytest.mark.parametrize("rule", ["ddim", "dpm++2m", "unipc", "dpm++3m"])
def test_score_guidance_keeps_x0_in_range_from_a_zero_snr_start(rule):
    """A constant guidance gradient on the ideal denoiser: the ODE rules' guided x0 stays in [-1, 1], instead of
    the near-zero-SNR first step multiplying the gradient's shift by hundreds."""
    base = create_gaussian_diffusion(steps=1000, noise_schedule="squaredcos_cap_v2", model_mean_type="v")
    target = torch.zeros(1, 3, 4, 4)

    def ideal(x, ts):
        abar = torch.from_numpy(base.alphas_cumprod)[ts].float().view(-1, 1, 1, 1)
        eps = (x - abar.sqrt() * target) / (1 - abar).sqrt()
        return torch.cat([abar.sqrt() * eps - (1 - abar).sqrt() * target, torch.zeros_like(x)], dim=1)

    x0s = []
    run = SamplingRun(diffusion=samplers.respace(base, 25), guided=Guided(ideal, cond_fn=lambda x, t, **kw: torch.ones_like(x)),
                      noise_like=torch.zeros_like, callback=lambda i, n, x0: x0s.append(x0))
    out = get_registry().step_rule(rule).sample(run, torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)))
    assert all(x0.abs().max() <= 1 for x0 in x0s)
    assert x0s[0].max() == 1  # the gradient did push (up to the clamp)
    assert torch.isfinite(out).all() and out.abs().max() <= 1


# --------------------------------------------------------------------------- third-party plugins
PLUGIN_SOURCE = '''
import torch
from samplers import Guided, Param, hookimpl

class Negate:
    name = "negated-test"
    description = "flips the prediction (a test plugin)"
    params = [Param("strength", float, 1.0, 0.0, 2.0)]
    scale = "strength"
    requires = ()

    def prepare(self, ctx, strength=1.0):
        def model_fn(x, t, **_):
            out = ctx.model(x, t, **ctx.cond_kwargs)
            c = x.shape[1]
            return torch.cat([-strength * out[:, :c], out[:, c:]], dim=1)
        return Guided(model_fn)

@hookimpl
def glide_guidance_strategies():
    return [Negate()]
'''


def install_plugin(tmp_path, monkeypatch, module: str, source: str, entry_points: str) -> None:
    """A plugin distribution on sys.path for this test only: the package and a dist-info advertising it."""
    (tmp_path / module).mkdir()
    (tmp_path / module / "__init__.py").write_text(textwrap.dedent(source))
    dist = tmp_path / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[glide.samplers]\n" + entry_points)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)


def test_third_party_plugin_via_entry_point(tiny, tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "glide_test_plugin", PLUGIN_SOURCE, "negate = glide_test_plugin\n")
    registry = samplers.Registry()
    described = {g["name"]: g for g in registry.describe()["guidance"]}["negated-test"]
    assert described["params"][0]["name"] == "strength" and described["scale"] == "strength"

    def negated(strength):   # what the plugin should sample: the model's prediction flipped and scaled
        def model_fn(x, t, **_):
            out = tiny["model"](x, t, **tiny["cond_kwargs"])
            return torch.cat([-strength * out[:, :3], out[:, 3:]], dim=1)
        return model_fn

    rule = registry.step_rule("ddim")
    for strength in (0.5, 1.0):
        out = run_tiny(tiny, guidance="negated-test", guidance_params={"strength": strength}, sampler="ddim",
                       registry=registry)
        run = SamplingRun(diffusion=samplers.respace(tiny["diffusion"], 6), guided=Guided(negated(strength)),
                          noise_like=samplers.seeded_noise([3, 4], "cpu"))
        expected = rule.sample(run, samplers.seeded_noise([3, 4], "cpu")(torch.empty(2, 3, 16, 16)))
        assert torch.allclose(out, expected, atol=1e-5), strength
    assert not torch.allclose(out, run_tiny(tiny, sampler="ddim", guidance="none"))


BROKEN_PLUGINS = {
    "glide_broken_import": "import a_module_that_is_not_installed\n",
    "glide_raising_hook": """
        from samplers import hookimpl

        @hookimpl
        def glide_step_rules():
            raise RuntimeError("no rules today")
    """,
    "glide_bad_rule": """
        from samplers import hookimpl

        class NoSample:
            name = "no-sample"
            description = "forgot sample()"
            params = []

        @hookimpl
        def glide_step_rules():
            return [NoSample()]
    """,
    "glide_duplicate": """
        from samplers import Guided, hookimpl

        class Fake:
            name = "classifier-free"
            description = "takes a built-in's name"
            params = []
            scale = None
            requires = ()

            def prepare(self, ctx):
                return Guided(lambda x, t, **_: ctx.model(x, t, **ctx.cond_kwargs))

        class Mine:
            name = "mine-test"
            description = "a strategy of its own, registered alongside"
            params = []
            scale = None
            requires = ()

            def prepare(self, ctx):
                return Guided(lambda x, t, **_: ctx.model(x, t, **ctx.cond_kwargs))

        @hookimpl
        def glide_guidance_strategies():
            return [Fake(), Mine()]
    """,
}


def test_broken_or_clashing_plugins_are_left_out_with_a_warning_naming_them(tmp_path, monkeypatch):
    for module, source in BROKEN_PLUGINS.items():
        (tmp_path / module).mkdir()
        install_plugin(tmp_path / module, monkeypatch, module, source, f"{module} = {module}\n")
    with pytest.warns(samplers.PluginWarning) as caught:
        registry = samplers.Registry()
    messages = "\n".join(str(w.message) for w in caught)
    assert "'glide_broken_import'" in messages and "failed to import" in messages, messages
    assert "'glide_raising_hook'" in messages and "no rules today" in messages, messages
    assert "'glide_bad_rule'" in messages and "'no-sample' has no sample() method" in messages, messages
    assert "'glide_duplicate'" in messages and "'classifier-free'" in messages and "samplers.builtin_guidance" in messages
    # Everything else works: the built-ins (the built-in keeps its name) and the clashing plugin's other strategy.
    assert type(registry.guidance["classifier-free"]).__module__ == "samplers.builtin_guidance"
    assert "mine-test" in registry.guidance and "no-sample" not in registry.step_rules
    assert {"ddpm", "ddim", "dpm++2m", "unipc", "dpm++3m"} <= set(registry.step_rules)


# --------------------------------------------------------------------------- rules that pick their own timesteps
class PickedSteps:
    """A rule whose timesteps are given (DDIM on them): what a plugin that picks its own schedule sees."""

    name = "picked-test"
    description = "DDIM on the timesteps it was made with"
    params = []

    def __init__(self, chosen):
        self.chosen = chosen

    def timesteps(self, trained, steps):
        return self.chosen(trained, steps)

    def sample(self, run, x):
        return get_registry().step_rule("ddim").sample(run, x)


def registry_with(rule) -> samplers.Registry:
    registry = samplers.Registry(load_entry_points=False)
    registry.step_rules[rule.name] = rule
    return registry


def test_a_rule_picks_its_own_timesteps_and_the_step_count_follows(tiny):
    seen, totals = [], []
    model = tiny["model"]

    def spy(x, t, **kw):
        seen.append(int(t[0]))
        return model(x, t, **kw)

    spy.parameters = model.parameters
    rule = PickedSteps(lambda trained, steps: [trained.num_timesteps - 1, 600, 250, 40, 3][:steps])
    out = samplers.sample(spy, tiny["diffusion"], (2, 3, 16, 16), steps=5, prompts=tiny["prompts"],
                          cond_kwargs=tiny["cond_kwargs"], sampler="picked-test", guidance="none",
                          registry=registry_with(rule), callback=lambda i, n, x0: totals.append((i, n)))
    assert seen == [999, 600, 250, 40, 3] and totals == [(i, 5) for i in range(5)]
    assert torch.isfinite(out).all()
    # Fewer timesteps than the steps asked for: the run (and every progress bar) has that many.
    totals.clear()
    samplers.sample(spy, tiny["diffusion"], (2, 3, 16, 16), steps=8, prompts=tiny["prompts"], sampler="picked-test",
                    cond_kwargs=tiny["cond_kwargs"], guidance="none", registry=registry_with(rule),
                    callback=lambda i, n, x0: totals.append((i, n)))
    assert totals == [(i, 5) for i in range(5)]


@pytest.mark.parametrize("chosen,message", [
    ([999, 1000], "distinct whole numbers in \\[0, 999\\]"),
    ([999, 500, 500], "distinct"),
    ([], "at least one"),
    ([999, 2.5], "whole numbers"),
])
def test_timesteps_outside_the_trained_process_are_refused(tiny, chosen, message):
    rule = PickedSteps(lambda trained, steps: chosen)
    with pytest.raises(SamplerError, match=f"'picked-test' picked timesteps .*{message}"):
        run_tiny(tiny, sampler="picked-test", guidance="none", registry=registry_with(rule))


@pytest.mark.parametrize("steps", [1, 2, 5, 6, 8, 10, 25])
def test_noise_spacings(steps):
    abar = create_gaussian_diffusion(steps=1000, noise_schedule="squaredcos_cap_v2").alphas_cumprod
    time = samplers.noise_spaced_timesteps(abar, steps, "time")
    assert time == sorted(space_timesteps(1000, str(steps)), reverse=True)   # the reference's, as DDIM uses
    for spacing in samplers.NOISE_SPACINGS:
        chosen = samplers.noise_spaced_timesteps(abar, steps, spacing)
        assert chosen == sorted(set(chosen), reverse=True) and steps - 1 <= len(chosen) <= steps, (spacing, chosen)
        if steps > 1:   # (one step is the reference's t = 0 on the time spacing, t = 999 on the others)
            assert chosen[0] == 999 and chosen[-1] == 0, (spacing, chosen)
    if steps >= 5:
        log_snr = 0.5 * np.log(abar / (1 - abar))
        gaps = np.diff(log_snr[samplers.noise_spaced_timesteps(abar, steps, "logsnr")][1:])
        assert gaps.max() / gaps.min() < 1.6        # even in log-SNR (up to rounding to whole timesteps)
        karras = samplers.noise_spaced_timesteps(abar, steps, "karras")
        assert karras[-2] < time[-2]   # Karras's spacing puts more of its steps at low noise


# --------------------------------------------------------------------------- what a strategy sees
@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_context_converts_between_the_prediction_types(prediction):
    abar = create_gaussian_diffusion(steps=1000, noise_schedule="squaredcos_cap_v2").alphas_cumprod
    ctx = samplers.GuidanceContext(model=None, prompts=[], cond_kwargs={}, uncond_kwargs={}, prediction=prediction,
                                   alphas_cumprod=abar)
    t = torch.tensor([999, 500, 30, 0])
    alpha, sigma = ctx.alpha_sigma(t)
    assert torch.allclose(alpha ** 2 + sigma ** 2, torch.ones(4, 1, 1, 1)) and alpha[3] > 0.99 and sigma[0] > 0.99
    x0, eps = torch.rand(4, 3, 8, 8) * 2 - 1, torch.randn(4, 3, 8, 8)
    x = alpha * x0 + sigma * eps
    output = ctx.model_output(x0, eps, t, torch.zeros(4, 3, 8, 8))
    mean = eps if prediction == "epsilon" else alpha * eps - sigma * x0
    assert output.shape == (4, 6, 8, 8) and torch.allclose(output[:, :3], mean)
    got_x0, got_eps = ctx.predictions(output, x, t)
    assert torch.allclose(got_eps, eps, atol=1e-4) and torch.allclose(got_x0[1:], x0[1:], atol=1e-3)


def counting(model, batch_sizes):
    def counted(x, t, **kw):
        batch_sizes.append(x.shape[0])
        return model(x, t, **kw)

    counted.parameters = model.parameters
    return counted


@pytest.mark.parametrize("rule", ["ddim", "unipc"])
def test_an_interval_guides_only_inside_and_skips_the_unconditional_half_outside(tiny, rule):
    everywhere = run_tiny(tiny, sampler=rule)
    assert torch.equal(run_tiny(tiny, sampler=rule, guidance_params={"interval": "0,1e9"}), everywhere)
    nowhere = run_tiny(tiny, sampler=rule, guidance_params={"interval": "1e6,1e9"})
    assert torch.equal(nowhere, run_tiny(tiny, sampler=rule, guidance="none"))
    # 6 time-uniform steps sit at sigma ~ 2e4, 3.1, 1.4, 0.74, 0.34, 0.006: (0.5, 2] guides two of them.
    batches = []
    partly = run_tiny(tiny, sampler=rule, guidance_params={"interval": "0.5,2"}, model=counting(tiny["model"], batches))
    assert batches == [2, 2, 4, 4, 2, 2]
    assert not torch.allclose(partly, everywhere) and not torch.allclose(partly, nowhere)
    clip_nowhere = run_tiny(tiny, sampler=rule, guidance="clip", guidance_params={"guidance_scale": 50.0,
                                                                                 "interval": "1e6,1e9"})
    assert torch.equal(clip_nowhere, run_tiny(tiny, sampler=rule, guidance="none"))
    clip_partly = run_tiny(tiny, sampler=rule, guidance="clip", guidance_params={"guidance_scale": 50.0,
                                                                                "interval": "0.5,2"})
    assert not torch.allclose(clip_partly, clip_nowhere)


def test_cfg_rescale(tiny):
    plain = run_tiny(tiny, sampler="ddim", guidance_params={"guidance_scale": 5.0})
    no_rescale = run_tiny(tiny, sampler="ddim", guidance="cfg-rescale", guidance_params={"guidance_scale": 5.0, "phi": 0.0})
    assert torch.allclose(no_rescale, plain, atol=1e-4)   # phi = 0 is classifier-free guidance
    assert torch.equal(run_tiny(tiny, sampler="ddim", guidance="cfg-rescale", guidance_params={"guidance_scale": 1.0}),
                       run_tiny(tiny, sampler="ddim", guidance="none"))
    # phi = 1: each guided x0 has exactly the conditional x0's spread.
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([400, 400])
    ctx = samplers.GuidanceContext(model=tiny["model"], prompts=tiny["prompts"], cond_kwargs=tiny["cond_kwargs"],
                                   uncond_kwargs=tiny["uncond_kwargs"], prediction="epsilon",
                                   alphas_cumprod=tiny["diffusion"].alphas_cumprod)
    strategy = get_registry().guidance_strategy("cfg-rescale")
    with torch.no_grad():
        x0_guided, _ = ctx.predictions(strategy.prepare(ctx, guidance_scale=5.0, phi=1.0).model_fn(x, t), x, t)
        x0_cond, _ = ctx.predictions(tiny["model"](x, t, **tiny["cond_kwargs"]), x, t)
        x0_cfg, _ = ctx.predictions(get_registry().guidance_strategy("classifier-free").prepare(
            ctx, guidance_scale=5.0).model_fn(x, t), x, t)
    spread = lambda v: v.std(dim=(1, 2, 3))
    assert torch.allclose(spread(x0_guided), spread(x0_cond), rtol=1e-4)
    assert (spread(x0_cfg) > 1.05 * spread(x0_cond)).all()   # so the rescale did something


