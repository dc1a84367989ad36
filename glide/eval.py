"""Judge the embedded shapes family with its own checker.

    python -m glide.eval shapes                 # the full table (README numbers; --device cuda on a GPU)
    python -m glide.eval shapes --n 64 --quick  # a smaller, faster pass
    python -m glide.eval shapes --rerun "ddim, CLIP 10"   # re-measure some rows of an existing report

For fresh random scenes (a seed no training batch used), the base model draws each caption and the
checker reads the image back: per-attribute and all-attribute accuracy, on one- and two-shape
scenes, under several guidance strategies and step rules. Also inpainting (the new shape appears in
the masked region, the rest is unchanged), the upsampler (its 128 px image, reduced to 32 px,
matches the base image and the checker agrees at both sizes) and the noised CLIP's zero-shot
caption matching. Prints markdown tables and writes JSON.
"""
import argparse
import json
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from PIL import Image

from .data import shapes
from .pipeline import load_pipeline

EVAL_SEED = 12345  # scenes from a stream no training batch used (training seeds rng with [0, rank, step])
ATTRIBUTES = ("shape", "color", "position", "size")


def fresh_scenes(n: int, num_shapes: int, seed: int = EVAL_SEED):
    rng = np.random.default_rng([seed, num_shapes])
    scenes = [shapes.random_scene(rng, num_shapes) for _ in range(n)]
    return scenes, [shapes.caption(s, rng) for s in scenes]


def score(images, scenes) -> Dict[str, float]:
    """Accuracy of background, each attribute (over all shapes), and all attributes of the image."""
    verdicts = [shapes.matches(img, scene) for img, scene in zip(images, scenes)]
    out = {"all": np.mean([v["all"] for v in verdicts]), "background": np.mean([v["background"] for v in verdicts]),
           "count": np.mean([v["count"] for v in verdicts])}
    for a in ATTRIBUTES:
        out[a] = np.mean([s[a] for v in verdicts for s in v["shapes"]])
    return {k: round(float(v), 4) for k, v in out.items()}


def generate_all(pipe, captions, chunk: int = 64, **kw) -> List[Image.Image]:
    """Item i is drawn with seed EVAL_SEED + i, in calls of `chunk` prompts (the pipeline takes at most 64)."""
    images = []
    for i in range(0, len(captions), chunk):
        images += pipe.generate(captions[i:i + chunk], seed=EVAL_SEED + i, upsample=False, **kw).base_images
    return images


def eval_text_to_image(pipe, n: int, conditions, rows: List[dict], save=lambda: None) -> List[dict]:
    """Append a row per (scene kind, condition) to `rows`, calling `save` after each."""
    for num_shapes in (1, 2):
        scenes, captions = fresh_scenes(n, num_shapes)
        for label, kw in conditions:
            start = time.time()
            images = generate_all(pipe, captions, **kw)
            rows.append({"shapes": num_shapes, "condition": label, **score(images, scenes),
                         "seconds": round(time.time() - start, 1)})
            print(json.dumps(rows[-1]), flush=True)
            save()
    return rows


def eval_inpainting(pipe, n: int, **kw) -> dict:
    """Start from a rendered one-shape scene on one side; ask for a new shape on the opposite side."""
    rng = np.random.default_rng([EVAL_SEED, 7])
    found, kept, total = 0, 0, 0
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
        keep = np.asarray(mask) <= 127
        kept += np.array_equal(np.asarray(res.base_images[0])[keep], np.asarray(source)[keep])
        total += 1
    return {"n": total, "new_shape_right": round(found / total, 4), "kept_region_unchanged": round(kept / total, 4)}


def eval_upsampler(pipe, n: int, **kw) -> dict:
    scenes, captions = fresh_scenes(n, 1)
    res = pipe.generate(captions[:n], seed=EVAL_SEED, **kw)
    diffs, agree_base, agree_up = [], 0, 0
    for base, up, scene in zip(res.base_images, res.images, scenes):
        reduced = up.resize(base.size, Image.BOX)
        diffs.append(np.abs(np.asarray(reduced, np.float32) - np.asarray(base, np.float32)).mean())
        agree_base += shapes.matches(base, scene)["all"]
        agree_up += shapes.matches(up, scene)["all"] == shapes.matches(base, scene)["all"]
    return {"n": n, "mean_abs_diff_at_32px": round(float(np.mean(diffs)), 2),
            "checker_agrees_128_vs_32": round(agree_up / n, 4)}


