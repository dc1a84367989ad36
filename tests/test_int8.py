"""dtype "int8": the U-Nets W8A8 through OpenVINO on a CPU (glide.int8).

The fast tests check the choice and its errors. The slow ones build the shapes family's int8 models (a few
minutes on 2 cores, once per module): the images the checker reads right, the guidance interval's two batch
sizes, DeepCache's shallow path, inpainting, and the on-disk cache (reused, rebuilt when corrupt or stale).
"""
import contextlib
import io
import json
import sys

import numpy as np
import pytest
import torch

from glide import int8
from glide.cli import main
from glide.errors import UserError
from glide.families import get_family
from glide.pipeline import Pipeline, load_pipeline
from glide.precision import choose_precision, resolve_device

pytest.importorskip("openvino", reason="dtype int8 needs the int8 extra: pip install openvino nncf")
pytest.importorskip("nncf", reason="dtype int8 needs the int8 extra: pip install openvino nncf")

CAPTIONS = ["a small red circle on the left on a blue background",
            "a big green square at the top on a white background",
            "a small red circle on the left and a big blue square on the right on a white background"]
INT8_ON_GPU = "dtype int8 runs on the CPU only"


# ---------------------------------------------------------------------------------------------- the choice
def test_auto_never_picks_int8():
    for flags, speedup in ((frozenset({"avx512_bf16", "avx512_vnni"}), 2.0), (frozenset({"avx512_vnni"}), 1.0)):
        chosen = choose_precision("auto", torch.device("cpu"), flags=flags, speedup=lambda s=speedup: s)
        assert chosen.dtype in ("float32", "bfloat16")
    asked = choose_precision("int8", torch.device("cpu"))
    assert asked.dtype == "int8" and not asked.auto and "OpenVINO" in asked.reason


def test_int8_on_a_gpu_is_a_clear_error_before_the_gpu_is_looked_for():
    """Asked on a machine without CUDA, the error is int8's, not the missing GPU's: it is checked first."""
    with pytest.raises(UserError, match=INT8_ON_GPU):
        choose_precision("int8", torch.device("cuda"))
    with pytest.raises(UserError, match=INT8_ON_GPU):
        load_pipeline("shapes", device="cuda", dtype="int8")
    with pytest.raises(UserError, match=INT8_ON_GPU):
        resolve_device("mps", "int8")
    assert resolve_device("auto", "int8") == torch.device("cpu")   # auto is the CPU for int8, even with a GPU


def test_cli_dtype_int8_on_a_gpu_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["generate", CAPTIONS[0], "--dtype", "int8", "--device", "cuda", "--steps", "2", "--no-upsample"])
    assert code != 0 and INT8_ON_GPU in err.getvalue() and "Traceback" not in err.getvalue(), err.getvalue()


def test_without_openvino_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)   # import openvino now raises ImportError
    with pytest.raises(UserError, match=r"pip install 'glide\[int8\]'"):
        int8.openvino_unet(get_family("shapes"), "base", None, None)


def test_converted_inputs_follow_the_component():
    assert int8.input_names("base") == ["x", "timesteps", "xf_proj", "xf_out"]
    assert int8.input_names("upsample")[4:] == ["low_res"]
    assert int8.input_names("base-inpaint")[4:] == ["inpaint_image", "inpaint_mask"]
    assert int8.input_names("upsample-inpaint")[4:] == ["low_res", "inpaint_image", "inpaint_mask"]


# ---------------------------------------------------------------------------------------------- the models
@pytest.fixture(scope="module")
def conversions_shared():
    """Each U-Net is converted once in this module, and every later build of it (the cache test's rebuilds, the
    module's pipeline) starts from a copy: the same checkpoint converts to the same graph, and converting is the
    slowest stage of building the shapes family's int8 models (20 of the base's 50 s)."""
    converted = {}
    real = int8.convert

    def once(model, names, example, depth, shallow):
        # The same U-Net: its inputs and their shapes, its size (the benchmark's tiny U-Net converts its own).
        key = (tuple((name, example[name].shape) for name in names), sum(p.numel() for p in model.parameters()),
               depth, shallow)
        if key not in converted:
            converted[key] = real(model, names, example, depth, shallow)
        return converted[key].clone()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(int8, "convert", once)
        yield


