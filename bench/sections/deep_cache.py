"""deepcache: one sampling step of the base model and upsampler with DeepCache off and on (glide.deep_cache).

A full step is today's forward (it also stores the cached feature); a shallow step runs only the path
around the cache's branch (glide.deep_cache.default_depth: the two highest-resolution levels) on a
cached feature. With a full step every N,
a step costs (full + (N - 1) * shallow) / N on average. Timed as the pipeline samples: the models in the
automatic dtype and layout (the pipeline's own loading of this run's random-weight models), the text
encoded once, base batch 2 (one classifier-free pair), upsampler batch 1 (unguided).
"""
import traceback
from typing import Dict, List

import torch

from glide.deep_cache import DeepCacheStep, default_depth

from .. import env
from ..report import Table, fmt
from .common import Bench, budget_notes, error_text, log, section_status

INTERVALS = (2, 3)
BATCHES = {"base": 2, "upsample": 1}


def step_times(b: Bench, name: str, batch: int) -> Dict:
    """Median seconds of a full and of a shallow step of one component at `batch`, and their relative error."""
    pipe = b.pipeline("auto")
    model, _ = pipe.component(name)
    inputs = b.inputs(name, batch)
    x, t = inputs["x"], inputs["timesteps"]
    depth = default_depth(model)
    with torch.no_grad():
        kwargs = {"text_emb": model.encode_text(inputs["tokens"], inputs["mask"])}
    if "low_res" in inputs:
        kwargs["low_res"] = inputs["low_res"]
    cached = DeepCacheStep(depth)
    holder = {}

    def full():
        with torch.no_grad():
            step = DeepCacheStep(depth)
            holder["full"] = model(x, t, deep_cache=step, **kwargs)
            cached.feature = step.feature

    def shallow():
        with torch.no_grad():
            holder["shallow"] = model(x, t, deep_cache=cached, **kwargs)

    p = b.profile
    log(f"deepcache {name} batch {batch}: full step")
    full_stats = env.benchmark(full, b.device, warmup=p.warmup, max_repeats=p.max_repeats, budget_s=p.budget_s)
    log(f"deepcache {name} batch {batch}: shallow step")
    shallow_stats = env.benchmark(shallow, b.device, warmup=p.warmup, max_repeats=p.max_repeats, budget_s=p.budget_s)
    # On the very input the feature came from, the shallow step must give the full step's output.
    difference = float((holder["shallow"].float() - holder["full"].float()).abs().max())
    return {"dtype": pipe.dtype, "depth": depth, "blocks": len(model.input_blocks),
            "full_s": full_stats["median_s"], "shallow_s": shallow_stats["median_s"],
            "full_repeats": full_stats["repeats"], "shallow_repeats": shallow_stats["repeats"],
            "shallow_vs_full_max_abs_diff": difference}


def section_deep_cache(b: Bench):
    results: List[Dict] = []
    table = Table("DeepCache: seconds per sampling step (random weights, the automatic dtype; median after warm-up)",
                  ["model", "batch", "dtype", "full step s", "shallow step s",
                   *[f"N={n} avg s/step" for n in INTERVALS], *[f"N={n} speed-up" for n in INTERVALS]])
    for name, batch in BATCHES.items():
        row: Dict = {"model": name, "batch": batch}
        results.append(row)
        if b.out_of_budget():
            row.update(status="skipped", budget=True, note=b.budget_note())
            table.add(name, batch, "-", "skipped (budget)", "", *[""] * (2 * len(INTERVALS)))
            continue
        try:
            row.update(step_times(b, name, batch), status="ok")
            average = {n: (row["full_s"] + (n - 1) * row["shallow_s"]) / n for n in INTERVALS}
            row["per_step_s"] = {str(n): average[n] for n in INTERVALS}
            row["speedup"] = {str(n): row["full_s"] / average[n] for n in INTERVALS}
            table.add(name, batch, row["dtype"], row["full_s"], row["shallow_s"], *average.values(),
                      *[f"{fmt(row['full_s'] / average[n])}x" for n in INTERVALS])
        except Exception as e:
            log(traceback.format_exc())
            row.update(status="error", error=error_text(e))
            table.add(name, batch, "-", "error", row["error"], *[""] * (2 * len(INTERVALS)))
        if b.gpu:
            torch.cuda.empty_cache()
    table.notes.append("shallow step: the two highest-resolution levels (glide.deep_cache.default_depth) on the "
                       "cached feature of the levels below and the middle block; N = a full forward every N steps")
    table.notes += [f"{r['model']}: branch depth {r['depth']} of {r['blocks']} input blocks" for r in results
                    if r.get("status") == "ok"]
    table.notes += [f"{r['model']}: shallow step on its own feature differs from the full step by at most "
                    f"{r['shallow_vs_full_max_abs_diff']:.3g}" for r in results if r.get("status") == "ok"]
    table.notes += budget_notes(b, results)
    return {"status": section_status(results), "intervals": list(INTERVALS), "results": results}, [table]
