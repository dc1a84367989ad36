"""The benchmark's sections. Each returns (JSON-ready dict, tables) and never raises for one bad case.

matmul   the device's dense matmul rate per dtype: the denominator of every MFU figure
forward  one forward of the full-size base model and upsampler per precision/layout variant
sample   text -> 256x256 sample: the reference's settings against our fastest of equal quality
batch    throughput vs batch size
shapes   the embedded default family end to end: cold start to first image, images/s at batch 8

With a wall-clock budget (`--budget-s`), a section, variant, setting or batch that would start after
the budget is spent is not run: it is recorded as `skipped` with a note saying so.
"""
import json
import os
import subprocess
import sys
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch

import samplers
from glide.cuda_graphs import GraphedModel
from glide.model_registry import FAMILIES, channels_last_on_cpu
from glide.pipeline import Pipeline
from glide.settings import GenerationSettings
from samplers import Cancelled

from . import env, models
from .report import Table, fmt, fmt_err, fmt_pct, fmt_rate

# Run order: what a GPU run must show first (MFU's denominator, forward MFU, sampling time, batch
# scaling), then the embedded model's CPU figures, so a budget cut loses the least important part.
SECTIONS = ("matmul", "forward", "sample", "batch", "shapes")
SHAPES_PROMPT = "a small red circle on the left on a blue background"


