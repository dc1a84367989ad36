"""glide.eval: scoring (perfect on renders of the prompts, low on wrong images), reports that record how they were
measured, the trade-off sweep, the upsampler study."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from glide.data import shapes
from glide.evaluation import measures
from glide.evaluation import shapes as shapes_eval


def test_score_is_perfect_on_renders_and_low_on_shuffled_images():
    scenes, captions = shapes_eval.fresh_scenes(24, 2)
    assert all(shapes.parse_caption(c) == s for c, s in zip(captions, scenes))
    rng = np.random.default_rng(0)
    images = [shapes.render(s, 32, rng) for s in scenes]
    perfect = shapes_eval.score(images, scenes)
    assert perfect["all"]["rate"] == 1.0 and perfect["all"]["n"] == 24 and perfect["all"]["low"] > 0.85
    shuffled = shapes_eval.score(images[1:] + images[:1], scenes)
    assert shuffled["all"]["rate"] < 0.2 and shuffled["background"] < 0.5


def test_markdown_table_lists_every_row():
    rows = [{"shapes": 1, "condition": "x", "all": {"rate": 0.5, "low": 0.25, "high": 0.75, "n": 12}, "clean": 1.0,
             "background": 1.0, "shape": 1.0, "color": 1.0, "position": 1.0, "size": 1.0, "seconds": 1.0}]
    table = shapes_eval.markdown(rows)
    assert table.count("\n") == 2 and "| 1 | x | 50.0% (25.0-75.0) | 1.0 |" in table


class RenderingPipeline:
    """Stands in for the model: draws each caption exactly (jittered like the training data), or (when `fixed`)
    always in the canonical layout."""

    device = "cpu"
    dtype = "float32"

    class family:
        base_size = 32

    class clip:
        @staticmethod
        def similarity(images, t, prompts):
            return torch.ones(len(prompts))

    def __init__(self, fixed=False):
        self.fixed = fixed

    def component(self, name):
        return self.clip

    def generate(self, captions, seed, upsample, **kw):
        rng = np.random.default_rng(seed)
        scenes = [shapes.parse_caption(c) for c in captions]

        class Result:
            base_images = [shapes.render(s, 32, None if self.fixed else rng) for s in scenes]

        return Result()


class RenderingFamily(RenderingPipeline):
    """The whole family drawn exactly: base images and their 128 px renders, inpainting that draws the
    caption, and a CLIP that always picks the first caption (the true one)."""

    class family:
        base_size, upsample_size = 32, 128

    class clip:
        device = "cpu"

        @staticmethod
        def image_embeddings(image, t):
            return torch.ones(1, 4)

        @staticmethod
        def text_embeddings(captions):
            return torch.eye(len(captions), 4)

    def generate(self, captions, seed, upsample=True, **kw):
        scenes = [shapes.parse_caption(c) for c in captions]

        class Result:
            base_images = [shapes.render(s, 32, np.random.default_rng([seed, i])) for i, s in enumerate(scenes)]
            images = [shapes.render(s, 128, np.random.default_rng([seed, i])) for i, s in enumerate(scenes)]

        return Result()

    def inpaint(self, source, mask, captions, seed, upsample, **kw):
        return self.generate(captions, seed)


def test_the_report_is_written_whole_by_one_command_with_its_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(shapes_eval, "load_pipeline", lambda *a, **k: RenderingFamily())
    out = tmp_path / "EVAL.json"
    shapes_eval.main(["shapes", "--n", "4", "--quick", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["command"] == f"python -m glide.eval shapes --n 4 --quick --out {out}"
    assert {"git_commit", "git_uncommitted_changes", "date", "device", "dtype", "machine"} <= set(report)
    assert report["n"] == 4 and report["settings"] == {"sampler": "dpm++2m", "steps": 10, "inpainting_n": 16,
                                                       "upsampler_n": 16, "clip_zero_shot_n": 8}
    rows = report["text_to_image"]
    assert [(r["shapes"], r["condition"]) for r in rows] == [
        (k, c) for k in (1, 2) for c in ("unguided", "classifier-free 3", "CLIP 10")]
    assert all(r["all"]["rate"] == 1.0 and r["all"]["n"] == 4 for r in rows)
    assert report["inpainting"]["new_shape_right"]["rate"] == 1.0
    assert report["upsampler"]["checker_agrees_128_vs_32"]["rate"] == 1.0
    assert report["clip_zero_shot"]["accuracy"] == {"rate": 1.0, "low": pytest.approx(0.6756, abs=1e-4), "high": 1.0,
                                                    "n": 8}


def test_tradeoff_sweep_writes_every_point_with_its_provenance_and_a_plot(tmp_path, monkeypatch):
    monkeypatch.setattr(shapes_eval, "load_pipeline", lambda *a, **k: RenderingPipeline())
    out = tmp_path / "EVAL_TRADEOFF.json"
    shapes_eval.main(["shapes", "--tradeoff", "--n", "6", "--seeds", "3", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["command"] == f"python -m glide.eval shapes --tradeoff --n 6 --seeds 3 --out {out}"
    assert report["dtype"] == "float32" and report["device"] == "cpu" and report["prompts"] == 6
    assert {"git_commit", "date", "machine", "seconds"} <= set(report)
    points = report["points"]
    assert [(p.get("curve", p["strategy"]), p["scale"]) for p in points] == [("none", None)] + [
        (label, s) for label, (_, _, scales) in shapes_eval.TRADEOFF_CURVES.items() for s in scales]
    interval = next(p for p in points if p.get("curve") == "classifier-free, interval")
    assert interval["strategy"] == "classifier-free" and interval["params"] == {"interval": "0.28,5.42"}
    curves = measures.points_by_strategy(report)
    assert list(curves) == list(shapes_eval.TRADEOFF_CURVES)
    assert [p["scale"] for p in curves["classifier-free"]] == [1.0, *shapes_eval.CFG_SCALES]
    assert [p["scale"] for p in curves["clip"]] == [0.0, *shapes_eval.CLIP_SCALES]
    assert [p["scale"] for p in curves["clip, interval"]] == [0.0, 10.0, 30.0, 100.0]
    # Exact renders of the prompts: every scene right, nothing to fault, layouts as varied as the data.
    assert all(p["fidelity"] == {"rate": 1.0, "low": pytest.approx(0.8241, abs=1e-4), "high": 1.0, "n": 18}
               for p in points)
    assert all(p["realism_error"] == 0 and 0.5 < p["diversity"] < 1.5 for p in points)
    assert (tmp_path / "tradeoff.png").stat().st_size > 10_000


def test_tradeoff_diversity_is_zero_for_a_sampler_that_always_draws_one_layout():
    report = {"points": []}
    shapes_eval.eval_tradeoff(RenderingPipeline(fixed=True), 6, 3, "dpm++2m", 10, {"clip": ("clip", {}, (1.0,))}, report)
    assert report["points"][1]["diversity"] < 1e-6 and report["points"][1]["fidelity"]["rate"] == 1.0


class TruthUpsampler:
    """Stands in for the family: the base model draws the true low-res render, the upsampler returns the
    true high-res render or (when `blocky`) its input blown up."""

    class family:
        base_size, upsample_size = 32, 128

    def __init__(self, blocky=False):
        self.blocky = blocky

    def generate(self, captions, seed, upsample, **kw):
        scenes, all_captions = shapes_eval.fresh_scenes(4, 2)
        lows = [shapes_eval.true_pair(scenes[all_captions.index(c)], all_captions.index(c), 32, 128)[0]
                for c in captions]

        class Result:
            base_images = lows

        return Result()

    def upsample(self, images, captions, sampler, steps, seed, deep_cache=0):
        scenes, all_captions = shapes_eval.fresh_scenes(4, 2)
        out = []
        for image, caption in zip(images, captions):
            i = all_captions.index(caption)
            out.append(image.resize((128, 128), Image.NEAREST) if self.blocky
                       else shapes_eval.true_pair(scenes[i], i, 32, 128)[1])

        class Result:
            images = out

        return Result()


def test_upsampler_study_scores_the_truth_perfectly_and_a_blocky_copy_worse():
    perfect = shapes_eval.eval_upsampler_rules(TruthUpsampler(), 4, rules=[("ddim", 8)])[0]
    assert perfect["mean_abs_error"] == 0 and perfect["psnr_db"] >= 99 and perfect["edge_energy_vs_truth"] == 1
    assert perfect["checker_all"] == 1.0 and perfect["base_image_diff_at_base_size"] < 2
    # Blowing the input up keeps it exactly (reduced back, it is the input) but is far from the truth.
    blocky = shapes_eval.eval_upsampler_rules(TruthUpsampler(blocky=True), 4, rules=[("ddim", 8)])[0]
    assert blocky["mean_abs_error"] > 1 and blocky["psnr_db"] < 40 and blocky["base_image_diff_at_base_size"] == 0


def test_presets_are_measured_against_the_defaults_with_their_upsamplers(tmp_path):
    out = tmp_path / "EVAL_PRESETS.json"
    shapes_eval.main(["shapes", "--presets", "--n", "3", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["presets"]["fast"]["sampler"] == "dpm++3m" and report["cpu"]
    assert [(r["shapes"], r["condition"]) for r in report["text_to_image"]] == [
        (k, c) for k in (1, 2) for c in ("defaults, classifier-free 3", "preset fast, classifier-free 3")]
    assert all(r["all"]["n"] == 3 and r["seconds_per_image"] > 0 for r in report["text_to_image"])
    assert [r["rule"] for r in report["upsampler_rules"]] == ["ddim 8", "ddim 4, DeepCache 2"]


class IntervalRecorder(RenderingFamily):
    """Draws every caption exactly and records the DeepCache interval each stage was asked for."""

    def __init__(self):
        super().__init__()
        self.base_intervals, self.upsample_intervals = [], []

    def generate(self, captions, seed, upsample=True, **kw):
        if "deep_cache" in kw:
            self.base_intervals.append(kw["deep_cache"])
        return super().generate(captions, seed, upsample)

    def upsample(self, images, captions, sampler, steps, seed, deep_cache=0):
        self.upsample_intervals.append(deep_cache)
        return super().generate(captions, seed)


def test_deep_cache_study_runs_each_interval_on_both_stages(tmp_path, monkeypatch):
    family = IntervalRecorder()
    monkeypatch.setattr(shapes_eval, "load_pipeline", lambda *a, **k: family)
    out = tmp_path / "EVAL_DEEP_CACHE.json"
    shapes_eval.main(["shapes", "--deep-cache", "--n", "4", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["command"] == f"python -m glide.eval shapes --deep-cache --n 4 --out {out}"
    assert [(r["shapes"], r["condition"]) for r in report["base"]] == [
        (k, c) for k in (1, 2) for c in ("off", "DeepCache 2", "DeepCache 3")]
    assert all(r["all"]["rate"] == 1.0 and r["all"]["n"] == 4 for r in report["base"])
    assert [r["rule"] for r in report["upsampler"]] == ["ddim 8", "ddim 8, DeepCache 2", "ddim 8, DeepCache 3"]
    assert all(r["seconds_per_image"] >= 0 and r["checker_all"] == 1.0 for r in report["upsampler"])
    assert family.base_intervals == [0, 2, 3, 0, 2, 3]
    assert family.upsample_intervals == [0, 0, 2, 2, 3, 3]   # the true renders, then the base images


def test_a_crude_sketch_is_a_blob_of_the_shapes_colour_inside_its_mask():
    from glide.data import shapes

    rng = np.random.default_rng(0)
    scene = shapes.random_scene(rng, 1)
    sketch, mask, (cx, cy) = shapes_eval.crude_sketch(scene, rng, 32)
    painted = np.abs(np.asarray(sketch, dtype=int) - shapes.PALETTE[scene.background]).sum(-1) > 0
    inside = np.asarray(mask) > 0
    assert painted.sum() > 10 and inside[painted].all() and inside.sum() > painted.sum()   # the strokes are the mask
    colour = np.asarray(sketch, dtype=int)[painted].mean(0)
    assert np.abs(colour - shapes.PALETTE[scene.shapes[0].color]).max() < 40
    ys, xs = np.nonzero(painted)
    assert abs(xs.mean() / 32 - cx) < 0.02 and abs(ys.mean() / 32 - cy) < 0.02


def test_the_sketch_study_measures_each_strength_and_draws_its_tradeoff(tmp_path):
    out = tmp_path / "EVAL_SKETCH.json"
    shapes_eval.main(["shapes", "--sketch", "--n", "2", "--out", str(out)])
    report = json.loads(out.read_text())
    assert [r["strength"] for r in report["sketch"]] == list(shapes_eval.SKETCH_STRENGTHS)
    assert all(r["realism"]["n"] == 2 and r["offset_from_blob"] >= 0 for r in report["sketch"])
    assert [r["strength"] for r in report["image_to_image"]] == list(shapes_eval.IMAGE_TO_IMAGE_STRENGTHS)
    assert all(r["difference_from_render"] > 0 for r in report["image_to_image"])
    assert (tmp_path / "sketch.png").stat().st_size > 10_000