@pytest.fixture(scope="module")
def int8_pipe(tmp_path_factory, conversions_shared):
    """The shapes family in int8, its models built once into a cache of this module's own, calibrated on the
    first 6 of the family's calibration captions (2 also at the defaults) and 48 items instead of 16, 8 and 128:
    a third of the build's time. The full plan's quality is what `python -m glide.eval shapes --dtype int8`
    measures (EVAL_INT8.json); these tests check that int8 samples right at all."""
    full = int8.calibration_plan("shapes")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(int8.CALIBRATION, "shapes", lambda: int8.CalibrationPlan(full.captions[:6], with_defaults=2,
                                                                               items=48))
        yield Pipeline(get_family("shapes"), "cpu", "int8", checkpoint_dir=tmp_path_factory.mktemp("int8-cache"))


class Calls:
    """Counts what an OpenVINOUNet ran: (which model, batch size) per call."""

    def __init__(self, monkeypatch):
        self.seen = []
        real = int8.OpenVINOUNet._infer

        def spy(unet, which, inputs):
            self.seen.append((which, inputs[0].shape[0]))
            return real(unet, which, inputs)

        monkeypatch.setattr(int8.OpenVINOUNet, "_infer", spy)


def right(pipe, images, captions) -> list:
    return [pipe.check(image, caption)["all"] for image, caption in zip(images, captions)]


@pytest.mark.slow
def test_int8_images_read_right_with_the_fast_preset_and_the_defaults(int8_pipe):
    # Without the upsampler: building its int8 model would double this module's time (the upsampler's int8
    # quality is measured by `python -m glide.eval shapes --presets --dtype int8`, EVAL_PRESETS_INT8.json).
    fast = int8_pipe.generate(CAPTIONS, preset="fast", upsample=False, seed=0)
    assert right(int8_pipe, fast.base_images, CAPTIONS) == [True] * 3
    assert {s["dtype"] for s in fast.settings} == {"int8"}   # what the PNG records
    defaults = int8_pipe.generate(CAPTIONS, upsample=False, seed=0)
    assert right(int8_pipe, defaults.base_images, CAPTIONS) == [True] * 3


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2])
def test_guidance_interval_runs_both_batch_sizes(int8_pipe, monkeypatch, n):
    """The fast preset guides only inside its noise interval: the unconditional half runs there alone, so the
    converted model sees the batch n and 2n (its batch is dynamic)."""
    calls = Calls(monkeypatch)
    result = int8_pipe.generate(CAPTIONS[:n], preset="fast", upsample=False, seed=3)
    assert {batch for _, batch in calls.seen} == {n, 2 * n}
    assert right(int8_pipe, result.base_images, CAPTIONS[:n]) == [True] * n


@pytest.mark.slow
def test_warm_up_runs_each_model_at_a_one_image_requests_batch_sizes(int8_pipe, monkeypatch):
    calls = Calls(monkeypatch)
    int8_pipe.warm_up(["base"])
    assert sorted(calls.seen) == [("full", 1), ("full", 2), ("shallow", 1), ("shallow", 2)]


@pytest.mark.slow
def test_deep_cache_runs_its_shallow_path_in_int8(int8_pipe, monkeypatch):
    calls = Calls(monkeypatch)
    on = int8_pipe.generate(CAPTIONS[:2], steps=9, deep_cache=3, upsample=False, seed=5)
    assert [which for which, _ in calls.seen].count("shallow") == 6   # steps 2, 3, 5, 6, 8, 9
    assert right(int8_pipe, on.base_images, CAPTIONS[:2]) == [True] * 2


@pytest.mark.slow
def test_inpainting_in_int8(int8_pipe):
    from PIL import Image

    from glide.data import shapes

    scene = shapes.parse_caption(CAPTIONS[2])
    source = shapes.render(shapes.Scene(scene.background, scene.shapes[:1]), 32)
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (16, 0, 32, 32))
    result = int8_pipe.inpaint(source, mask, CAPTIONS[2:], preset="fast", upsample=False, seed=1)
    assert shapes.matches(result.base_images[0], scene)["shapes"][1]["shape"]


def text_of(model, captions):
    from glide.families.shapes import tokenize

    with torch.no_grad():
        return model.encode_text(*tokenize(model.tokenizer, captions))