def log(msg: str):
    """Progress on stderr, so a ten-minute run shows where it is without cluttering the table on stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Profile:
    """How hard to time: per-variant repeat bounds and time budget, sized to finish `make bench` in minutes."""

    warmup: int
    max_repeats: int
    budget_s: float            # timed calls per variant fit in this (at least one)
    skip_over_s: float         # a variant predicted slower than this per call is estimated, not run (unless --full)
    matmul_target_s: float     # one matmul call at least this long (N doubles until it is)
    matmul_max_n: int
    matmul_budget_s: float
    sample_steps: int          # steps measured per stage when extrapolating
    sample_repeats: int = 1    # full sampling runs per setting (the median is reported)


def profile_for(device: torch.device, quick: bool) -> Profile:
    if quick:
        return Profile(warmup=1, max_repeats=3, budget_s=0.3, skip_over_s=60, matmul_target_s=0.01,
                       matmul_max_n=512, matmul_budget_s=0.05, sample_steps=2)
    if device.type == "cuda":
        # ~40 timed calls (forward, batch, matmul) at about a second each, and 3 full sampling runs
        # per setting: the whole run is a minute or two on an H100/H200.
        return Profile(warmup=3, max_repeats=30, budget_s=1.0, skip_over_s=600, matmul_target_s=0.02,
                       matmul_max_n=8192, matmul_budget_s=0.5, sample_steps=5, sample_repeats=3)
    # CPU: a base forward at batch 2 is ~5-10 s on 2 cores and an upsampler forward ~15-30 s, so the
    # budget buys 2-3 timed calls of the base and one of the upsampler per variant.
    return Profile(warmup=1, max_repeats=3, budget_s=20.0, skip_over_s=45, matmul_target_s=0.2,
                   matmul_max_n=4096, matmul_budget_s=1.5, sample_steps=2)


def _is_channels_last(model: torch.nn.Module) -> bool:
    conv_weight = next(p for p in model.parameters() if p.dim() == 4)
    return conv_weight.is_contiguous(memory_format=torch.channels_last) and not conv_weight.is_contiguous()


class Bench:
    """Shared state of one run: options, device, the models (built once), the measured matmul rates."""

    def __init__(self, device: torch.device, *, quick: bool, full: bool, compile: bool, args: Dict,
                 budget_s: Optional[float] = None, cuda_graphs: bool = False,
                 started: Optional[float] = None):
        self.device = device
        self.quick, self.full, self.compile = quick, full, compile
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        self.args = args
        self.options = models.quick_options() if quick else models.full_options()
        self.profile = profile_for(device, quick)
        self._models: Dict[str, tuple] = {}
        self._graphed: Dict[str, GraphedModel] = {}
        self._pipelines: Dict[tuple, Pipeline] = {}
        self._flops_per_item: Dict[str, Tuple[float, float]] = {}
        self.rates: Dict[str, Dict] = {}
        self.warmed = set()    # (model, batch, compute) shapes that have run once (see warm_up)
        self.budget_s = budget_s
        self.started = time.monotonic() if started is None else started   # time.monotonic() at the start

    # -------------------------------------------------------------------------------- wall-clock budget
    def budget_left(self) -> Optional[float]:
        """Seconds of the --budget-s budget left (negative when overspent); None without a budget."""
        if self.budget_s is None:
            return None
        return self.budget_s - (time.monotonic() - self.started)

    def out_of_budget(self) -> bool:
        left = self.budget_left()
        return left is not None and left <= 0

    def budget_note(self) -> str:
        return f"not run: the wall-clock budget (--budget-s {self.budget_s:g}) was spent"

    @property
    def gpu(self) -> bool:
        return self.device.type == "cuda"

    def model(self, name: str):
        """(model, diffusion) of 'base' or 'upsample', built with random weights on first use."""
        if name not in self._models:
            log(f"building {name} model with random weights")
            self._models[name] = models.build(self.options[name], self.device)
        return self._models[name]

    def pipeline(self, compute: str, cuda_graphs: bool = False) -> Pipeline:
        """A pipeline over this run's models (the GLIDE (filtered) family's shape, random weights), in the
        `compute` precision: the sample section runs the pipeline's own stages, as users do."""
        key = (compute, cuda_graphs)
        if key not in self._pipelines:
            family = replace(
                FAMILIES["glide-filtered"], base_size=self.options["base"]["image_size"],
                upsample_size=self.options["upsample"]["image_size"], text_ctx=self.options["base"]["text_ctx"],
                load=lambda component, _device, _checkpoint_dir: self.model(component))
            self._pipelines[key] = Pipeline(family, self.device, dtype=compute, cuda_graphs=cuda_graphs)
        return self._pipelines[key]

    def graphed(self, name: str) -> GraphedModel:
        """The model of 'base' or 'upsample' with CUDA-graph replay; its graphs last for the whole run."""
        if name not in self._graphed:
            self._graphed[name] = GraphedModel(self.model(name)[0])
        return self._graphed[name]

    def warm_up(self, name: str, batch: int, compute: str = "float32"):
        """One untimed forward at this shape, precision and weight layout unless one already ran: a first
        call pays for memory allocation (and cuDNN/oneDNN set-up), which would skew a measurement of two steps."""
        model, _ = self.model(name)
        key = (name, batch, compute, _is_channels_last(model))
        if key not in self.warmed:
            log(f"warm-up {name} batch {batch} {compute}")
            with torch.no_grad(), _autocast(self, compute):
                models.forward_fn(model, self.inputs(name, batch))()
            self.warmed.add(key)

    def inputs(self, name: str, batch: int, seed: int = 0) -> Dict:
        return models.make_inputs(self.options[name], batch, self.device, models.low_res_size(self.options), seed)

    def flops(self, name: str, batch: int) -> Tuple[float, float]:
        """(FLOPs of a forward, FLOPs of its text encoder) at this batch.

        Counted once per model at batch 1 and scaled: every op is per batch element, so FLOPs are
        exactly linear in the batch, and a full-size count costs about a second of CPU each time.
        """
        if name not in self._flops_per_item:
            self._flops_per_item[name] = models.count_flops(self.options[name], 1, models.low_res_size(self.options))
        total, text = self._flops_per_item[name]
        return total * batch, text * batch

    def half_dtypes(self) -> List[str]:
        """Reduced precisions to try: bf16 everywhere (measured, however slow), fp16 on GPU only."""
        if self.gpu:
            out = ["float16"]
            if torch.cuda.is_bf16_supported():
                out.insert(0, "bfloat16")
            return out
        return ["bfloat16"]

    def peak_rate(self, compute: str) -> Optional[float]:
        """The measured matmul FLOP/s matching a variant's compute precision (MFU's denominator).

        GPU float32 convolutions run as TF32 when cuDNN allows it (PyTorch's default), so their
        ceiling is the TF32 matmul rate, not strict float32's.
        """
        if not self.rates:
            section_matmul(self)
        key = compute
        if compute == "float32" and self.gpu and torch.backends.cudnn.allow_tf32 and "tf32" in self.rates:
            key = "tf32"
        rate = self.rates.get(key)
        return rate["gflop_per_s"] * 1e9 if rate else None


