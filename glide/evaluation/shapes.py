"""Judge the embedded shapes family with its own checker.

    python -m glide.eval shapes                 # EVAL.json: the table in docs/shapes-family.md (--device cuda on a GPU)
    python -m glide.eval shapes --tradeoff      # EVAL_TRADEOFF.json + tradeoff.png: guidance scale sweeps
    python -m glide.eval shapes --samplers      # EVAL_SAMPLERS.json: step rules of the base model and upsampler,
                                                # the fast solvers against DPM-Solver++(2M), their exact-ODE errors
    python -m glide.eval shapes --deep-cache    # EVAL_DEEP_CACHE.json: DeepCache intervals against off, both stages
    python -m glide.eval shapes --presets       # EVAL_PRESETS.json: each preset (glide.settings.PRESETS) against
                                                # the defaults, guided, and its upsampler against the truth
    python -m glide.eval shapes --sketch        # EVAL_SKETCH.json + sketch.png: editing from a crude colour sketch
                                                # and image to image, over strengths (SDEdit's trade-off)
    python -m glide.eval shapes --n 32 --quick --out /tmp/e.json   # a smaller, faster pass

For fresh random scenes (a seed no training batch used), the base model draws each caption and the
checker reads the image back: per-attribute and all-attribute accuracy, on one- and two-shape
scenes, under several guidance strategies and step rules. Also inpainting (the new shape appears in
the masked region; the kept region is the input's by construction, which the tests check), the
upsampler (its 128 px image, reduced to 32 px, matches the base image and the checker agrees at both
sizes) and the noised CLIP's zero-shot caption matching. Rates carry Wilson 95% intervals. Every
report records the command, n, device, dtype, git commit and date it was measured with; a report is
only ever written whole by one command, never patched. Prints markdown tables and writes JSON.
"""
import argparse
import dataclasses
import datetime
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from PIL import Image

import samplers
from samplers.builtin_guidance import SDXL_INTERVAL

from .. import precision
from ..data import shapes
from ..model_creation import create_gaussian_diffusion
from ..pipeline import load_pipeline
from ..respace import NOISE_SPACINGS
from ..settings import PRESETS
from . import measures

EVAL_SEED = 12345  # scenes from a stream no training batch used (training seeds rng with [0, rank, step])
ATTRIBUTES = ("shape", "color", "position", "size")


def fresh_scenes(n: int, num_shapes: int, seed: int = EVAL_SEED):
    rng = np.random.default_rng([seed, num_shapes])
    scenes = [shapes.random_scene(rng, num_shapes) for _ in range(n)]
    return scenes, [shapes.caption(s, rng) for s in scenes]


def score(images, scenes) -> Dict:
    """All attributes right (with its Wilson interval), clean, background, count and each attribute (over all shapes)."""
    verdicts = [shapes.matches(img, scene) for img, scene in zip(images, scenes)]
    out = {"all": measures.wilson(sum(v["all"] for v in verdicts), len(verdicts))}
    for key in ("clean", "background", "count"):
        out[key] = round(float(np.mean([v[key] for v in verdicts])), 4)
    for a in ATTRIBUTES:
        out[a] = round(float(np.mean([s[a] for v in verdicts for s in v["shapes"]])), 4)
    return out


