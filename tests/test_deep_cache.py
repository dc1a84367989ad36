"""DeepCache (glide.deep_cache) on the shapes family's real models (CPU, float32): the split is exact, the
schedule is what the interval says, a cache is never applied to a batch it was not made for, runs on
several threads keep their own caches, and the setting travels through the pipeline, CLI and settings."""
import math
import threading

import numpy as np
import pytest
import torch

from glide.cli import main
from glide.deep_cache import MAX_INTERVAL, DeepCachedModel, DeepCacheStep, default_depth
from glide.errors import InputError
from glide.pipeline import load_pipeline
from glide.pngmeta import read_settings
from glide.settings import GenerationSettings

PROMPT = "a small red circle on the left on a blue background"
OTHER = "a big green square at the top on a white background"


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("shapes", device="cpu", dtype="float32")


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def model_inputs(pipe, component, batch=2, seed=0):
    """(model, x, t, kwargs) for one forward of a shapes component on random inputs with text encoded."""
    model, _ = pipe.component(component)
    size = pipe.family.upsample_size if component.startswith("upsample") else pipe.family.base_size
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g)
    t = torch.tensor([700, 300][:batch])
    kwargs, _ = pipe._text_kwargs(model, [PROMPT, OTHER][:batch], "")
    if component.startswith("upsample"):
        kwargs["low_res"] = torch.rand(batch, 3, pipe.family.base_size, pipe.family.base_size, generator=g) * 2 - 1
    if component.endswith("inpaint"):
        kwargs["inpaint_image"] = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
        kwargs["inpaint_mask"] = (torch.rand(batch, 1, size, size, generator=g) > 0.5).float()
    return model, x, t, kwargs


class CallCounts:
    """Forward calls of the model's first input block (every forward), middle block (full forwards only) and
    first output block (full only at depth < number of blocks)."""

    def __init__(self, model):
        self.counts = {"first": 0, "middle": 0, "deep_output": 0}
        parts = {"first": model.input_blocks[0], "middle": model.middle_block, "deep_output": model.output_blocks[0]}
        self.handles = [module.register_forward_hook(self._counter(name)) for name, module in parts.items()]

    def _counter(self, name):
        def hook(*_):
            self.counts[name] += 1
        return hook

    def __enter__(self):
        return self.counts

    def __exit__(self, *_):
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize("component", ["base", "upsample", "base-inpaint", "upsample-inpaint"])
@pytest.mark.parametrize("depth", [1, 2, 3, None])
def test_the_shallow_step_is_the_full_forward_given_the_true_deep_feature(pipe, component, depth):
    model, x, t, kwargs = model_inputs(pipe, component)
    depth = default_depth(model) if depth is None else depth
    with torch.no_grad():
        plain = model(x, t, **kwargs)
        full = DeepCacheStep(depth)
        full_out = model(x, t, deep_cache=full, **kwargs)
        shallow_out = model(x, t, deep_cache=DeepCacheStep(depth, full.feature), **kwargs)
        stale_out = model(x, t, deep_cache=DeepCacheStep(depth, full.feature * 0.5), **kwargs)
    assert torch.equal(full_out, plain)        # a full step computes exactly today's forward
    assert torch.equal(shallow_out, full_out)  # the split loses nothing
    assert not torch.allclose(stale_out, full_out, atol=1e-3)   # and the shallow path does use the feature


def test_the_default_branch_is_below_the_two_highest_resolution_levels(pipe):
    """The shallow step recomputes the first two levels: 4 input blocks of the shapes models' 6 and 10, 8 of
    GLIDE's base's 16 (conv, then 3 residual blocks and a downsampling per level), 6 of its upsampler's 18."""
    from bench import models
    from glide.model_creation import model_and_diffusion_defaults, model_and_diffusion_defaults_upsampler

    assert default_depth(pipe.component("base")[0]) == 4 and default_depth(pipe.component("upsample")[0]) == 4
    with torch.device("meta"):
        glide = [models._create({**options(), "use_fp16": False})[0]
                 for options in (model_and_diffusion_defaults, model_and_diffusion_defaults_upsampler)]
    assert [(len(m.input_blocks), default_depth(m)) for m in glide] == [(16, 8), (18, 6)]


def test_a_depth_beyond_the_unet_is_refused(pipe):
    model, x, t, kwargs = model_inputs(pipe, "base")
    with pytest.raises(ValueError, match="depth must be in"):
        model(x, t, deep_cache=DeepCacheStep(len(model.output_blocks) + 1), **kwargs)


@pytest.mark.parametrize("steps, interval", [(10, 3), (8, 2), (7, 10), (5, 5)])
def test_interval_n_runs_ceil_steps_over_n_full_forwards(pipe, steps, interval):
    model, _ = pipe.component("base")
    with CallCounts(model) as counts:
        pipe.generate(PROMPT, seed=0, steps=steps, sampler="ddim", upsample=False, deep_cache=interval)
    assert counts == {"first": steps, "middle": math.ceil(steps / interval),
                      "deep_output": math.ceil(steps / interval)}


