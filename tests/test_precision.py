"""Device and precision chosen for the machine: "auto", the probe and its cache, bf16 weights done once.

The CPU under the tests may or may not have bf16 units, so the choice is tested with faked flags and
a faked probe; what runs for real (a bf16 pipeline) runs on any CPU, just slower where it is emulated.
"""
import json

import numpy as np
import pytest
import torch

from glide import precision
from glide.errors import UserError
from glide.families import get_family
from glide.pipeline import Pipeline, load_pipeline
from glide.precision import Precision, choose_precision, resolve_device

CPU = torch.device("cpu")
BF16_CPU = frozenset({"avx2", "avx512f", "avx512_bf16"})
PLAIN_CPU = frozenset({"avx2", "fma"})   # an AMD EPYC of an earlier generation: bf16 emulated


def no_probe():
    raise AssertionError("the probe must not run where the flags rule bf16 out")


def test_explicit_dtypes_are_kept_and_bad_ones_named():
    for name in ("float32", "bfloat16", "float16"):
        assert choose_precision(name, CPU) == Precision(name, "asked for", auto=False)
    with pytest.raises(UserError, match="dtype must be one of.*'auto'.*got 'bf16'"):
        choose_precision("bf16", CPU)


def test_auto_on_a_cpu_without_bf16_units_is_float32_without_probing():
    chosen = choose_precision("auto", CPU, flags=PLAIN_CPU, speedup=no_probe)
    assert chosen.dtype == "float32" and chosen.auto
    assert "no bf16 units" in chosen.reason


def test_auto_on_a_cpu_with_bf16_units_follows_the_probe():
    fast = choose_precision("auto", CPU, flags=BF16_CPU, speedup=lambda: 2.0)
    assert fast.dtype == "bfloat16" and "avx512_bf16" in fast.reason and "2.0x" in fast.reason
    slow = choose_precision("auto", CPU, flags=BF16_CPU, speedup=lambda: 1.05)
    assert slow.dtype == "float32" and "1.05x" in slow.reason
    amx = choose_precision("auto", CPU, flags=frozenset({"amx_bf16", "amx_tile"}), speedup=lambda: 3.0)
    assert amx.dtype == "bfloat16"


def test_auto_on_accelerators_is_half_precision():
    # torch.device objects need no hardware: the choice is a pure function of the device type.
    assert choose_precision("auto", torch.device("cuda")).dtype == "float16"
    assert choose_precision("auto", torch.device("mps")).dtype == "float16"