def provenance(pipe, argv) -> Dict:
    """What a report was measured with: command, device, dtype, commit (and whether the tree had edits), date."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    return {"command": "python -m glide.eval " + " ".join(argv), "device": str(pipe.device), "dtype": str(pipe.dtype),
            "git_commit": git("rev-parse", "HEAD"), "git_uncommitted_changes": bool(git("status", "--porcelain",
                                                                                          "--untracked-files=no")),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
            "cpu": precision.cpu_description()}


def generate_all(pipe, captions, chunk: int = 64, **kw) -> List[Image.Image]:
    """Item i is drawn with seed EVAL_SEED + i, in calls of `chunk` prompts (the pipeline takes at most 64)."""
    images = []
    for i in range(0, len(captions), chunk):
        images += pipe.generate(captions[i:i + chunk], seed=EVAL_SEED + i, upsample=False, **kw).base_images
    return images


def eval_text_to_image(pipe, n: int, conditions, rows: List[dict], save=lambda: None, kinds=(1, 2)) -> List[dict]:
    """Append a row per (scene kind, condition) to `rows`, calling `save` after each."""
    for num_shapes in kinds:
        scenes, captions = fresh_scenes(n, num_shapes)
        for label, kw in conditions:
            start = time.time()
            images = generate_all(pipe, captions, **kw)
            seconds = time.time() - start
            rows.append({"shapes": num_shapes, "condition": label, **score(images, scenes),
                         "seconds": round(seconds, 1), "seconds_per_image": round(seconds / n, 4)})
            print(json.dumps(rows[-1]), flush=True)
            save()
    return rows


def eval_inpainting(pipe, n: int, **kw) -> dict:
    """Start from a rendered one-shape scene on one side; ask for a new shape on the opposite side.

    Only the new shape is judged: the kept region is the input's by construction (the sampler
    holds it fixed), which tests/test_pipeline.py checks, so measuring it here could not fail.
    """
    rng = np.random.default_rng([EVAL_SEED, 7])
    found = 0
    for i in range(n):
        scene = shapes.random_scene(rng, 2)   # two shapes always stand at opposite positions
        first, second = scene.shapes
        source = shapes.render(shapes.Scene(scene.background, (first,)), pipe.family.base_size, rng)
        size = pipe.family.base_size
        mask = Image.new("L", (size, size), 0)   # white = edit: the half where the new shape goes
        half = {"left": (0, 0, size // 2, size), "right": (size // 2, 0, size, size),
                "top": (0, 0, size, size // 2), "bottom": (0, size // 2, size, size)}[second.position]
        mask.paste(255, half)
        res = pipe.inpaint(source, mask, [shapes.caption(scene, rng)], seed=EVAL_SEED + i, upsample=False, **kw)
        new_shape = shapes.matches(res.base_images[0], scene)["shapes"][1]
        found += all(new_shape[a] for a in ("shape", "color", "position"))
    return {"new_shape_right": measures.wilson(found, n)}


def eval_upsampler(pipe, n: int, **kw) -> dict:
    scenes, captions = fresh_scenes(n, 1)
    res = pipe.generate(captions[:n], seed=EVAL_SEED, **kw)
    diffs, agree_up = [], 0
    for base, up, scene in zip(res.base_images, res.images, scenes):
        reduced = up.resize(base.size, Image.BOX)
        diffs.append(np.abs(np.asarray(reduced, np.float32) - np.asarray(base, np.float32)).mean())
        agree_up += shapes.matches(up, scene)["all"] == shapes.matches(base, scene)["all"]
    return {"n": n, "mean_abs_diff_at_32px": round(float(np.mean(diffs)), 2),
            "checker_agrees_128_vs_32": measures.wilson(agree_up, n)}


# fast27 is the reference's; "3,1,1,2" and "5,1,1,1" are its recipe (steps dense near t = 0) at 8 steps,
# the first starting from t = 999 like fast27, the second from t = 750.
UPSAMPLER_RULES = (("ddpm", "fast27"), ("ddim", 8), ("ddim", 6), ("ddim", 4), ("dpm++2m", 8), ("dpm++2m", 6),
                   ("dpm++2m", 5), ("dpm++2m", 4), ("ddim", "3,1,1,2"), ("ddim", "5,1,1,1"))


def true_pair(scene, index: int, low: int, high: int):
    """The same jittered scene rendered at both sizes: the upsampler's ideal input and output."""
    seed = [EVAL_SEED, 5, index]
    return (shapes.render(scene, low, np.random.default_rng(seed)),
            shapes.render(scene, high, np.random.default_rng(seed)))


