"""Diffusion schedules, respacing and single steps/loops equal the reference's goldens."""
import json

import pytest
import torch
from safetensors.torch import load_file

from glide.gaussian_diffusion import get_named_beta_schedule
from glide.model_creation import create_gaussian_diffusion
from glide.respace import space_timesteps

CASES = {"cosine150": ("squaredcos_cap_v2", "150"), "linear_fast27": ("linear", "fast27")}
ARRAYS = ["betas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next", "sqrt_alphas_cumprod",
          "sqrt_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
          "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2"]


@pytest.fixture(scope="module")
def golden(reference_dir):
    return (json.loads((reference_dir / "diffusion.json").read_text()),
            load_file(reference_dir / "diffusion.safetensors"))


def rel_err(actual, expected):
    actual, expected = torch.as_tensor(actual, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("name", ["squaredcos_cap_v2", "linear"])
def test_schedules(golden, name):
    _, f = golden
    assert rel_err(get_named_beta_schedule(name, 1000), f[f"schedule/{name}_1000"]) < 1e-10


def test_space_timesteps(golden):
    meta, _ = golden
    assert len(meta["space_timesteps"]) >= 9
    for key, entry in meta["space_timesteps"].items():
        num, spec = key.split(":", 1)
        assert sorted(space_timesteps(int(num), spec)) == entry["result"], key


def test_space_timesteps_errors():
    with pytest.raises(ValueError, match="cannot create exactly"):
        space_timesteps(1000, "ddim999")
    with pytest.raises(ValueError, match="cannot divide"):
        space_timesteps(10, "20")


@pytest.mark.parametrize("case", CASES)
def test_respaced_arrays(golden, case):
    _, f = golden
    schedule, respacing = CASES[case]
    diffusion = create_gaussian_diffusion(steps=1000, noise_schedule=schedule, timestep_respacing=respacing)
    for name in ARRAYS:
        assert rel_err(getattr(diffusion, name), f[f"{case}/{name}"]) < 1e-10, name
    assert diffusion.timestep_map == f[f"{case}/timestep_map"].tolist()


def case_data(golden, case):
    """The golden tensors, the case's respaced diffusion, and its inputs by short name."""
    _, f = golden
    schedule, respacing = CASES[case]
    diffusion = create_gaussian_diffusion(steps=1000, noise_schedule=schedule, timestep_respacing=respacing)
    return f, diffusion, {k.split("/")[-1]: v for k, v in f.items() if k.startswith(f"{case}/input/")}


@pytest.mark.parametrize("case", CASES)
def test_steps(golden, case, monkeypatch):
    f, diffusion, inp = case_data(golden, case)
    x_t, t = inp["x_t"], inp["t"]
    seen = []

    def fixed_model(x, ts, **kw):
        seen.append(ts)
        return inp["model_output"]

    def paste(x0):
        return x0 * (1 - inp["inpaint_mask"]) + inp["inpaint_image"] * inp["inpaint_mask"]

    def cond_simple(x, ts, **kw):
        return -0.1 * x

    def cond_t(x, ts, **kw):
        return (ts.float() / 1000).view(-1, 1, 1, 1) - 0.1 * x

    # The reference draws its noise with torch.randn_like; the goldens replaced it by a fixed tensor.
    monkeypatch.setattr(torch, "randn_like", lambda x, **kw: inp["noise"].clone())

    def check(op, out):
        for key, value in out.items():
            if f"{case}/{op}/{key}" in f:
                assert rel_err(value, f[f"{case}/{op}/{key}"]) < 1e-4, f"{op}/{key}"

    check("pmv_clip", diffusion.p_mean_variance(fixed_model, x_t, t, clip_denoised=True))
    assert torch.equal(seen[0], f[f"{case}/model_t_seen"])
    check("pmv_noclip", diffusion.p_mean_variance(fixed_model, x_t, t, clip_denoised=False))
    check("pmv_denoised_fn", diffusion.p_mean_variance(fixed_model, x_t, t, denoised_fn=paste))
    check("p_sample", diffusion.p_sample(fixed_model, x_t, t))
    check("p_sample_cond_simple", diffusion.p_sample(fixed_model, x_t, t, cond_fn=cond_simple, model_kwargs={}))
    check("p_sample_cond_t", diffusion.p_sample(fixed_model, x_t, t, cond_fn=cond_t, model_kwargs={}))
    check("p_sample_denoised_fn", diffusion.p_sample(fixed_model, x_t, t, denoised_fn=paste))
    check("ddim_eta0", diffusion.ddim_sample(fixed_model, x_t, t, eta=0.0))
    check("ddim_eta05", diffusion.ddim_sample(fixed_model, x_t, t, eta=0.5))
    check("ddim_eta0_cond_t", diffusion.ddim_sample(fixed_model, x_t, t, cond_fn=cond_t, model_kwargs={}))
    check("q_sample", {"out": diffusion.q_sample(inp["x_start"], t, noise=inp["q_noise"])})


@pytest.mark.parametrize("case", CASES)
def test_loops(golden, case, monkeypatch):
    f, diffusion, inp = case_data(golden, case)
    shape = tuple(inp["loop_init"].shape)

    def loop_model(x, ts, **kw):
        return torch.cat([0.5 * x + inp["loop_E"] * (ts.float() / 1000).view(-1, 1, 1, 1), inp["loop_V"]], dim=1)

    def paste(x0):
        return x0 * (1 - inp["inpaint_mask"]) + inp["inpaint_image"] * inp["inpaint_mask"]

    cpu = torch.device("cpu")
    out = diffusion.ddim_sample_loop(loop_model, shape, noise=inp["loop_init"], device=cpu, eta=0.0)
    assert rel_err(out, f[f"{case}/ddim_loop/sample"]) < 1e-4
    monkeypatch.setattr(torch, "randn_like", lambda x, **kw: inp["loop_noise"].clone())
    out = diffusion.p_sample_loop(loop_model, shape, noise=inp["loop_init"], device=cpu)
    assert rel_err(out, f[f"{case}/p_loop/sample"]) < 1e-4
    out = diffusion.p_sample_loop(loop_model, shape, noise=inp["loop_init"], device=cpu, denoised_fn=paste)
    assert rel_err(out, f[f"{case}/p_loop_denoised_fn/sample"]) < 1e-4
