"""4. batch: throughput vs batch size."""
import traceback

import torch

from .. import env, models
from ..report import Table, fmt_pct, fmt_rate
from .common import Bench, budget_notes, error_text, log, section_status
from .forward import autocast


def section_batch(b: Bench):
    p = b.profile
    if b.gpu:
        plan = [(name, compute, [1, 4, 16]) for name in ("base", "upsample")
                for compute in ["float32"] + b.half_dtypes()[:1]]
    elif b.quick:
        plan = [(name, "float32", [1, 4]) for name in ("base", "upsample")]
    else:
        plan = [("base", "float32", [1, 4])]  # CPU: the quick form, the upsampler would take minutes
    results = []
    table = Table("Throughput vs batch size (forward passes)", ["model", "compute", "batch", "ms/call", "items/s",
                                                               "achieved", "MFU"])
    for name, compute, batches in plan:
        for batch in batches:
            if b.out_of_budget():
                results.append({"model": name, "compute": compute, "batch": batch, "status": "skipped",
                                "budget": True, "note": b.budget_note()})
                table.add(name, compute, batch, "skipped (budget)", "-", "-", "-")
                continue
            try:
                model, _ = b.model(name)
                flops, _ = b.flops(name, batch)
                fn = models.forward_fn(model, b.inputs(name, batch))

                def call():
                    with torch.no_grad(), autocast(b, compute):
                        fn()

                log(f"batch {name} {compute} {batch}")
                # CPU: one warm-up and one timed call: enough to see the scaling, affordable in minutes.
                stats = env.benchmark(call, b.device, warmup=p.warmup,
                                      max_repeats=p.max_repeats if b.gpu or b.quick else 1, budget_s=p.budget_s)
                sec = stats["median_s"]
                peak = b.peak_rate(compute)
                row = {"model": name, "compute": compute, "batch": batch, "status": "ok", "ms": sec * 1e3,
                       "repeats": stats["repeats"], "items_per_s": batch / sec, "gflop_per_s": flops / sec / 1e9,
                       "mfu": flops / sec / peak if peak else None}
                table.add(name, compute, batch, row["ms"], row["items_per_s"], fmt_rate(flops / sec), fmt_pct(row["mfu"]))
            except Exception as e:
                log(traceback.format_exc())
                row = {"model": name, "compute": compute, "batch": batch, "status": "error", "error": error_text(e)}
                table.add(name, compute, batch, "error", "-", "-", "-")
            results.append(row)
        if b.gpu:
            torch.cuda.empty_cache()
    table.notes.append("items = batch elements; a classifier-free base image costs 2 items per step")
    table.notes += budget_notes(b, results)
    if not b.gpu:
        table.notes.append("CPU: batch 1 and 4 only" + ("" if b.quick else " of the base model") +
                           ", one timed call each; the GPU run covers 1/4/16 for both models")
    return {"status": section_status(results), "results": results}, [table]