def test_off_runs_every_forward_in_full_and_changes_nothing(pipe):
    model, _ = pipe.component("base")
    with CallCounts(model) as counts:
        off = pipe.generate(PROMPT, seed=4, steps=6, upsample=False, deep_cache=0)
    assert counts == {"first": 6, "middle": 6, "deep_output": 6}
    default = pipe.generate(PROMPT, seed=4, steps=6, upsample=False)
    one = pipe.generate(PROMPT, seed=4, steps=6, upsample=False, deep_cache=1)   # 1: every step full, i.e. off
    assert np.array_equal(pixels(off.base_images[0]), pixels(default.base_images[0]))
    assert np.array_equal(pixels(one.base_images[0]), pixels(default.base_images[0]))
    assert one.settings[0]["deep_cache"] == 0


def test_the_upsampler_caches_by_its_own_interval(pipe):
    model, _ = pipe.component("upsample")
    with CallCounts(model) as counts:
        res = pipe.generate(PROMPT, seed=2, steps=3, upsample_steps="8", deep_cache=0, upsample_deep_cache=3)
    assert counts == {"first": 8, "middle": 3, "deep_output": 3}
    assert res.settings[0]["upsample_deep_cache"] == 3 and res.settings[0]["deep_cache"] == 0


class Recorder(torch.nn.Module):
    """A stand-in UNet call that records, per forward, the batch and whether it was shallow, and returns x's
    first channels doubled (so a shallow call's feature is checkable: it is the full call's x)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls = []

    def forward(self, x, t, deep_cache=None, text_emb=None, **_):
        shallow = deep_cache.feature is not None
        self.calls.append({"batch": x.shape[0], "shallow": shallow, "text": text_emb["xf_out"],
                           "feature": deep_cache.feature})
        if not shallow:
            deep_cache.feature = x.clone()
        return torch.cat([x, x], dim=1)


def test_a_cache_is_only_applied_to_the_batch_it_was_made_for():
    recorder = Recorder()
    cached = DeepCachedModel(recorder, 3, depth=1)
    x1, x2 = torch.randn(1, 3, 4, 4), torch.randn(2, 3, 4, 4)
    text_a, text_b = {"xf_out": torch.zeros(1, 2, 3)}, {"xf_out": torch.ones(1, 2, 3)}
    both = {"xf_out": torch.zeros(2, 2, 3)}
    t1 = torch.zeros(1, dtype=torch.long)
    cached(x1, t1, text_emb=text_a)          # full
    cached(x1, t1, text_emb=text_a)          # shallow on that feature
    cached(x2, t1.repeat(2), text_emb=both)  # another batch size: full
    cached(x1, t1, text_emb=text_a)          # back: full again (the old cache is not reused)
    cached(x1, t1, text_emb=text_b)          # same shape, other conditioning: full
    cached(x1, t1, text_emb=text_b)          # shallow
    cached(x1, t1, text_emb=text_b)          # shallow
    cached(x1, t1, text_emb=text_b)          # the interval is up: full
    assert [c["shallow"] for c in recorder.calls] == [False, True, False, False, False, True, True, False]
    assert cached.full_calls == 5 and cached.shallow_calls == 3
    assert recorder.calls[1]["feature"] is not None and torch.equal(recorder.calls[1]["feature"], x1)


def test_guidance_interval_switching_the_batch_never_misuses_the_cache(pipe):
    """Classifier-free guidance with an interval: outside it only the conditional half runs (batch N), inside
    both halves (batch 2N). Every shallow forward must follow a full forward of its own batch and conditioning."""
    model, _ = pipe.component("base")
    seen = []

    def spy(module, args, kwargs):   # before the forward, which stores a full step's feature
        step = kwargs["deep_cache"]
        seen.append((args[0].shape[0], step.feature is not None, kwargs["text_emb"]["xf_out"].data_ptr()))

    handle = model.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        pipe.generate([PROMPT, OTHER], seed=1, steps=12, sampler="ddim", upsample=False, deep_cache=3,
                      guidance_params={"guidance_scale": 3.0, "interval": "0.3,3"})
    finally:
        handle.remove()
    assert len(seen) == 12
    assert {batch for batch, _, _ in seen} == {2, 4}, "the interval must switch the batch for this test to mean much"
    for i, (batch, shallow, text) in enumerate(seen):
        if shallow:
            last_full = next(seen[j] for j in range(i - 1, -1, -1) if not seen[j][1])
            assert (batch, text) == (last_full[0], last_full[2]), f"forward {i} used another batch's cache"
    full_at = [i for i, (_, shallow, _) in enumerate(seen) if not shallow]
    switches = [i for i in range(1, 12) if seen[i][0] != seen[i - 1][0]]
    assert set(switches) <= set(full_at)
    assert any(shallow for _, shallow, _ in seen)


def test_two_threads_sampling_at_once_keep_their_own_caches(pipe):
    """Two runs in lockstep (a barrier after every step interleaves their forwards) make what each makes alone."""
    kw = dict(steps=6, upsample=False, deep_cache=3)
    alone = [pipe.generate(prompt, seed=seed, **kw).base_images[0] for prompt, seed in ((PROMPT, 3), (OTHER, 8))]
    barrier = threading.Barrier(2, timeout=60)
    together, errors = [None, None], []

    def worker(i, prompt, seed):
        try:
            together[i] = pipe.generate(prompt, seed=seed, callback=lambda *_: barrier.wait(), **kw).base_images[0]
        except Exception as exc:  # reported below: a failed thread must fail the test
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i, p, s)) for i, (p, s) in enumerate(((PROMPT, 3), (OTHER, 8)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert not np.array_equal(pixels(alone[0]), pixels(alone[1]))
    for mine, solo in zip(together, alone):
        assert np.abs(pixels(mine) - pixels(solo)).max() <= 1


def test_the_cached_images_stay_close_to_the_uncached(pipe):
    off = pipe.generate(PROMPT, seed=5, upsample=False).base_images[0]
    cached = pipe.generate(PROMPT, seed=5, upsample=False, deep_cache=2).base_images[0]
    difference = np.abs(pixels(cached) - pixels(off))
    assert difference.max() > 0                # it did change the computation
    assert difference.mean() < 12              # but not into another picture (the checker's rates: README)


def test_settings_carry_validate_and_record_the_intervals():
    s = GenerationSettings.create(PROMPT, seed=1, deep_cache=3, upsample_deep_cache="2")
    assert (s.deep_cache, s.upsample_deep_cache) == (3, 2)
    saved = s.per_image()[0]
    assert (saved["deep_cache"], saved["upsample_deep_cache"]) == (3, 2)
    again = GenerationSettings.from_png(saved)
    assert (again.deep_cache, again.upsample_deep_cache) == (3, 2)
    assert GenerationSettings.from_png(saved, deep_cache=0).deep_cache == 0
    assert s.batch_key() != GenerationSettings.create(PROMPT, seed=1, upsample_deep_cache=2).batch_key()
    assert GenerationSettings.create(PROMPT, deep_cache=None).deep_cache == 0
    old_png = {k: v for k, v in saved.items() if "deep_cache" not in k}   # made before DeepCache existed
    assert GenerationSettings.from_png(old_png).deep_cache == 0
    upsampling = GenerationSettings.create(PROMPT, mode="upsample", upsample_deep_cache=4).per_image()[0]
    assert upsampling["upsample_deep_cache"] == 4


@pytest.mark.parametrize("field", ["deep_cache", "upsample_deep_cache"])
@pytest.mark.parametrize("value, message", [
    (MAX_INTERVAL + 1, "between 0 and 10"), (-1, "between 0 and 10"), (2.5, "whole number"),
    ("often", "must be a number"), (True, "must be a number, got True")])
def test_bad_intervals_get_a_clear_error(field, value, message):
    with pytest.raises(InputError, match=rf"^{field} .*{message}"):
        GenerationSettings.create(PROMPT, **{field: value})


def test_the_wrapper_refuses_an_interval_outside_its_range():
    with pytest.raises(ValueError, match="interval must be in"):
        DeepCachedModel(Recorder(), 1, depth=1)


def test_the_cli_generates_with_deep_cache_and_records_it(tmp_path, capsys):
    code = main(["generate", PROMPT, "--seed", "3", "--steps", "4", "--upsample-steps", "4", "--deep-cache", "3",
                 "--upsample-deep-cache", "2", "--device", "cpu", "--dtype", "float32", "--out", str(tmp_path)])
    assert code == 0
    from PIL import Image

    (path,) = tmp_path.glob("*.png")
    saved = read_settings(Image.open(path))
    assert (saved["deep_cache"], saved["upsample_deep_cache"]) == (3, 2)
    code = main(["generate", PROMPT, "--deep-cache", "11", "--device", "cpu", "--out", str(tmp_path)])
    assert code == 2
    assert "deep_cache must be between 0 and 10, got 11" in capsys.readouterr().err


def test_the_cli_upsampler_takes_its_own_interval(tmp_path):
    from PIL import Image

    source = tmp_path / "small.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(source)
    out = tmp_path / "out"
    code = main(["upsample", str(source), "--prompt", PROMPT, "--steps", "3", "--deep-cache", "2", "--device", "cpu",
                 "--dtype", "float32", "--out", str(out)])
    assert code == 0
    (path,) = out.glob("*.png")
    assert read_settings(Image.open(path))["upsample_deep_cache"] == 2
