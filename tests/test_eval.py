"""glide.eval: scoring (perfect on renders of the prompts, low on wrong images), --rerun, the upsampler study."""
import json

import numpy as np
from PIL import Image

from glide import eval as shapes_eval
from glide.data import shapes


def test_score_is_perfect_on_renders_and_low_on_shuffled_images():
    scenes, captions = shapes_eval.fresh_scenes(24, 2)
    assert all(shapes.parse_caption(c) == s for c, s in zip(captions, scenes))
    rng = np.random.default_rng(0)
    images = [shapes.render(s, 32, rng) for s in scenes]
    assert shapes_eval.score(images, scenes)["all"] == 1.0
    shuffled = shapes_eval.score(images[1:] + images[:1], scenes)
    assert shuffled["all"] < 0.2 and shuffled["background"] < 0.5


def test_markdown_table_lists_every_row():
    rows = [{"shapes": 1, "condition": "x", "all": 0.5, "background": 1.0, "shape": 1.0, "color": 1.0,
             "position": 1.0, "size": 1.0, "seconds": 1.0}]
    table = shapes_eval.markdown(rows)
    assert table.count("\n") == 2 and "| 1 | x | 0.5 |" in table


class RenderingPipeline:
    """Stands in for the model: draws each caption exactly, or (when `wrong`) always the same scene."""

    device = "cpu"

    def __init__(self, wrong=False):
        self.wrong = wrong

    def generate(self, captions, seed, upsample, **kw):
        rng = np.random.default_rng(seed)
        scenes = [shapes.parse_caption(c) for c in captions]
        if self.wrong:
            scenes = [shapes.Scene("orange", (shapes.Shape("circle", "red", "center", "large"),))] * len(scenes)

        class Result:
            base_images = [shapes.render(s, 32, rng) for s in scenes]

        return Result()


def test_rerun_replaces_only_the_named_rows(tmp_path, monkeypatch):
    report = {"n": 6, "steps": 25, "device": "cuda", "text_to_image": [
        {"shapes": k, "condition": c, "all": 0.5, "background": 1.0, "shape": 1.0, "color": 1.0, "position": 1.0,
         "size": 1.0, "seconds": 1.0} for k in (1, 2) for c in ("ddim, unguided", "ddim, CLIP 10")]}
    out = tmp_path / "EVAL.json"
    out.write_text(json.dumps(report))
    monkeypatch.setattr(shapes_eval, "load_pipeline", lambda *a, **k: RenderingPipeline())
    shapes_eval.main(["shapes", "--rerun", "ddim, CLIP 10", "--out", str(out)])
    rows = json.loads(out.read_text())["text_to_image"]
    assert [(r["shapes"], r["condition"], r["all"]) for r in rows] == [
        (1, "ddim, unguided", 0.5), (1, "ddim, CLIP 10", 1.0), (2, "ddim, unguided", 0.5), (2, "ddim, CLIP 10", 1.0)]
    assert {r.get("device") for r in rows if r["condition"] == "ddim, CLIP 10"} == {"cpu"}

    monkeypatch.setattr(shapes_eval, "load_pipeline", lambda *a, **k: RenderingPipeline(wrong=True))
    shapes_eval.main(["shapes", "--rerun", "ddim, unguided", "--out", str(out)])
    rows = json.loads(out.read_text())["text_to_image"]
    assert [r["all"] for r in rows if r["condition"] == "ddim, unguided"] == [0.0, 0.0]


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

    def upsample(self, images, captions, sampler, steps, seed):
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