def test_auto_device_and_bad_devices():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == CPU
    with pytest.raises(UserError, match="bad device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_probe_result_is_cached_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("GLIDE_CACHE_DIR", str(tmp_path))
    calls = []

    def probe():
        calls.append(1)
        return 1.7

    assert precision.cached_bf16_speedup(probe) == 1.7
    assert precision.cached_bf16_speedup(probe) == 1.7
    assert len(calls) == 1, "a second process on the same machine must not probe again"
    saved = json.loads((tmp_path / "precision-probe.json").read_text())
    assert list(saved.values()) == [1.7] and "torch" in next(iter(saved))
    # A corrupt cache file is measured again and rewritten, not an error.
    (tmp_path / "precision-probe.json").write_text("{not json")
    assert precision.cached_bf16_speedup(probe) == 1.7 and len(calls) == 2
    assert json.loads((tmp_path / "precision-probe.json").read_text())


def test_probe_measures_a_positive_ratio_quickly():
    # Run for real only where bf16 is native: emulated, the probe would take seconds (and is never run).
    if not precision.native_bf16_flags(precision.cpu_flags()):
        pytest.skip("this CPU has no bf16 units; the probe only runs on CPUs that have them")
    assert precision.probe_bf16_speedup() > 0


def test_bf16_pipeline_converts_weights_once_and_keeps_the_rest_float32():
    pipe = Pipeline(get_family("shapes"), device="cpu", dtype="bfloat16")
    model, _ = pipe.component("base")
    convs = [m for m in model.input_blocks.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert convs and all(c.weight.dtype == torch.bfloat16 for c in convs)
    assert all(n.weight.dtype == torch.float32 for n in norms), "norms stay float32 (the reference's layout)"
    assert model.out[-1].weight.dtype == torch.float32, "the output layer stays float32"
    assert model.time_embed[0].weight.dtype == torch.float32
    clip = pipe.component("clip")
    assert all(p.dtype == torch.float32 for p in clip.image_encoder.parameters()), "CLIP guidance stays float32"

    # Base only: on a CPU without bf16 units this runs emulated, slowly.
    prompts = ["a small red circle on the left on a blue background", "a big green square on a white background"]
    res = pipe.generate(prompts, seed=5, steps=3, upsample=False)
    assert res.settings[0]["dtype"] == "bfloat16" and res.settings[0]["device"] == "cpu"
    # An image from a batch regenerates alone to within a few 8-bit levels (README: 3 measured; float32: 1).
    alone = pipe.generate(prompts[1:], seed=6, steps=3, upsample=False)
    diff = np.abs(np.asarray(alone.images[0], int) - np.asarray(res.images[1], int)).max()
    assert diff <= 6


def test_bf16_forward_is_close_to_float32_on_the_trained_model():
    """The stated tolerance of bf16 on the shapes base: its epsilon within 2% (relative RMS) of float32's."""
    fp32 = Pipeline(get_family("shapes"), device="cpu", dtype="float32")
    bf16 = Pipeline(fp32.family, device="cpu", dtype="bfloat16")
    (m32, _), (m16, _) = fp32.component("base"), bf16.component("base")
    torch.manual_seed(0)
    x, t = torch.randn(4, 3, 32, 32), torch.tensor([999, 600, 250, 20])
    tokens, mask = m32.tokenizer.padded_tokens_and_mask(m32.tokenizer.encode("a big green square on a red "
                                                                              "background"), m32.text_ctx)
    kw = dict(tokens=torch.tensor([tokens] * 4), mask=torch.tensor([mask] * 4))
    with torch.no_grad():
        a, b = m32(x, t, **kw), m16(x, t, **kw)
    assert b.dtype == torch.float32, "the output reaches the sampler in float32"
    assert ((a - b).norm() / a.norm()).item() < 0.02


def test_auto_shares_the_pipeline_of_its_resolved_choice():
    chosen = choose_precision("auto", CPU)
    assert load_pipeline("shapes", device="auto", dtype="auto") is load_pipeline(
        "shapes", device=resolve_device("auto"), dtype=chosen.dtype)
    assert load_pipeline("shapes").dtype == chosen.dtype


def test_the_demo_header_says_where_and_in_what_precision():
    from demo.service import DemoService

    assert DemoService(device="cpu", dtype="float32").hardware() == "Computed on cpu in float32 (asked for)."
    auto = DemoService().hardware()
    assert auto.startswith(f"Computed on {resolve_device('auto')} in ") and "(auto: " in auto


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_group_norm_on_the_cpu_keeps_float32_statistics(dtype):
    """The CPU's mixed-precision kernel (no float32 copy of the activation) against the reference's way,
    normalising a float32 copy: the same to within one rounding of the output."""
    from glide.nn import GroupNorm32

    torch.manual_seed(0)
    norm = GroupNorm32(32, 96, swish=0.0)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = (torch.randn(2, 96, 16, 16) * 4 + 3).to(dtype)
    reference = torch.nn.functional.group_norm(x.float(), 32, norm.weight, norm.bias, norm.eps).to(dtype)
    with torch.no_grad():
        y = norm(x)
    assert y.dtype == dtype
    ulp = torch.finfo(dtype).eps * reference.float().abs().clamp_min(1)
    assert ((y.float() - reference.float()).abs() <= ulp).all()