def _status(rows: List[Dict]) -> str:
    """A section's status from its rows: ok (skips allowed), partial (some failed), error (all failed)."""
    failed = sum(r.get("status") == "error" for r in rows)
    return "ok" if not failed else "error" if failed == len(rows) else "partial"


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]


class _BudgetSpent(Exception):
    pass


def _budget_notes(b: "Bench", rows: List[Dict]) -> List[str]:
    n = sum(bool(r.get("budget")) for r in rows)
    return [f"{n} row(s) {b.budget_note()}"] if n else []


# ---------------------------------------------------------------------------------------------- 0. matmul
def section_matmul(b: Bench):
    p = b.profile
    dtypes = ["float32"] + (["tf32"] if b.gpu else []) + b.half_dtypes()
    results, table = [], Table("Dense matmul rate (N x N x N, median)", ["dtype", "N", "ms/call", "rate"])
    for name in dtypes:
        if b.out_of_budget():
            results.append({"dtype": name, "status": "skipped", "note": b.budget_note()})
            table.add(name, "-", "-", "skipped (budget)")
            continue
        log(f"matmul {name}")
        tf32 = name == "tf32"
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32 if b.gpu else old
        try:
            r = env.matmul_rate(b.device, env.DTYPES["float32" if tf32 else name], target_s=p.matmul_target_s,
                                max_n=p.matmul_max_n, budget_s=p.matmul_budget_s, max_repeats=50)
            r = {"dtype": name, "status": "ok", **r}
            b.rates[name] = r
            table.add(name, r["n"], r["ms"], fmt_rate(r["gflop_per_s"] * 1e9))
        except Exception as e:  # e.g. a dtype this device's build has no matmul for
            r = {"dtype": name, "status": "error", "error": _error(e)}
            table.add(name, "-", "-", "error: " + r["error"])
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
        results.append(r)
    if not b.gpu and "bfloat16" in b.rates and b.rates["bfloat16"]["gflop_per_s"] < b.rates["float32"]["gflop_per_s"]:
        ratio = b.rates["float32"]["gflop_per_s"] / b.rates["bfloat16"]["gflop_per_s"]
        table.notes.append(f"bfloat16 is {fmt(ratio)}x SLOWER than float32 on this CPU "
                           f"(flags: {', '.join(env._cpu_info()['cpu_flags']) or 'none'}; no avx512_bf16/amx "
                           "means bf16 is emulated)")
    return {"status": _status(results), "results": results}, [table]


# ---------------------------------------------------------------------------------------------- 1. forward
SHORT = {"bfloat16": "bf16", "float16": "fp16"}


@dataclass
class Variant:
    name: str
    compute: str = "float32"          # autocast dtype, or float32
    channels_last: bool = False
    compiled: bool = False
    cuda_graph: bool = False          # captured once, replayed (--cuda-graphs, GPU only)


def forward_variants(b: Bench) -> List[Variant]:
    out = [Variant("float32"), Variant("channels_last", channels_last=True)]
    for half in b.half_dtypes():
        out.append(Variant(f"{SHORT[half]}-autocast", compute=half))
    if b.gpu and "bfloat16" in b.half_dtypes():
        out.append(Variant("bf16-autocast+channels_last", compute="bfloat16", channels_last=True))
    if b.compile:
        out.append(Variant("compile", compiled=True))
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