# fast27 is the reference's; "3,1,1,2" and "5,1,1,1" are its recipe (steps dense near t = 0) at 8 steps,
# the first starting from t = 999 like fast27, the second from t = 750.
UPSAMPLER_RULES = (("ddpm", "fast27"), ("ddim", 8), ("ddim", 6), ("ddim", 4), ("dpm++2m", 8), ("dpm++2m", 6),
                   ("dpm++2m", 5), ("dpm++2m", 4), ("ddim", "3,1,1,2"), ("ddim", "5,1,1,1"))


def true_pair(scene, index: int, low: int, high: int):
    """The same jittered scene rendered at both sizes: the upsampler's ideal input and output."""
    seed = [EVAL_SEED, 5, index]
    return (shapes.render(scene, low, np.random.default_rng(seed)),
            shapes.render(scene, high, np.random.default_rng(seed)))


def eval_upsampler_rules(pipe, n: int, rules=UPSAMPLER_RULES, chunk: int = 32) -> List[dict]:
    """Each step rule of the upsampler, on exact inputs and on the base model's images.

    On true low-res renders (two-shape scenes) the output is scored against the true high-res render
    of the same scene, so any error is the upsampler's: mean absolute error and PSNR, edge energy
    relative to the truth (above 1 = grainier, below 1 = blurrier) and the checker's verdict. On the
    base model's images for the same captions (family defaults), reduced back to the base size, the
    output is compared with its input: how faithfully the upsampler keeps what it was given.
    """
    scenes, captions = fresh_scenes(n, 2)
    pairs = [true_pair(scene, i, pipe.family.base_size, pipe.family.upsample_size) for i, scene in enumerate(scenes)]
    truth = np.stack([np.asarray(high, np.float32) for _, high in pairs])
    generated = generate_all(pipe, captions)

    def upsample_all(images, rule, steps):
        out = []
        for i in range(0, n, chunk):
            out += pipe.upsample(images[i:i + chunk], captions[i:i + chunk], sampler=rule, steps=steps,
                                 seed=EVAL_SEED + i).images
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
        rows.append({"rule": f"{rule} {steps}", "mean_abs_error": round(float(np.abs(images - truth).mean()), 2),
                     "psnr_db": round(float(np.mean(10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10)))), 2),
                     "edge_energy_vs_truth": round(float(edges(images) / edges(truth)), 3),
                     "checker_all": round(float(np.mean([shapes.matches(im, sc)["all"] for im, sc in zip(out, scenes)])), 4),
                     "base_image_diff_at_base_size": round(float(np.mean(kept)), 2),
                     "seconds": round(time.time() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


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
        image = shapes.images_to_tensor(np.asarray(shapes.render(scene, pipe.family.base_size, rng))[None])
        captions = [shapes.caption(o, rng) for o in options]
        t = torch.zeros(1, dtype=torch.long)
        with torch.no_grad():
            z_i = clip.image_embeddings(image.to(clip.device), t.to(clip.device))
            z_t = clip.text_embeddings(captions)
        correct += int((z_t @ z_i[0]).argmax()) == 0
    return {"n": n, "distractors": distractors, "accuracy": round(correct / n, 4)}


def markdown(rows: List[dict]) -> str:
    keys = ["shapes", "condition", "all", "background", *ATTRIBUTES, "seconds"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", choices=["shapes"])
    parser.add_argument("--n", type=int, default=256, help="prompts per condition and scene kind")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--quick", action="store_true", help="only the headline conditions")
    parser.add_argument("--out", type=Path, help="the report (default glide/assets/shapes/EVAL.json, with "
                                                  "--samplers EVAL_SAMPLERS.json beside it)")
    parser.add_argument("--samplers", action="store_true",
                        help="only the step-rule comparison: the base model (steps vs accuracy vs wall time, "
                             "one-shape, unguided) and the upsampler (on true low-res renders against the truth, "
                             "and on the base model's images against them)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--rerun", nargs="+", metavar="CONDITION",
                        help="re-measure only these text-to-image conditions (by label) at the n of the report in "
                             "--out, and replace their rows there (marked with the device they ran on)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = Path("glide/assets/shapes") / ("EVAL_SAMPLERS.json" if args.samplers else "EVAL.json")
    pipe = load_pipeline(args.family, device=args.device)
    if args.samplers:
        rules = [("ddpm", 150), ("ddpm", 50), ("ddim", 50), ("ddim", 25), ("dpm++2m", 20), ("dpm++2m", 10)]
        conditions = [(f"{rule} {steps}", dict(sampler=rule, steps=steps, guidance="none")) for rule, steps in rules]
        scenes, captions = fresh_scenes(args.n, 1)
        rows = []
        for label, kw in conditions:
            start = time.time()
            images = generate_all(pipe, captions, **kw)
            rows.append({"shapes": 1, "condition": label, **score(images, scenes), "seconds": round(time.time() - start, 1)})
            print(json.dumps(rows[-1]), flush=True)
        upsampler_rows = eval_upsampler_rules(pipe, args.n)
        args.out.write_text(json.dumps({"n": args.n, "samplers": rows, "upsampler_rules": upsampler_rows}, indent=1))
        print(markdown(rows))
        return
    steps = args.steps
    conditions = [
        ("ddim, unguided", dict(sampler="ddim", steps=steps, guidance="none")),
        ("ddim, classifier-free 3", dict(sampler="ddim", steps=steps, guidance="classifier-free", guidance_scale=3.0)),
        ("ddim, CLIP 10", dict(sampler="ddim", steps=steps, guidance="clip", guidance_scale=10.0)),
    ]
    extra = [
        ("ddim, classifier-free 1.5", dict(sampler="ddim", steps=steps, guidance="classifier-free", guidance_scale=1.5)),
        ("ddim, classifier-free 6", dict(sampler="ddim", steps=steps, guidance="classifier-free", guidance_scale=6.0)),
        ("ddim, CLIP 3", dict(sampler="ddim", steps=steps, guidance="clip", guidance_scale=3.0)),
        ("ddim, CLIP 30", dict(sampler="ddim", steps=steps, guidance="clip", guidance_scale=30.0)),
        ("ddpm 100, classifier-free 3", dict(sampler="ddpm", steps=100, guidance="classifier-free", guidance_scale=3.0)),
        ("dpm++2m 15, classifier-free 3", dict(sampler="dpm++2m", steps=15, guidance="classifier-free", guidance_scale=3.0)),
        ("dpm++2m 10, classifier-free 3", dict(sampler="dpm++2m", steps=10, guidance="classifier-free", guidance_scale=3.0)),
    ]
    if args.rerun:
        chosen = [c for c in conditions + extra if c[0] in args.rerun]
        unknown = sorted(set(args.rerun) - {label for label, _ in chosen})
        if unknown:
            parser.error(f"unknown condition(s) {unknown}; choose from {[label for label, _ in conditions + extra]}")
        report = json.loads(args.out.read_text())
        fresh = eval_text_to_image(pipe, report["n"], chosen, [])
        by_key = {(row["shapes"], row["condition"]): {**row, "device": str(pipe.device)} for row in fresh}
        rows = [by_key.pop((row["shapes"], row["condition"]), row) for row in report["text_to_image"]]
        report["text_to_image"] = sorted(rows + list(by_key.values()), key=lambda row: row["shapes"])
        args.out.write_text(json.dumps(report, indent=1))
        print(markdown(report["text_to_image"]))
        return
    # The report is rewritten after every row, so an interrupted run keeps what it measured.
    report = {"n": args.n, "steps": steps, "device": str(pipe.device), "text_to_image": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        args.out.write_text(json.dumps(report, indent=1))

    # Headline conditions and the other components first, the extra conditions last.
    small = max(16, args.n // 8)
    eval_text_to_image(pipe, args.n, conditions, report["text_to_image"], save)
    report["inpainting"] = eval_inpainting(pipe, small, steps=steps)
    save()
    report["upsampler"] = eval_upsampler(pipe, min(small, 32), steps=steps)
    save()
    report["clip_zero_shot"] = eval_clip(pipe, args.n)
    save()
    eval_text_to_image(pipe, args.n, [] if args.quick else extra, report["text_to_image"], save)
    report["text_to_image"].sort(key=lambda row: row["shapes"])  # stable: conditions keep their order
    save()
    print(markdown(report["text_to_image"]))
    for key in ("inpainting", "upsampler", "clip_zero_shot"):
        print(f"{key}: {report[key]}")


if __name__ == "__main__":
    main()
