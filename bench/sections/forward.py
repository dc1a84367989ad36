"""1. forward: one forward of the full-size base model and upsampler per precision/layout variant."""
import copy
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

from glide.cuda_graphs import GraphedModel
from glide.precision import DTYPES

from .. import env
from ..report import Table, fmt, fmt_err, fmt_pct, fmt_rate
from .common import Bench, budget_notes, error_text, log, section_status

SHORT = {"bfloat16": "bf16", "float16": "fp16"}


@dataclass
class Variant:
    name: str
    compute: str = "float32"          # autocast dtype, or float32
    channels_last: bool = False
    compiled: bool = False
    cuda_graph: bool = False          # captured once, replayed (--cuda-graphs, GPU only)
    weights: str = "float32"          # converted once to this dtype, the pipeline's half layout (convert_to_half)

    @property
    def precision(self) -> str:
        return self.weights if self.weights != "float32" else self.compute


def forward_variants(b: Bench) -> List[Variant]:
    """float32, then autocast (casts the weights every call), then weights converted once: what the pipeline
    runs in a half precision (`dtype="auto"` picks one where it measures faster: see the table's notes)."""
    out = [Variant("float32"), Variant("channels_last", channels_last=True)]
    for half in b.half_dtypes():
        out.append(Variant(f"{SHORT[half]}-autocast", compute=half))
    if b.gpu and "bfloat16" in b.half_dtypes():
        out.append(Variant("bf16-autocast+channels_last", compute="bfloat16", channels_last=True))
    for half in b.half_dtypes():
        out.append(Variant(f"{SHORT[half]}-weights", weights=half))
        if not b.gpu:   # the pipeline loads GLIDE channels-last on a CPU
            out.append(Variant(f"{SHORT[half]}-weights+channels_last", weights=half, channels_last=True))
    if b.compile:
        out.append(Variant("compile", compiled=True))
        if not b.gpu:   # what the pipeline would compile on a CPU with bf16 units
            out += [Variant(f"compile+{SHORT[half]}-weights+channels_last", weights=half, channels_last=True,
                            compiled=True) for half in b.half_dtypes()]
        if b.gpu and b.half_dtypes():
            half = b.half_dtypes()[0]
            out.append(Variant(f"compile+{SHORT[half]}-autocast", compute=half, compiled=True))
    if b.cuda_graphs:   # last, so that a failed capture cannot disturb the variants before it
        out.append(Variant("cuda-graph", cuda_graph=True))
        if "bfloat16" in b.half_dtypes():
            out.append(Variant("bf16-autocast+cuda-graph", compute="bfloat16", cuda_graph=True))
    return out


def forward_batches(b: Bench, name: str) -> List[int]:
    """One image's worth of work per step first (base: a classifier-free pair; upsampler: unguided, 1),
    then on GPU larger batches, up to one that fills the device."""
    one_image = 2 if name == "base" else 1
    return ([one_image, 16, 64] if name == "base" else [one_image, 8]) if b.gpu else [one_image]


def autocast(b: Bench, compute: str):
    if compute == "float32":
        return nullcontext()
    return torch.autocast(b.device.type, dtype=DTYPES[compute])


def run_variant(b: Bench, name: str, batch: int, v: Variant, flops: float,
                reference: Optional[torch.Tensor]) -> Tuple[Dict, Optional[torch.Tensor]]:
    """Time one (model, batch, variant); returns its result row and its output (for error comparison)."""
    p = b.profile
    row = {"model": name, "batch": batch, "variant": v.name, "compute": v.precision, "weights": v.weights,
           "channels_last": v.channels_last, "compiled": v.compiled, "cuda_graph": v.cuda_graph,
           "gflop": flops / 1e9,
           "gflop_per_item": flops / batch / 1e9}
    peak = b.peak_rate(v.precision)
    row["peak_gflop_per_s"] = None if peak is None else peak / 1e9
    if peak and flops / peak > p.skip_over_s and not b.full:
        # Running it would blow the time budget (bf16 on a CPU without bf16 units): report the
        # estimate from this run's own matmul rate, clearly labelled, and measure it only with --full.
        row.update(status="skipped", estimated_ms=flops / peak * 1e3,
                   note=f"not run: {fmt(flops / peak)} s per call estimated from the measured {v.precision} matmul "
                        f"rate ({fmt_rate(peak)}); --full measures it")
        return row, None
    model, _ = b.model(name)
    if v.weights != "float32":   # a converted copy: the float32 model serves the other variants
        model = copy.deepcopy(model)
        model.convert_to_half(DTYPES[v.weights])
    inputs = b.inputs(name, batch)
    if v.channels_last:
        model.to(memory_format=torch.channels_last)
        inputs["x"] = inputs["x"].contiguous(memory_format=torch.channels_last)
    # A CUDA graph is captured on the first (warm-up) call, then replayed: inputs copied in, output cloned
    # out, as the sampling loop gets it with --cuda-graphs.
    runner = torch.compile(model) if v.compiled else GraphedModel(model) if v.cuda_graph else model
    holder = {}

    def call():
        with torch.no_grad(), autocast(b, v.compute):
            holder["out"] = runner(inputs["x"], inputs["timesteps"],
                                   **{k: t for k, t in inputs.items() if k not in ("x", "timesteps")})

    try:
        log(f"forward {name} batch {batch} {v.name}")
        stats = env.benchmark(call, b.device, warmup=p.warmup, max_repeats=p.max_repeats, budget_s=p.budget_s)
        if v.cuda_graph and not runner.captured:
            raise RuntimeError("CUDA-graph capture failed; the timings would be eager")
    finally:
        if v.channels_last:
            model.to(memory_format=torch.contiguous_format)
        if v.compiled:
            torch._dynamo.reset()  # drop compiled graphs (and their memory) before the next variant
    out = holder.pop("out").float()
    sec = stats["median_s"]
    row.update(status="ok", ms=sec * 1e3, ms_samples=[s * 1e3 for s in stats["samples_s"]], repeats=stats["repeats"],
               first_call_ms=stats["first_call_s"] * 1e3, gflop_per_s=flops / sec / 1e9,
               mfu=(flops / sec / peak) if peak else None, items_per_s=batch / sec)
    if reference is not None:
        err = float((out - reference).norm() / reference.norm())
        row["rel_err_vs_float32"] = err if err == err and abs(err) != float("inf") else None
        if row["rel_err_vs_float32"] is None:
            row["note"] = "non-finite output (overflow in reduced precision)"
    return row, out