def _autocast(b: Bench, compute: str):
    if compute == "float32":
        return nullcontext()
    return torch.autocast(b.device.type, dtype=env.DTYPES[compute])


def run_variant(b: Bench, name: str, batch: int, v: Variant, flops: float,
                reference: Optional[torch.Tensor]) -> Tuple[Dict, Optional[torch.Tensor]]:
    """Time one (model, batch, variant); returns its result row and its output (for error comparison)."""
    p = b.profile
    row = {"model": name, "batch": batch, "variant": v.name, "compute": v.compute,
           "channels_last": v.channels_last, "compiled": v.compiled, "cuda_graph": v.cuda_graph,
           "gflop": flops / 1e9,
           "gflop_per_item": flops / batch / 1e9}
    peak = b.peak_rate(v.compute)
    row["peak_gflop_per_s"] = None if peak is None else peak / 1e9
    if peak and flops / peak > p.skip_over_s and not b.full:
        # Running it would blow the time budget (bf16 on a CPU without bf16 units): report the
        # estimate from this run's own matmul rate, clearly labelled, and measure it only with --full.
        row.update(status="skipped", estimated_ms=flops / peak * 1e3,
                   note=f"not run: {fmt(flops / peak)} s per call estimated from the measured {v.compute} matmul "
                        f"rate ({fmt_rate(peak)}); --full measures it")
        return row, None
    model, _ = b.model(name)
    inputs = b.inputs(name, batch)
    if v.channels_last:
        model.to(memory_format=torch.channels_last)
        inputs["x"] = inputs["x"].contiguous(memory_format=torch.channels_last)
    # A CUDA graph is captured on the first (warm-up) call, then replayed: inputs copied in, output cloned
    # out, as the sampling loop gets it with --cuda-graphs.
    runner = torch.compile(model) if v.compiled else GraphedModel(model) if v.cuda_graph else model
    holder = {}

    def call():
        with torch.no_grad(), _autocast(b, v.compute):
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
    if not v.channels_last and not v.compiled and not v.cuda_graph:
        b.warmed.add((name, batch, v.compute, False))
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
                    row = {"model": name, "batch": batch, "variant": v.name, "status": "error", "error": _error(e)}
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
    table.notes += _budget_notes(b, results)
    table.notes += [f"{r['model']} {r['variant']}: {r['error']}" for r in results if r["status"] == "error"]
    return {"status": _status(results), "results": results}, [table]


# ---------------------------------------------------------------------------------------------- 2. sample
@dataclass
class Stage:
    stage: str               # "base" or "upsample"
    sampler: str
    steps: object            # int or a respacing spec such as "fast27"
    guidance: str
    temperature: float = 1.0


class Setting(NamedTuple):
    stages: List[Stage]
    compute: str                 # autocast dtype, or float32
    cuda_graphs: bool = False    # every model call replayed from a CUDA graph (glide.cuda_graphs)


SAMPLE_SETTINGS = ("reference", "fast", "fast-bf16", "fast-graphs", "fast-bf16-graphs")


def sample_settings(b: Bench) -> Dict[str, Setting]:
    """The settings this device runs: bf16 on GPUs only, CUDA-graph replay with --cuda-graphs."""
    a = b.args
    fast = [Stage("base", "dpm++2m", a["fast_base_steps"], "classifier-free"),
            Stage("upsample", a["fast_upsample_sampler"], a["fast_upsample_steps"], "none", 0.997)]
    settings = {
        "reference": Setting([Stage("base", "ddpm", a["ref_base_steps"], "classifier-free"),
                              Stage("upsample", "ddpm", a["ref_upsample_steps"], "none", 0.997)], "float32"),
        "fast": Setting(fast, "float32"),
    }
    bf16 = b.gpu and "bfloat16" in b.half_dtypes()
    if bf16:
        settings["fast-bf16"] = Setting(fast, "bfloat16")
    if b.cuda_graphs:
        settings["fast-graphs"] = Setting(fast, "float32", cuda_graphs=True)
        if bf16:
            settings["fast-bf16-graphs"] = Setting(fast, "bfloat16", cuda_graphs=True)
    chosen = a.get("sample_settings")
    return {name: s for name, s in settings.items() if chosen is None or name in chosen}


