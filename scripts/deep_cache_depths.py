"""Which DeepCache branch to cache at: the shapes family's accuracy and error at each branch depth.

    python scripts/deep_cache_depths.py base [--n 128]       # two-shape scenes, family defaults: checker accuracy
    python scripts/deep_cache_depths.py upsampler [--n 32]   # DDIM 8 on true renders: error against the truth

The pipeline always caches at `glide.deep_cache.default_depth` (the entry of the lowest-resolution
level); this runs its sampling with `DeepCachedModel` at other depths, to show what that choice rests
on (docs/shapes-family.md, DeepCache). The same scenes, seeds and scores as `python -m glide.eval shapes --deep-cache`.
Float32 on the CPU; a few minutes each: on a shared box run it under the lock.
"""
import argparse
import json
import time

import numpy as np

import glide.pipeline as pipeline_module
from glide.deep_cache import DeepCachedModel, default_depth
from glide.evaluation import shapes as shapes_eval
from glide.pipeline import load_pipeline

BASE_RUNS = [(depth, interval) for depth in (1, 2, 3, 4) for interval in (2, 3)]
UPSAMPLER_RUNS = [(None, 0), (1, 2), (4, 2), (6, 2), (8, 2), (6, 3), (8, 3)]


def at_depth(depth):
    """The pipeline's DeepCache wrapper, caching at `depth` (None: the default branch)."""
    def wrap(model, interval):
        return DeepCachedModel(model, interval, depth=depth) if interval >= 2 else model
    return wrap


def base(pipe, n: int):
    scenes, captions = shapes_eval.fresh_scenes(n, 2)
    print(json.dumps({"default_depth": default_depth(pipe.component("base")[0])}))
    for depth, interval in BASE_RUNS:
        pipeline_module.with_deep_cache = at_depth(depth)
        start = time.time()
        images = shapes_eval.generate_all(pipe, captions, deep_cache=interval)
        seconds = time.time() - start
        score = shapes_eval.score(images, scenes)
        print(json.dumps({"depth": depth, "interval": interval, "all": score["all"], "clean": score["clean"],
                          "seconds_per_image": round(seconds / n, 4)}), flush=True)


def upsampler(pipe, n: int):
    scenes, captions = shapes_eval.fresh_scenes(n, 2)
    size = (pipe.family.base_size, pipe.family.upsample_size)
    pairs = [shapes_eval.true_pair(scene, i, *size) for i, scene in enumerate(scenes)]
    truth = np.stack([np.asarray(high, np.float32) for _, high in pairs])
    print(json.dumps({"default_depth": default_depth(pipe.component("upsample")[0])}))
    for depth, interval in UPSAMPLER_RUNS:
        pipeline_module.with_deep_cache = at_depth(depth)
        start = time.time()
        out = pipe.upsample([low for low, _ in pairs], captions, sampler="ddim", steps=8, seed=shapes_eval.EVAL_SEED,
                            deep_cache=interval).images
        seconds = time.time() - start
        images = np.stack([np.asarray(image, np.float32) for image in out])
        mse = ((images - truth) ** 2).mean(axis=(1, 2, 3))
        print(json.dumps({"depth": depth, "interval": interval,
                          "mean_abs_error": round(float(np.abs(images - truth).mean()), 2),
                          "psnr_db": round(float(np.mean(10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10)))), 2),
                          "seconds_per_image": round(seconds / n, 4)}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("base", "upsampler"))
    parser.add_argument("--n", type=int, help="scenes (default: base 128, upsampler 32)")
    args = parser.parse_args(argv)
    pipe = load_pipeline("shapes", device="cpu", dtype="float32")
    if args.stage == "base":
        base(pipe, args.n or 128)
    else:
        upsampler(pipe, args.n or 32)


if __name__ == "__main__":
    main()