def section_forward(b: Bench):
    results = []
    table = Table("Forward pass (random weights, tokens included; median ms after warm-up)",
                  ["model", "batch", "variant", "ms/call", "GFLOP/item", "achieved", "MFU", "rel err vs fp32", "n"])
    for name in ("base", "upsample"):
        for batch in forward_batches(b, name):
            flops, text_flops = b.flops(name, batch)
            reference = None
            for v in forward_variants(b):
                if b.out_of_budget():
                    row = {"model": name, "batch": batch, "variant": v.name, "status": "skipped",
                           "budget": True, "note": b.budget_note(), "text_encoder_gflop": text_flops / 1e9}
                    results.append(row)
                    table.add(name, batch, v.name, "skipped (budget)", "-", "-", "-", "-", 0)
                    continue
                try:
                    row, out = run_variant(b, name, batch, v, flops, reference)
                    if v.name == "float32":
                        reference = out
                except Exception as e:  # one failing variant (e.g. compile without a compiler) is reported
                    log(traceback.format_exc())
                    row = {"model": name, "batch": batch, "variant": v.name, "status": "error", "error": error_text(e)}
                row["text_encoder_gflop"] = text_flops / 1e9
                results.append(row)
                if row["status"] == "ok":
                    table.add(name, batch, v.name, row["ms"], row["gflop_per_item"], fmt_rate(row["gflop_per_s"] * 1e9),
                              fmt_pct(row["mfu"]), fmt_err(row.get("rel_err_vs_float32")), row["repeats"])
                elif row["status"] == "skipped":
                    table.add(name, batch, v.name, f"~{fmt(row['estimated_ms'])} (est.)", row["gflop_per_item"],
                              "-", "-", "-", 0)
                else:
                    table.add(name, batch, v.name, "error", "-", "-", "-", "-", 0)
        if b.gpu:
            torch.cuda.empty_cache()
    table.notes.append("GFLOP/item counts one batch element's forward (torch.utils.flop_counter), text encoder "
                       "included; sampling encodes the text once per run, not per step")
    table.notes.append("MFU = achieved FLOP/s / this run's matmul rate in the same precision"
                       + (" (TF32 for float32: cuDNN convolutions use it by default)" if b.gpu else ""))
    if b.gpu and torch.backends.cudnn.allow_tf32:
        table.notes.append("errors are against this run's float32, whose convolutions use TF32 (PyTorch's default)")
    table.notes += [f"{r['model']} batch {r['batch']} {r['variant']}: first call (compilation) "
                    f"{fmt(r['first_call_ms'] / 1e3)} s" for r in results if r.get("compiled") and r["status"] == "ok"]
    if any((r.get("mfu") or 0) > 1 for r in results):
        table.notes.append("MFU above 100%: the model's kernels outran the matmul measured for that precision "
                           "(on a CPU, emulated bf16 matmuls and convolutions take different code paths)")
    table.notes += sorted({f"{r['variant']}: {r['note']}" for r in results if r.get("note") and not r.get("budget")})
    table.notes += budget_notes(b, results)
    table.notes += [f"{r['model']} {r['variant']}: {r['error']}" for r in results if r["status"] == "error"]
    return {"status": section_status(results), "results": results}, [table]