def run_stage(b: Bench, s: Stage, compute: str, images: int, low_res: Optional[torch.Tensor],
              stop_after: Optional[int], cuda_graphs: bool = False) -> Dict:
    """One sampling stage through the pipeline's own stage (text encoding, guidance batch and sampler as users
    run them); with stop_after, only that many steps (then extrapolate).

    On a GPU the per-step times come from CUDA events recorded by the step callback, so the loop runs
    as it would in use, with no host-device synchronisation between steps; the stage's time is the
    wall time of the whole loop, synchronised once at its end. The first step's time includes the
    prompt's text encoding, done once per stage.
    """
    pipe = b.pipeline(compute, cuda_graphs)
    settings = GenerationSettings.create(
        ["benchmark"] * images, model=pipe.name, seed=list(range(images)), sampler=s.sampler, steps=s.steps,
        guidance=s.guidance, upsample_sampler=s.sampler, upsample_steps=s.steps,
        upsample_temp=s.temperature if s.stage == "upsample" else None)
    total_steps = samplers.respace(b.model(s.stage)[1], s.steps).num_timesteps
    pairs = 2 if s.guidance == "classifier-free" else 1
    events = b.gpu
    stamps: List = []   # per finished step: a recorded CUDA event (GPU) or a perf_counter time

    def callback(stage, i, n, x0):
        if events:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            stamps.append(ev)
        else:
            env.synchronize(b.device)
            stamps.append(time.perf_counter())

    should_stop = (lambda: len(stamps) >= stop_after) if stop_after else None
    env.synchronize(b.device)
    start_event = None
    if events:
        start_event = torch.cuda.Event(enable_timing=True)
        start_event.record()
    start = time.perf_counter()
    try:
        if s.stage == "upsample":
            out = pipe.upsample_stage(settings, low_res, callback=callback, should_stop=should_stop)
        else:
            out = pipe.base_stage(settings, callback=callback, should_stop=should_stop)
    except Cancelled:
        out = None
    env.synchronize(b.device)
    loop_s = time.perf_counter() - start
    if events:
        marks = [start_event] + stamps
        steps_s = [m0.elapsed_time(m1) / 1e3 for m0, m1 in zip(marks[:-1], marks[1:])]
    else:
        steps_s = [t1 - t0 for t0, t1 in zip([start] + stamps[:-1], stamps)]
    first_s = steps_s[0] if steps_s else loop_s
    step_s = env.median(steps_s[1:] or steps_s) if steps_s else loop_s
    done = len(stamps)
    extrapolated = done < total_steps
    seconds = first_s + step_s * (total_steps - 1) if extrapolated else loop_s
    return {"stage": s.stage, "sampler": s.sampler, "steps": s.steps, "total_steps": total_steps,
            "guidance": s.guidance, "model_batch": images * pairs, "compute": compute, "measured_steps": done,
            "ms_per_step": step_s * 1e3, "first_step_ms": first_s * 1e3, "seconds": seconds,
            "extrapolated": extrapolated, "output": out}