@pytest.mark.slow
def test_int8_forward_is_close_to_float32(int8_pipe):
    """The quantized prediction against the float32 model's, on a noised render at three noise levels."""
    from glide.data import shapes

    unet, diffusion = int8_pipe.component("base")
    scene = shapes.parse_caption(CAPTIONS[0])
    x0 = shapes.images_to_tensor(np.array(shapes.render(scene, 32))[None])
    torch.manual_seed(0)
    t = torch.tensor([100, 500, 900])
    x = diffusion.q_sample(x0.expand(3, -1, -1, -1), t, torch.randn(3, 3, 32, 32))
    text = text_of(unet, CAPTIONS[:1] * 3)
    with torch.no_grad():
        exact = unet.model(x, t, text_emb=text)
    quantized = unet(x, t, text_emb=text)
    relative = ((quantized - exact).norm() / exact.norm()).item()
    print(f"int8 vs float32: relative difference {relative:.4f}")
    assert relative < 0.1, relative


# ---------------------------------------------------------------------------------------------- the cache
@pytest.fixture
def tiny_plan(monkeypatch):
    """A calibration of two captions and eight items: the cache's behaviour, not the quality, is under test."""
    monkeypatch.setitem(int8.CALIBRATION, "shapes", lambda: int8.CalibrationPlan(
        tuple(CAPTIONS[:2]), with_defaults=1, items=8))


@pytest.fixture
def quantizations(monkeypatch):
    """Counts the quantizations, which leave the model as it is: the cache's behaviour is under test here, and
    the module's other tests quantize for real."""
    done = []

    def counted(converted, items, names):
        done.append(1)
        return converted

    monkeypatch.setattr(int8, "quantize", counted)
    return done


def flip_a_byte(path, offset=100):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def load_base(cache):
    return Pipeline(get_family("shapes"), "cpu", "int8", checkpoint_dir=cache).component("base")[0]


@pytest.mark.slow
def test_cache_is_reused_and_a_corrupt_or_stale_entry_rebuilt(tmp_path, tiny_plan, conversions_shared, quantizations,
                                                              capsys, monkeypatch):
    first = load_base(tmp_path)
    assert len(quantizations) == 2                       # the full forward and DeepCache's shallow path
    assert "building the int8 OpenVINO model of shapes base" in capsys.readouterr().err
    assert first.compiled == "compiled, and the compiled copy kept"
    again = load_base(tmp_path)
    assert again.source == first.source and len(quantizations) == 2   # read, not built
    assert again.compiled == "read its compiled copy"

    entry = int8.Path(first.source)
    [compiled_copy] = entry.glob("full-*.compiled")
    flip_a_byte(compiled_copy, compiled_copy.stat().st_size // 2)   # in the weights: OpenVINO would read it
    assert load_base(tmp_path).compiled == "compiled, and the compiled copy kept" and len(quantizations) == 2
    assert load_base(tmp_path).compiled == "read its compiled copy"

    manifest = json.loads((entry / "manifest.json").read_text())
    flip_a_byte(entry / "full.bin")
    rebuilt = load_base(tmp_path)
    assert len(quantizations) == 4 and "full.bin does not match its manifest" in capsys.readouterr().err
    assert rebuilt.source == first.source and int8.read_entry(entry, manifest["key"]) is None

    real_versions = int8.versions
    monkeypatch.setattr(int8, "versions", lambda: {**real_versions(), "nncf": "0.0-other"})
    stale = load_base(tmp_path)
    assert len(quantizations) == 6 and stale.source != first.source
    assert not entry.exists()                            # the entry of the old versions is removed
    assert stale(torch.randn(1, 3, 32, 32), torch.tensor([500]), text_emb=text_of(stale, CAPTIONS[:1])).shape == (
        1, 6, 32, 32)


@pytest.mark.slow
def test_bench_rows_time_torch_and_openvino_variants():
    """The benchmark's int8 section on the tiny models (`--quick` leaves it out: it takes a minute)."""
    from bench.sections import Bench
    from bench.sections.int8 import model_rows

    rows = model_rows(Bench(torch.device("cpu"), quick=True, full=False, compile=False, args={}), "base")
    assert [r["variant"].split(" (")[0] for r in rows] == [
        "torch float32", "torch bf16", "openvino float32", "openvino bf16", "openvino int8", "openvino int8"]
    assert all(r["ms"] > 0 for r in rows) and rows[0]["rel_err_vs_float32"] == 0
    assert rows[2]["rel_err_vs_float32"] < 1e-4   # the conversion itself is exact in float32
    assert rows[4]["quantize_s"] > 0 and rows[2]["convert_s"] > 0
