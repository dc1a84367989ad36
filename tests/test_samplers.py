"""Step rules and guidance strategies: reference goldens, guidance identities, plugins, errors, seeds."""
import math
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

import samplers
from glide.clip.model_creation import create_clip_model
from glide.families.shapes import ClipTokens, load_tokenizer, tokenize
from glide.model_creation import create_gaussian_diffusion, create_model_and_diffusion
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


def run_tiny(tiny, **kw):
    args = dict(steps=6, prompts=tiny["prompts"], cond_kwargs=tiny["cond_kwargs"], uncond_kwargs=tiny["uncond_kwargs"],
                components={"clip": tiny["clip"]}, seeds=[3, 4])
    args.update(kw)
    return samplers.sample(tiny["model"], tiny["diffusion"], (2, 3, 16, 16), **args)


@pytest.mark.parametrize("rule", ["ddpm", "ddim", "dpm++2m"])
def test_guidance_identities(tiny, rule):
    plain = run_tiny(tiny, sampler=rule, guidance="none")
    assert torch.equal(run_tiny(tiny, sampler=rule, guidance="classifier-free", guidance_params={"guidance_scale": 1.0}), plain)
    assert torch.equal(run_tiny(tiny, sampler=rule, guidance="clip", guidance_params={"guidance_scale": 0.0}), plain)
    # And the guidance really acts when its scale is not neutral.
    assert not torch.allclose(run_tiny(tiny, sampler=rule, guidance="classifier-free"), plain)
    assert not torch.allclose(run_tiny(tiny, sampler=rule, guidance="clip", guidance_params={"guidance_scale": 50.0}), plain)


@pytest.mark.parametrize("rule", ["ddpm", "ddim", "dpm++2m"])
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


@pytest.mark.parametrize("rule", ["ddpm", "ddim", "dpm++2m"])
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
    (dict(sampler="euler"), "available: ddim, ddpm, dpm\\+\\+2m"),
    (dict(guidance="magic"), "available: classifier-free, clip, none"),
    (dict(guidance_params={"guidance_scale": float("nan")}), "finite"),
    (dict(guidance_params={"guidance_scale": -1.0}), "out of range"),
    (dict(sampler="ddim", sampler_params={"eta": 2.0}), "out of range"),
    (dict(sampler="ddim", sampler_params={"etta": 0.5}), "parameters: \\['eta'\\]"),
    (dict(temperature=0.0), "temperature"),
])
def test_bad_parameters(tiny, kw, message):
    with pytest.raises(SamplerError, match=message):
        run_tiny(tiny, **kw)


# --------------------------------------------------------------------------- solver accuracy on a known ODE
@pytest.mark.parametrize("mean_type", ["epsilon", "v"])
@pytest.mark.parametrize("rule", ["ddim", "dpm++2m"])
def test_solvers_reach_the_data_point(rule, mean_type):
    """With one data point x*, the ideal model's ODE ends exactly at x*; the deterministic rules must too."""
    base = create_gaussian_diffusion(steps=1000, noise_schedule="squaredcos_cap_v2", model_mean_type=mean_type)
    target = torch.linspace(-0.9, 0.9, 2 * 3 * 4 * 4).view(2, 3, 4, 4)

    def ideal(x, ts):
        abar = torch.from_numpy(base.alphas_cumprod)[ts].float().view(-1, 1, 1, 1)
        eps = (x - abar.sqrt() * target) / (1 - abar).sqrt()
        mean = eps if mean_type == "epsilon" else abar.sqrt() * eps - (1 - abar).sqrt() * target
        return torch.cat([mean, torch.zeros_like(x)], dim=1)

    spaced = base.respaced("10")
    run = SamplingRun(diffusion=spaced, guided=Guided(ideal), noise_like=torch.zeros_like)
    out = get_registry().step_rule(rule).sample(run, torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)))
    assert (out - target).abs().max() < 1e-3


def test_dpm_solver_beats_ddim_on_gaussian_data_where_the_ode_is_exact():
    """Data ~ N(0, s^2): the ideal denoiser is linear and the probability-flow ODE has a closed form, so each
    rule's error is measurable. A second-order solver must be far closer than DDIM at few steps; a
    second-order step into t = 0 (whose log-SNR jump dwarfs the previous one) was 1.8x *worse* than DDIM."""
    base = create_gaussian_diffusion(steps=1000, noise_schedule="squaredcos_cap_v2")
    s = 0.5
    abar_all = torch.from_numpy(base.alphas_cumprod)

    def ideal(x, ts):
        abar = abar_all[ts].view(-1, 1, 1, 1)
        x0 = abar.sqrt() * s * s / (abar * s * s + 1 - abar) * x.double()
        eps = (x.double() - abar.sqrt() * x0) / (1 - abar).sqrt()
        return torch.cat([eps.float(), torch.zeros_like(x)], dim=1)

    x_T = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for steps, dpm_bound in ((10, 0.2), (20, 0.02)):
        spaced = base.respaced(str(steps))
        first, last = spaced.alphas_cumprod[-1], spaced.alphas_cumprod[0]
        # The ODE scales x by the marginal std ratio; at the last step the rules return the posterior mean of x0.
        x_last = x_T.double() * math.sqrt((last * s * s + 1 - last) / (first * s * s + 1 - first))
        exact = math.sqrt(last) * s * s / (last * s * s + 1 - last) * x_last
        errors = {}
        for rule in ("ddim", "dpm++2m"):
            run = SamplingRun(diffusion=spaced, guided=Guided(ideal), noise_like=torch.zeros_like, clip_denoised=False)
            errors[rule] = (get_registry().step_rule(rule).sample(run, x_T.clone()).double() - exact).abs().max().item()
        assert errors["dpm++2m"] < dpm_bound and errors["dpm++2m"] < errors["ddim"] / 2, (steps, errors)


@pytest.mark.parametrize("rule", ["ddim", "dpm++2m"])
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
    run = SamplingRun(diffusion=base.respaced("25"), guided=Guided(ideal, cond_fn=lambda x, t, **kw: torch.ones_like(x)),
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


def test_third_party_plugin_via_entry_point(tiny, tmp_path, monkeypatch):
    pkg = tmp_path / "glide_test_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    dist = tmp_path / "glide_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: glide-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[glide.samplers]\nnegate = glide_test_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    registry = samplers.Registry()
    assert "negated-test" in registry.guidance
    described = {g["name"]: g for g in registry.describe()["guidance"]}["negated-test"]
    assert described["params"][0]["name"] == "strength"
    out = run_tiny(tiny, guidance="negated-test", guidance_params={"strength": 0.5}, sampler="ddim", registry=registry)
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()
    sys.modules.pop("glide_test_plugin", None)