def _sample_once(b: Bench, setting: Setting, images: int, stop_after: Optional[int]) -> List[Dict]:
    """Every stage of one setting once: the base's output feeds the upsampler."""
    lr = models.low_res_size(b.options)
    rows: List[Dict] = []
    for s in setting.stages:
        low_res = None
        if s.stage == "upsample":
            # The base's output, or (when the base was cut short) a random image of its size:
            # the upsampler's cost does not depend on the pixels.
            prev = rows[-1].pop("output", None) if rows else None
            low_res = prev if prev is not None else torch.rand(images, 3, lr, lr, device=b.device) * 2 - 1
        rows.append(run_stage(b, s, setting.compute, images, low_res, stop_after, setting.cuda_graphs))
    for r in rows:
        r.pop("output", None)  # tensors stay out of the JSON
    return rows


def _run_settings(b: Bench, images: int, stop_after: Optional[int], repeats: int, table: Table) -> List[Dict]:
    """Each sampling setting in turn: its rows in `table`, its results returned."""
    results = []
    for setting, chosen in sample_settings(b).items():
        stages, compute = chosen.stages, chosen.compute
        if b.out_of_budget():
            results.append({"setting": setting, "status": "skipped", "budget": True, "compute": compute,
                            "note": b.budget_note()})
            table.add(setting, "skipped (budget)", *[""] * 8)
            continue
        try:
            for s in stages:
                b.warm_up(s.stage, images * (2 if s.guidance == "classifier-free" else 1), compute)
            capture_s = None
            if chosen.cuda_graphs:
                # Graphs are captured on a shape's first call: an untimed one-step run captures both stages',
                # so the timed runs are replays, as every request after a server's first is.
                log(f"sample {setting}: capturing")
                started = time.perf_counter()
                _sample_once(b, chosen, images, stop_after=1)
                capture_s = time.perf_counter() - started
            log(f"sample {setting}")
            runs: List[List[Dict]] = []
            with env.PeakMemory(b.device) as mem:
                for i in range(repeats):
                    if i and b.out_of_budget():
                        break
                    runs.append(_sample_once(b, chosen, images, stop_after))
            totals = [sum(r["seconds"] for r in rows) for rows in runs]
            # The run with the median total (the lower middle one of an even count) is reported whole.
            order = sorted(range(len(runs)), key=lambda i: totals[i])
            pick = order[(len(runs) - 1) // 2]
            rows, total = runs[pick], totals[pick]
            extrapolated = any(r["extrapolated"] for r in rows)
            how = (f"extrapolated from {stop_after} steps per stage" if extrapolated
                   else "measured, full run" if len(runs) == 1 else f"measured, median of {len(runs)} full runs")
            res = {"setting": setting, "status": "ok", "compute": compute, "images": images, "seconds": total,
                   "runs_s": totals, "extrapolated": extrapolated, "how": how, "stages": rows, **mem.as_dict()}
            if capture_s is not None:
                res["capture_s"] = capture_s
                table.notes.append(f"{setting}: CUDA graphs captured first, in an untimed one-step run of both "
                                   f"stages ({fmt(capture_s)} s)")
            for i, r in enumerate(rows):
                table.add(setting if i == 0 else "", r["stage"], r["sampler"], str(r["steps"]), r["model_batch"],
                          r["ms_per_step"], r["seconds"], total if i == 0 else "",
                          res["peak_mem_mb"] if i == 0 else "", how if i == 0 else "")
        except Exception as e:
            log(traceback.format_exc())
            res = {"setting": setting, "status": "error", "compute": compute, "error": _error(e)}
            table.add(setting, "error: " + res["error"], *[""] * 8)
        results.append(res)
    return results


def section_sample(b: Bench):
    images = 1
    full_run = b.full or b.gpu
    stop_after = None if full_run else b.profile.sample_steps
    repeats = b.profile.sample_repeats if full_run else 1
    table = Table(f"Text -> {b.options['upsample']['image_size']}px sample, {images} image (random weights)",
                  ["setting", "stage", "sampler", "steps", "model batch", "ms/step", "stage s", "total s", "peak MB",
                   "how"])
    # The weight layout the pipeline loads GLIDE in (channels-last on CPU), restored afterwards.
    for name in ("base", "upsample"):
        channels_last_on_cpu(b.model(name)[0], b.device)
    try:
        results = _run_settings(b, images, stop_after, repeats, table)
    finally:
        for name in ("base", "upsample"):
            b.model(name)[0].to(memory_format=torch.contiguous_format)
    ok = {r["setting"]: r for r in results if r["status"] == "ok"}
    if "reference" in ok and "fast" in ok:
        speedup = ok["reference"]["seconds"] / ok["fast"]["seconds"]
        table.notes.append(f"fast vs reference: {fmt(speedup)}x less time per image")
    table.notes.append("reference = GLIDE's notebook: base DDPM, classifier-free (model batch 2 per image), "
                       "upsampler DDPM fast27 unguided, temperature 0.997; fast = DPM-Solver++(2M) base + "
                       "upsampler DDIM, the fewest steps measured as good as the reference's on the shapes family "
                       "(README; step counts are flags)")
    if not full_run:
        table.notes.append(f"CPU: each stage's total is text encoding + all steps x the median of {stop_after} "
                           "measured steps (extrapolated); --full runs every step")
    if b.gpu:
        table.notes.append("GPU: ms/step is the median of CUDA-event intervals between steps (no host sync "
                           "inside the loop); stage s is the loop's wall time plus text encoding")
    table.notes.append("peak memory: " + (next((r["mem_method"] for r in results if r.get("mem_method")), "-")) +
                       ", model weights included (both models stay loaded)")
    table.notes += _budget_notes(b, results)
    return {"status": _status(results), "results": results}, [table]


# ---------------------------------------------------------------------------------------------- 3. shapes
_COLD_START = r"""
import json, sys, time
spawn = float(sys.argv[1]); t0 = time.time()
import torch
import glide.pipeline as gp
t1 = time.time()
pipe = gp.load_pipeline("shapes", device="cpu")
pipe.component("base"); pipe.component("upsample")
t2 = time.time()
kwargs = json.loads(sys.argv[2])
result = pipe.generate([sys.argv[3]], **kwargs)
t3 = time.time()
assert result.images
print("BENCH_RESULT " + json.dumps({"interpreter_s": t0 - spawn, "import_s": t1 - t0, "load_s": t2 - t1,
      "generate_s": t3 - t2, "first_image_s": t3 - spawn, "threads": torch.get_num_threads()}))
"""


def section_shapes(b: Bench):
    from glide.model_registry import list_models

    info = next(m for m in list_models() if m["name"] == "shapes")
    if not info["ready"]:
        note = "the embedded shapes weights are not in glide/assets/shapes (run `make train-default`)"
        table = Table("Embedded default model (shapes), CPU", ["measure", "value"], notes=[note])
        return {"status": "skipped", "note": note}, [table]
    # Quick mode: the real family (it is small) with a couple of steps, so the code path is exercised fast.
    gen_kwargs = dict(steps=2, upsample_steps="2") if b.quick else {}
    throughput_batch = 2 if b.quick else 8
    table = Table("Embedded default model (shapes), CPU end to end", ["measure", "value", "detail"])
    out = {"status": "ok", "device": "cpu", "settings": gen_kwargs or "pipeline defaults"}

    if b.out_of_budget():
        table.notes.append(b.budget_note())
        return {"status": "skipped", "note": b.budget_note(), "budget": True}, [table]
    log("shapes: cold start in a fresh process")
    child_env = dict(os.environ)
    # The child imports glide from this checkout even when the project is not pip-installed.
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(env.REPO_ROOT), child_env.get("PYTHONPATH")]))
    child_env["OMP_NUM_THREADS"] = str(torch.get_num_threads())  # the same threads as this process
    left = b.budget_left()
    # Within a budget the child may overrun what is left by a little, not by minutes.
    child_timeout = 600 if left is None else max(30.0, left + 15.0)
    try:
        proc = subprocess.run([sys.executable, "-c", _COLD_START, repr(time.time()), json.dumps(gen_kwargs),
                               SHAPES_PROMPT], capture_output=True, text=True, env=child_env, cwd=env.REPO_ROOT,
                              timeout=child_timeout)
        line = [out for out in proc.stdout.splitlines() if out.startswith("BENCH_RESULT ")]
        if proc.returncode != 0 or not line:
            raise RuntimeError(f"cold-start child failed (rc {proc.returncode}): {proc.stderr.strip()[-500:]}")
        cold = json.loads(line[-1].split(" ", 1)[1])
        out["cold_start"] = {"status": "ok", **cold}
        table.add("cold start to first image", f"{fmt(cold['first_image_s'])} s",
                  f"interpreter {fmt(cold['interpreter_s'])} s + import {fmt(cold['import_s'])} s + load "
                  f"{fmt(cold['load_s'])} s + generate {fmt(cold['generate_s'])} s ({cold['threads']} threads)")
    except Exception as e:
        out["cold_start"] = {"status": "error", "error": _error(e)}
        table.add("cold start to first image", "error", out["cold_start"]["error"])

    try:
        if b.out_of_budget():
            raise _BudgetSpent()
        log(f"shapes: warm generate, batch 1 then {throughput_batch}")
        from glide.pipeline import load_pipeline

        pipe = load_pipeline("shapes", device="cpu")
        one = pipe.generate([SHAPES_PROMPT], seed=0, **gen_kwargs)   # also the warm-up
        many = pipe.generate(SHAPES_PROMPT, batch_size=throughput_batch, seed=0, **gen_kwargs)
        s = many.settings[0]
        out["warm_batch1_s"] = one.seconds
        out["throughput"] = {"status": "ok", "batch": throughput_batch, "seconds": many.seconds,
                             "images_per_s": throughput_batch / many.seconds,
                             "settings": {k: s[k] for k in ("sampler", "steps", "guidance", "upsample",
                                                            "upsample_steps", "upsample_sampler")}}
        table.add("warm, 1 image", f"{fmt(one.seconds)} s", "")
        table.add(f"throughput, batch {throughput_batch}", f"{fmt(throughput_batch / many.seconds)} images/s",
                  f"{fmt(many.seconds)} s; {s['sampler']} {s['steps']} steps {s['guidance']}, upsampler "
                  f"{s['upsample_sampler']} {s['upsample_steps']}")
    except _BudgetSpent:
        out["throughput"] = {"status": "skipped", "budget": True, "note": b.budget_note()}
        table.add(f"throughput, batch {throughput_batch}", "skipped", b.budget_note())
    except Exception as e:
        log(traceback.format_exc())
        out["throughput"] = {"status": "error", "error": _error(e)}
        table.add(f"throughput, batch {throughput_batch}", "error", out["throughput"]["error"])
    if b.quick:
        table.notes.append("quick mode: 2 base + 2 upsampler steps, not the defaults")
    out["status"] = _status([out["cold_start"], out["throughput"]])
    return out, [table]


# ---------------------------------------------------------------------------------------------- 4. batch
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
                    with torch.no_grad(), _autocast(b, compute):
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
                row = {"model": name, "compute": compute, "batch": batch, "status": "error", "error": _error(e)}
                table.add(name, compute, batch, "error", "-", "-", "-")
            results.append(row)
        if b.gpu:
            torch.cuda.empty_cache()
    table.notes.append("items = batch elements; a classifier-free base image costs 2 items per step")
    table.notes += _budget_notes(b, results)
    if not b.gpu:
        table.notes.append("CPU: batch 1 and 4 only" + ("" if b.quick else " of the base model") +
                           ", one timed call each; the GPU run covers 1/4/16 for both models")
    return {"status": _status(results), "results": results}, [table]


RUNNERS: Dict[str, Callable] = {"matmul": section_matmul, "forward": section_forward, "sample": section_sample,
                                "shapes": section_shapes, "batch": section_batch}