def eval_upsampler_rules(pipe, n: int, rules=UPSAMPLER_RULES, chunk: int = 32, deep_cache: int = 0) -> List[dict]:
    """Each step rule of the upsampler, on exact inputs and on the base model's images.

    On true low-res renders (two-shape scenes) the output is scored against the true high-res render
    of the same scene, so any error is the upsampler's: mean absolute error and PSNR, edge energy
    relative to the truth (above 1 = grainier, below 1 = blurrier) and the checker's verdict. On the
    base model's images for the same captions (family defaults), reduced back to the base size, the
    output is compared with its input: how faithfully the upsampler keeps what it was given. `deep_cache`
    runs the upsampler with that DeepCache interval (rows then say so).
    """
    scenes, captions = fresh_scenes(n, 2)
    pairs = [true_pair(scene, i, pipe.family.base_size, pipe.family.upsample_size) for i, scene in enumerate(scenes)]
    truth = np.stack([np.asarray(high, np.float32) for _, high in pairs])
    generated = generate_all(pipe, captions)

    def upsample_all(images, rule, steps):
        out = []
        for i in range(0, n, chunk):
            out += pipe.upsample(images[i:i + chunk], captions[i:i + chunk], sampler=rule, steps=steps,
                                 seed=EVAL_SEED + i, deep_cache=deep_cache).images
        return out

    def edges(images):
        return np.abs(np.diff(images, axis=1)).mean() + np.abs(np.diff(images, axis=2)).mean()

    rows = []
    for rule, steps in rules:
        start = time.time()
        out = upsample_all([low for low, _ in pairs], rule, steps)
        images = np.stack([np.asarray(image, np.float32) for image in out])
        mse = ((images - truth) ** 2).mean(axis=(1, 2, 3))
        kept = [np.abs(np.asarray(up.resize(base.size, Image.BOX), np.float32) - np.asarray(base, np.float32)).mean()
                for up, base in zip(upsample_all(generated, rule, steps), generated)]
        label = f"{rule} {steps}" + (f", DeepCache {deep_cache}" if deep_cache else "")
        rows.append({"rule": label, "mean_abs_error": round(float(np.abs(images - truth).mean()), 2),
                     "psnr_db": round(float(np.mean(10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10)))), 2),
                     "edge_energy_vs_truth": round(float(edges(images) / edges(truth)), 3),
                     "checker_all": round(float(np.mean([shapes.matches(im, sc)["all"] for im, sc in zip(out, scenes)])), 4),
                     "base_image_diff_at_base_size": round(float(np.mean(kept)), 2),
                     "seconds": round(time.time() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


DEEP_CACHE_INTERVALS = (0, 2, 3)


def eval_deep_cache(pipe, n: int, report: Dict, save=lambda: None, intervals=DEEP_CACHE_INTERVALS) -> Dict:
    """DeepCache against off on both stages: the base model at the family's defaults (DPM-Solver++(2M) 10,
    classifier-free 3) on one- and two-shape scenes, n prompts each, judged by the checker; the upsampler
    (DDIM 8, its default) on n // 2 true low-res renders, scored against the truth as in the step-rule rows.
    Every row has its seconds per image; interval 0 is off."""
    conditions = [("off" if interval == 0 else f"DeepCache {interval}", dict(deep_cache=interval))
                  for interval in intervals]
    # Loaded and warmed outside the timed rows, so the first row's seconds are not the models' loading.
    pipe.generate(fresh_scenes(1, 1)[1], seed=EVAL_SEED, upsample_steps=2, steps=2)
    report.update(n=n, settings={"base": "family defaults", "upsampler": "ddim 8", "upsampler_n": n // 2},
                  base=[], upsampler=[])
    eval_text_to_image(pipe, n, conditions, report["base"], save)
    for interval in intervals:
        (row,) = eval_upsampler_rules(pipe, n // 2, rules=[("ddim", 8)], deep_cache=interval)
        # The row's seconds upsample n // 2 true renders and as many base images.
        row["seconds_per_image"] = round(row["seconds"] / (2 * (n // 2)), 4)
        report["upsampler"].append(row)
        save()
    return report


# The fast ODE solvers against DPM-Solver++(2M) 10 (the family's default), unguided and classifier-free 3.
FAST_SOLVERS = [("dpm++2m", 10, {})] + [(rule, steps, {"spacing": "time"}) for rule in ("unipc", "dpm++3m")
                                         for steps in (5, 6, 8, 10)] + [
    (rule, 6, {"spacing": spacing}) for rule in ("unipc", "dpm++3m") for spacing in ("logsnr", "karras")]
GAUSSIAN_RULES = [("ddim", {}), ("dpm++2m", {})] + [(rule, {"spacing": spacing}) for rule in ("unipc", "dpm++3m")
                                                  for spacing in NOISE_SPACINGS]


def solver_conditions(solvers=FAST_SOLVERS) -> List[tuple]:
    """(label, generate keywords) for each solver unguided and with classifier-free 3."""
    conditions = []
    for guidance, label in (("none", ""), ("classifier-free", ", classifier-free 3")):
        for rule, steps, params in solvers:
            name = " ".join([rule, str(steps), *(v for v in params.values() if v != "time")])
            conditions.append((name + label, dict(sampler=rule, steps=steps, sampler_params=params or None,
                                                  guidance=guidance, guidance_scale=3.0 if label else None)))
    return conditions


def solve(rule: str, params: dict, diffusion, steps: int, model, x_T, **run_kw):
    """A step rule's sample from x_T on `steps` of `diffusion`, with the timesteps it picks (as samplers.sample
    does): (sample, the respaced process)."""
    plugin = samplers.get_registry().step_rule(rule)
    params = samplers.validate_params(plugin, params)
    spaced = samplers.respace_for(plugin, diffusion, steps, params)
    run = samplers.SamplingRun(diffusion=spaced, guided=samplers.Guided(model), noise_like=torch.zeros_like, **run_kw)
    return plugin.sample(run, x_T.clone(), **params), spaced


def gaussian_ode_errors(steps: int, rules=GAUSSIAN_RULES, s: float = 0.5) -> Dict[str, float]:
    """Each deterministic rule's error where the ODE is exact: data ~ N(0, s^2) on the cosine schedule, so the
    ideal denoiser is linear and the probability-flow ODE has a closed form. The max abs difference from the
    exact x0 at the last timestep, from one x_T [4, 3, 8, 8]; keyed "rule" or "rule spacing"."""
    base = create_gaussian_diffusion(steps=1000, noise_schedule="squaredcos_cap_v2")
    abar_all = torch.from_numpy(base.alphas_cumprod)

    def ideal(x, ts):
        abar = abar_all[ts].view(-1, 1, 1, 1)
        x0 = abar.sqrt() * s * s / (abar * s * s + 1 - abar) * x.double()
        eps = (x.double() - abar.sqrt() * x0) / (1 - abar).sqrt()
        return torch.cat([eps.float(), torch.zeros_like(x)], dim=1)

    x_T = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    errors = {}
    for rule, params in rules:
        out, spaced = solve(rule, params, base, steps, ideal, x_T, clip_denoised=False)
        first, last = spaced.alphas_cumprod[-1], spaced.alphas_cumprod[0]
        # The ODE scales x by the marginal std ratio; at the last step the rules return the posterior mean of x0.
        x_last = x_T.double() * math.sqrt((last * s * s + 1 - last) / (first * s * s + 1 - first))
        exact = math.sqrt(last) * s * s / (last * s * s + 1 - last) * x_last
        errors[" ".join([rule, *map(str, params.values())])] = round((out.double() - exact).abs().max().item(), 4)
    return errors


def eval_clip(pipe, n: int, distractors: int = 4) -> dict:
    """Pick the true caption among distractors that differ in one attribute, from the clean image (t=0)."""
    clip = pipe.component("clip")
    rng = np.random.default_rng([EVAL_SEED, 9])
    correct = 0
    for _ in range(n):
        scene = shapes.random_scene(rng)
        options = [scene]
        while len(options) < 1 + distractors:
            s = list(scene.shapes)
            j = rng.integers(len(s))
            attr = rng.choice(["shape", "color", "position", "size", "background"])
            if attr == "background":
                other = shapes.Scene(rng.choice(list(shapes.PALETTE)), scene.shapes)
            else:
                values = {"shape": shapes.SHAPES, "color": tuple(shapes.PALETTE), "size": shapes.SIZES,
                          "position": tuple(shapes.POSITIONS)}[attr]
                s[j] = shapes.Shape(**{**s[j].__dict__, attr: rng.choice(values)})
                other = shapes.Scene(scene.background, tuple(s))
            if shapes.is_valid(other) and other not in options:
                options.append(other)
        image = shapes.images_to_tensor(np.array(shapes.render(scene, pipe.family.base_size, rng))[None])
        captions = [shapes.caption(o, rng) for o in options]
        t = torch.zeros(1, dtype=torch.long)
        with torch.no_grad():
            z_i = clip.image_embeddings(image.to(clip.device), t.to(clip.device))
            z_t = clip.text_embeddings(captions)
        correct += int((z_t @ z_i[0]).argmax()) == 0
    return {"distractors": distractors, "accuracy": measures.wilson(correct, n)}


# Every strategy at its neutral scale samples the conditional model alone, exactly as unguided sampling
# does (same images for the same seeds), so that point is measured once and starts every curve.
CFG_SCALES = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
CLIP_SCALES = (1.0, 3.0, 10.0, 30.0, 100.0)
UNGUIDED_SCALE = {"classifier-free": 1.0, "cfg-rescale": 1.0, "clip": 0.0}
GUIDANCE_INTERVAL = SDXL_INTERVAL   # Kynkaanniemi et al. 2024's, for SD-XL
# curve label: (strategy, its other parameters, the scales measured)
TRADEOFF_CURVES = {
    "classifier-free": ("classifier-free", {}, CFG_SCALES),
    "clip": ("clip", {}, CLIP_SCALES),
    "cfg-rescale": ("cfg-rescale", {"phi": 0.7}, (3.0, 4.0, 6.0, 8.0)),
    "classifier-free, interval": ("classifier-free", {"interval": GUIDANCE_INTERVAL}, (3.0, 4.0, 6.0, 8.0)),
    "clip, interval": ("clip", {"interval": GUIDANCE_INTERVAL}, (10.0, 30.0, 100.0)),
}


def eval_tradeoff(pipe, prompts: int, seeds: int, sampler: str, steps: int, curves: Dict[str, tuple],
                  report: Dict, save=lambda: None) -> Dict:
    """Fidelity, diversity and realism of unguided sampling and of each guidance curve at each scale, on
    two-shape prompts. `curves` maps a label to (strategy, its other parameters, scales), as TRADEOFF_CURVES.

    Every point draws each of `prompts` fresh two-shape captions with `seeds` seeds (the same
    prompts and seeds at every point) and records: fidelity (the checker's all-right rate, Wilson
    95%), diversity and realism error (see glide.evaluation.measures), the noised CLIP's mean cosine similarity
    between image and caption at t = 0, and the wall time. Points go into `report["points"]`, saved
    after each one; the unguided point has strategy "none" (`report["unguided_is_scale"]` says which
    scale of each curve it stands for).
    """
    scenes, captions = fresh_scenes(prompts, 2)
    reference = measures.data_variances(scenes, pipe.family.base_size)
    clip = pipe.component("clip")
    repeated = [caption for caption in captions for _ in range(seeds)]
    report["unguided_is_scale"] = {label: UNGUIDED_SCALE[strategy] for label, (strategy, _, _) in curves.items()}
    runs = [("none", "none", {}, None)] + [(label, strategy, params, scale)
                                           for label, (strategy, params, scales) in curves.items() for scale in scales]
    for label, strategy, params, scale in runs:
        start = time.time()
        images = generate_all(pipe, repeated, sampler=sampler, steps=steps, guidance=strategy, guidance_scale=scale,
                              guidance_params=params or None)
        seconds = time.time() - start
        verdicts = [shapes.matches(image, scenes[i // seeds]) for i, image in enumerate(images)]
        pixels = shapes.images_to_tensor(np.stack([np.asarray(image) for image in images])).to(pipe.device)
        similarity = clip.similarity(pixels, torch.zeros(len(images), dtype=torch.long, device=pipe.device), repeated)
        grouped = [images[i * seeds:(i + 1) * seeds] for i in range(prompts)]
        report["points"].append({
            "strategy": strategy, **({"curve": label, "params": params} if label != strategy else {}), "scale": scale,
            "fidelity": measures.wilson(sum(v["all"] for v in verdicts), len(verdicts)),
            "clean": round(float(np.mean([v["clean"] for v in verdicts])), 4),
            "diversity": round(measures.diversity(measures.layout_variances(grouped, scenes), reference), 3),
            "realism_error": round(float(np.mean([measures.realism_error(image) for image in images])), 2),
            "clip_score": round(float(similarity.mean()), 4), "seconds": round(seconds, 1),
            "seconds_per_image": round(seconds / len(images), 4)})
        print(json.dumps(report["points"][-1]), flush=True)
        save()
    return report


def eval_presets(pipe, n: int, report: Dict, save=lambda: None) -> Dict:
    """Each preset of glide.settings.PRESETS against the family's defaults, classifier-free 3 (the demo's
    default guidance), on one- and two-shape scenes; then the upsampler of each against the defaults' on
    true low-res renders (eval_upsampler_rules). Rows go into `report`, saved after each."""
    family = pipe.family
    conditions = [("defaults, classifier-free 3", dict(guidance="classifier-free", guidance_scale=3.0))] + [
        (f"preset {name}, classifier-free 3", dict(preset=name, guidance="classifier-free", guidance_scale=3.0))
        for name in PRESETS]
    report["text_to_image"] = []
    eval_text_to_image(pipe, n, conditions, report["text_to_image"], save)
    upsamplers = [(family.default_upsample_sampler, family.default_upsample_steps, 0)]
    for preset in PRESETS.values():
        rule = (preset.upsample_sampler or family.default_upsample_sampler,
                preset.upsample_steps or family.default_upsample_steps, preset.upsample_deep_cache)
        if rule not in upsamplers:
            upsamplers.append(rule)
    report["upsampler_rules"] = [row for rule, steps, interval in upsamplers
                                 for row in eval_upsampler_rules(pipe, min(n, 64), [(rule, steps)], deep_cache=interval)]
    save()
    return report


SKETCH_STRENGTHS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
IMAGE_TO_IMAGE_STRENGTHS = (0.3, 0.5, 0.7, 1.0)


def crude_sketch(scene, rng, size: int):
    """A user's rough stroke for a one-shape scene: an irregular blob of the shape's colour where the shape should
    be (its centre and about its size, not its outline) on the plain background, and the mask the strokes make
    (the blob grown by two pixels). Returns (sketch, mask, blob centre in fractions of the side)."""
    from PIL import ImageDraw, ImageFilter

    (shape,), ((cx, cy, h),) = scene.shapes, shapes.layout(scene, rng)
    sketch = Image.new("RGB", (size, size), shapes.PALETTE[scene.background])
    angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
    radii = h * size * rng.uniform(0.7, 1.25, len(angles))
    outline = [(cx * size + r * np.cos(a), cy * size + r * np.sin(a)) for a, r in zip(angles, radii)]
    colour = tuple(int(np.clip(c + d, 0, 255)) for c, d in zip(shapes.PALETTE[shape.color], rng.integers(-25, 26, 3)))
    blob = Image.new("L", (size, size), 0)
    ImageDraw.Draw(blob).polygon(outline, fill=255)
    sketch.paste(colour, mask=blob)
    mask = blob.filter(ImageFilter.MaxFilter(5))
    ys, xs = np.nonzero(np.asarray(blob))
    return sketch, mask, (xs.mean() / size, ys.mean() / size)


def _offset(image, scene, target) -> Optional[float]:
    """How far (in fractions of the side) the shape of the scene's colour that the checker reads sits from
    `target`; None when it reads none."""
    reading = shapes.read(image)
    found = [g for s, g in zip(reading.shapes, reading.geometry) if s.color == scene.shapes[0].color]
    return None if not found else float(min(math.hypot(g[0] - target[0], g[1] - target[1]) for g in found))


def eval_sketch(pipe, n: int, report: Dict, save=lambda: None) -> Dict:
    """SDEdit's trade-off on the shapes family, the defaults with classifier-free 3.

    Sketch editing: for n one-shape scenes, a crude blob of the caption's colour where its shape should be
    (crude_sketch), the strokes the mask, the caption naming the rest; inpainted at each strength (1.0 is plain
    inpainting of the same mask). Realism: the share the checker reads as the caption; faithfulness: how far the
    shape of that colour sits from the blob's centre. Image to image: from n true renders with their caption,
    the share read right, how far the result is from the render (mean absolute difference, levels of 255) and
    how much two seeds differ (the same measure between them)."""
    size = pipe.family.base_size
    rng = np.random.default_rng([EVAL_SEED, 11])
    sketches = []
    for _ in range(n):
        scene = shapes.random_scene(rng, 1)
        sketches.append((scene, shapes.caption(scene, rng), *crude_sketch(scene, rng, size)))
    report["sketch"] = []
    for strength in SKETCH_STRENGTHS:
        right, offsets = 0, []
        for i, (scene, caption, sketch, mask, centre) in enumerate(sketches):
            image = pipe.inpaint(sketch, mask, caption, seed=EVAL_SEED + i, strength=strength, upsample=False).images[0]
            right += shapes.matches(image, scene)["all"]
            offset = _offset(image, scene, centre)
            offsets.append(np.nan if offset is None else offset)
        found = np.isfinite(offsets)
        report["sketch"].append({"strength": strength, "realism": measures.wilson(right, n),
                                 "offset_from_blob": round(float(np.nanmedian(offsets)) * size, 2) if found.any() else None,
                                 "shape_of_colour_found": measures.wilson(int(found.sum()), n)})
        print(json.dumps(report["sketch"][-1]), flush=True)
        save()
    scenes, captions = fresh_scenes(n, 1, seed=EVAL_SEED + 1)
    renders = [shapes.render(scene, size, rng) for scene in scenes]
    report["image_to_image"] = []
    for strength in IMAGE_TO_IMAGE_STRENGTHS:
        right, from_render, between_seeds = 0, [], []
        for i, (scene, caption, render) in enumerate(zip(scenes, captions, renders)):
            a, b = pipe.generate(caption, seed=[EVAL_SEED + 2 * i, EVAL_SEED + 2 * i + 1], init_image=render,
                                 strength=strength, upsample=False).images
            right += shapes.matches(a, scene)["all"]
            pixels = [np.asarray(x, dtype=np.float64) for x in (a, b, render)]
            from_render.append(np.abs(pixels[0] - pixels[2]).mean())
            between_seeds.append(np.abs(pixels[0] - pixels[1]).mean())
        report["image_to_image"].append({"strength": strength, "right": measures.wilson(right, n),
                                         "difference_from_render": round(float(np.mean(from_render)), 2),
                                         "difference_between_seeds": round(float(np.mean(between_seeds)), 2)})
        print(json.dumps(report["image_to_image"][-1]), flush=True)
        save()
    return report


def sketch_figure(report: Dict):
    """Realism against faithfulness over strength, the way SDEdit draws its trade-off (without pyplot)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    axis = figure.subplots()
    rows = report["sketch"]
    xs = [r["offset_from_blob"] for r in rows]
    ys = [100 * r["realism"]["rate"] for r in rows]
    errors = [[100 * (r["realism"]["rate"] - r["realism"]["low"]) for r in rows],
              [100 * (r["realism"]["high"] - r["realism"]["rate"]) for r in rows]]
    axis.errorbar(xs, ys, yerr=errors, marker="o", capsize=2, color="tab:blue")
    for r, x, y in zip(rows, xs, ys):
        axis.annotate(f"{r['strength']:g}" + (" (plain inpainting)" if r["strength"] == 1 else ""), (x, y),
                      textcoords="offset points", xytext=(5, 4), fontsize=8)
    axis.set_xlabel("shape's median distance from the sketched blob (px of 32; lower = more faithful)")
    axis.set_ylabel("realism: % read as the caption")
    axis.set_title(f"sketch editing, shapes family ({report['n']} crude sketches; labels: strength)", fontsize=10)
    axis.grid(alpha=0.3)
    return figure


def percent(rate: Dict) -> str:
    """A Wilson rate as the docs write it: 99.2% (97.1-99.8)."""
    return f"{100 * rate['rate']:.1f}% ({100 * rate['low']:.1f}-{100 * rate['high']:.1f})"


def markdown(rows: List[dict]) -> str:
    keys = ["shapes", "condition", "all", "clean", "background", *ATTRIBUTES, "seconds"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(percent(r[k]) if isinstance(r[k], dict) else str(r[k]) for k in keys) + " |"
              for r in rows]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", choices=["shapes"])
    parser.add_argument("--n", type=int, help="prompts per condition and scene kind (default 128; --samplers: 64; "
                                              "--tradeoff: prompts per point, 40; --deep-cache: 128, the "
                                              "upsampler half)")
    parser.add_argument("--steps", type=int, default=10, help="steps of the default rule (DPM-Solver++(2M))")
    parser.add_argument("--quick", action="store_true", help="only the headline conditions")
    parser.add_argument("--out", type=Path, help="the report (default glide/assets/shapes/EVAL.json, with "
                                                  "--samplers EVAL_SAMPLERS.json, --tradeoff EVAL_TRADEOFF.json "
                                                  "and tradeoff.png beside it)")
    parser.add_argument("--samplers", action="store_true",
                        help="only the step-rule comparison: the base model (steps vs accuracy vs wall time, "
                             "one-shape, unguided) and the upsampler (on true low-res renders against the truth, "
                             "and on the base model's images against them)")
    parser.add_argument("--tradeoff", action="store_true",
                        help="only the guidance trade-off: classifier-free and CLIP guidance at several scales, "
                             "fidelity vs diversity vs realism (see glide.evaluation.measures), JSON and a plot")
    parser.add_argument("--deep-cache", action="store_true",
                        help="only DeepCache: intervals 2 and 3 against off, the base model at its defaults "
                             "(checker accuracy) and the upsampler (error against the truth), with seconds per image")
    parser.add_argument("--presets", action="store_true",
                        help="only the presets (glide.settings.PRESETS) against the defaults: guided accuracy, "
                             "seconds per image and the upsampler's error against the truth")
    parser.add_argument("--sketch", action="store_true",
                        help="only editing from a crude colour sketch and image to image, over strengths: "
                             "EVAL_SKETCH.json and sketch.png")
    parser.add_argument("--seeds", type=int, default=4, help="--tradeoff: seeds per prompt")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--dtype", default="float32", help="passed to load_pipeline (float32, bfloat16, float16, ...)")
    args = parser.parse_args(argv)
    name = ("EVAL_SAMPLERS.json" if args.samplers else "EVAL_TRADEOFF.json" if args.tradeoff
            else "EVAL_DEEP_CACHE.json" if args.deep_cache else "EVAL_PRESETS.json" if args.presets
            else "EVAL_SKETCH.json" if args.sketch else "EVAL.json")
    args.out = args.out or Path("glide/assets/shapes") / name
    args.n = args.n or (64 if args.samplers or args.sketch else 40 if args.tradeoff else 128)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(args.family, device=args.device, dtype=args.dtype)
    # The report is rewritten after every row, so an interrupted run keeps what it measured.
    report = {**provenance(pipe, argv)}

    def save():
        args.out.write_text(json.dumps(report, indent=1) + "\n")

    if args.tradeoff:
        report.update(prompts=args.n, seeds=args.seeds, settings={"sampler": "dpm++2m", "steps": args.steps},
                      points=[])
        start = time.time()
        eval_tradeoff(pipe, args.n, args.seeds, "dpm++2m", args.steps, TRADEOFF_CURVES, report, save)
        report["seconds"] = round(time.time() - start, 1)
        save()
        measures.tradeoff_figure(report).savefig(args.out.with_name("tradeoff.png"), dpi=110)
        return
    if args.deep_cache:
        eval_deep_cache(pipe, args.n, report, save)
        print(markdown(report["base"]))
        for row in report["upsampler"]:
            print(row)
        return
    if args.sketch:
        report.update(n=args.n, settings="the family's defaults, classifier-free 3, no upsampling")
        eval_sketch(pipe, args.n, report, save)
        sketch_figure(report).savefig(args.out.with_name("sketch.png"), dpi=110)
        return
    if args.presets:
        report.update(n=args.n, presets={name: dataclasses.asdict(preset) for name, preset in PRESETS.items()})
        eval_presets(pipe, args.n, report, save)
        print(markdown(report["text_to_image"]))
        return
    if args.samplers:
        rules = [("ddpm", 150), ("ddpm", 50), ("ddim", 50), ("ddim", 25), ("dpm++2m", 20), ("dpm++2m", 10)]
        conditions = [(f"{rule} {steps}", dict(sampler=rule, steps=steps, guidance="none")) for rule, steps in rules]
        report.update(n=args.n, samplers=[], gaussian_ode_max_error={steps: gaussian_ode_errors(steps)
                                                                     for steps in (5, 6, 8, 10, 20)}, fast_solvers=[])
        eval_text_to_image(pipe, args.n, conditions, report["samplers"], save, kinds=(1,))
        eval_text_to_image(pipe, args.n, solver_conditions(), report["fast_solvers"], save)
        report["upsampler_rules"] = eval_upsampler_rules(pipe, args.n)
        save()
        print(markdown(report["samplers"]))
        print(markdown(report["fast_solvers"]))
        return
    rule = dict(sampler="dpm++2m", steps=args.steps)
    conditions = [
        ("unguided", dict(rule, guidance="none")),
        ("classifier-free 3", dict(rule, guidance="classifier-free", guidance_scale=3.0)),
        ("CLIP 10", dict(rule, guidance="clip", guidance_scale=10.0)),
    ]
    extra = [("ddim 25, classifier-free 3", dict(sampler="ddim", steps=25, guidance="classifier-free",
                                                  guidance_scale=3.0))]
    small = max(16, args.n // 2)
    report.update(n=args.n, settings={**rule, "inpainting_n": small, "upsampler_n": min(small, 32),
                                      "clip_zero_shot_n": 2 * args.n}, text_to_image=[])
    # Headline conditions and the other components first, the extra conditions last.
    eval_text_to_image(pipe, args.n, conditions, report["text_to_image"], save)
    report["inpainting"] = eval_inpainting(pipe, small, **rule)
    save()
    report["upsampler"] = eval_upsampler(pipe, min(small, 32), **rule)
    save()
    report["clip_zero_shot"] = eval_clip(pipe, 2 * args.n)
    save()
    eval_text_to_image(pipe, args.n, [] if args.quick else extra, report["text_to_image"], save)
    report["text_to_image"].sort(key=lambda row: row["shapes"])  # stable: conditions keep their order
    save()
    print(markdown(report["text_to_image"]))
    for key in ("inpainting", "upsampler", "clip_zero_shot"):
        print(f"{key}: {report[key]}")

