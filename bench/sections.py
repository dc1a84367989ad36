"""The benchmark's sections. Each returns (JSON-ready dict, tables) and never raises for one bad case.

matmul   the device's dense matmul rate per dtype: the denominator of every MFU figure
forward  one forward of the full-size base model and upsampler per precision/layout variant
sample   text -> 256x256 sample: the reference's settings against our fastest of equal quality
batch    throughput vs batch size
shapes   the embedded default family end to end: cold start to first image, images/s at batch 8
recipe   the fast recipe at 256 px from checkpoint files in a fresh process, loading included
Sections that compare precisions run float32 and what dtype="auto" picks on this machine.

With a wall-clock budget (`--budget-s`), a section, variant, setting or batch that would start after
the budget is spent is not run: it is recorded as `skipped` with a note saying so.
"""
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch

import samplers
from glide.cuda_graphs import GraphedModel
from glide.families import FAMILIES, channels_last_on_cpu
from glide.pipeline import Pipeline
from glide.precision import DTYPES, choose_precision
from glide.settings import GenerationSettings
from samplers import Cancelled

from . import env, models
from .report import Table, fmt, fmt_err, fmt_pct, fmt_rate

# Run order: what a GPU run must show first (MFU's denominator, forward MFU, sampling time, batch
# scaling), then the embedded model's CPU figures, so a budget cut loses the least important part.
SECTIONS = ("matmul", "forward", "sample", "batch", "shapes", "recipe")
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
        self.reference_s: Optional[float] = None   # the notebook's settings, one image (the sample section)
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

    def pipeline(self, dtype: str, cuda_graphs: bool = False) -> Pipeline:
        """A pipeline over this run's models (the GLIDE (filtered) family's shape, random weights) in `dtype`
        ("auto" included): the sample section runs the pipeline's own stages, as users do."""
        precision = choose_precision(dtype, self.device)
        key = (precision.dtype, cuda_graphs)
        if key not in self._pipelines:
            def load(component, _device, _checkpoint_dir):
                model, diffusion = self.model(component)
                # A half-precision pipeline converts its weights: give it a copy, keep the float32 original.
                return (model if precision.dtype == "float32" else copy.deepcopy(model)), diffusion

            family = replace(
                FAMILIES["glide-filtered"], base_size=self.options["base"]["image_size"],
                upsample_size=self.options["upsample"]["image_size"], text_ctx=self.options["base"]["text_ctx"],
                load=load)
            self._pipelines[key] = Pipeline(family, self.device, dtype=precision, cuda_graphs=cuda_graphs)
        return self._pipelines[key]

    def graphed(self, name: str) -> GraphedModel:
        """The model of 'base' or 'upsample' with CUDA-graph replay; its graphs last for the whole run."""
        if name not in self._graphed:
            self._graphed[name] = GraphedModel(self.model(name)[0])
        return self._graphed[name]

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
            r = env.matmul_rate(b.device, DTYPES["float32" if tf32 else name], target_s=p.matmul_target_s,
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


def _autocast(b: Bench, compute: str):
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
    dtype: str                   # the pipeline's dtype: float32, bfloat16, float16 or "auto"
    cuda_graphs: bool = False    # every model call replayed from a CUDA graph (glide.cuda_graphs)


SAMPLE_SETTINGS = ("reference", "fast", "fast-auto", "fast-bf16", "fast-fp16", "fast-graphs", "fast-bf16-graphs",
                   "fast-fp16-graphs")
GPU_THROUGHPUT_IMAGES = 16   # images per run of the GPU's throughput row


def sample_settings(b: Bench) -> Dict[str, Setting]:
    """The settings this device runs: the fast recipe in float32 and in the precision "auto" picks here;
    on GPUs also in each half precision the card has, and with --cuda-graphs replayed from CUDA graphs."""
    a = b.args
    fast = [Stage("base", "dpm++2m", a["fast_base_steps"], "classifier-free"),
            Stage("upsample", a["fast_upsample_sampler"], a["fast_upsample_steps"], "none", 0.997)]
    settings = {
        "reference": Setting([Stage("base", "ddpm", a["ref_base_steps"], "classifier-free"),
                              Stage("upsample", "ddpm", a["ref_upsample_steps"], "none", 0.997)], "float32"),
        "fast": Setting(fast, "float32"),
        "fast-auto": Setting(fast, "auto"),
    }
    halves = b.half_dtypes() if b.gpu else []
    for half in halves:
        settings[f"fast-{SHORT[half]}"] = Setting(fast, half)
    if b.cuda_graphs:
        settings["fast-graphs"] = Setting(fast, "float32", cuda_graphs=True)
        for half in halves:
            settings[f"fast-{SHORT[half]}-graphs"] = Setting(fast, half, cuda_graphs=True)
    chosen = a.get("sample_settings")
    return {name: s for name, s in settings.items() if chosen is None or name in chosen}


def run_stage(b: Bench, s: Stage, dtype: str, images: int, low_res: Optional[torch.Tensor],
              stop_after: Optional[int], cuda_graphs: bool = False) -> Dict:
    """One sampling stage through the pipeline's own stage (text encoding, guidance batch and sampler as users
    run them); with stop_after, only that many steps (then extrapolate).

    On a GPU the per-step times come from CUDA events recorded by the step callback, so the loop runs
    as it would in use, with no host-device synchronisation between steps; the stage's time is the
    wall time of the whole loop, synchronised once at its end. The first step's time includes the
    prompt's text encoding, done once per stage.
    """
    pipe = b.pipeline(dtype, cuda_graphs)
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
            "guidance": s.guidance, "model_batch": images * pairs, "compute": pipe.dtype, "measured_steps": done,
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
        rows.append(run_stage(b, s, setting.dtype, images, low_res, stop_after, setting.cuda_graphs))
    for r in rows:
        r.pop("output", None)  # tensors stay out of the JSON
    return rows


def _run_settings(b: Bench, images: int, stop_after: Optional[int], repeats: int, table: Table,
                  settings: Optional[Dict[str, Setting]] = None) -> List[Dict]:
    """Each sampling setting (default: `sample_settings`) in turn: its rows in `table`, its results returned."""
    results = []
    for setting, chosen in (settings or sample_settings(b)).items():
        compute = b.pipeline(chosen.dtype, chosen.cuda_graphs).dtype   # "auto" resolved
        if b.out_of_budget():
            results.append({"setting": setting, "status": "skipped", "budget": True, "compute": compute,
                            "note": b.budget_note()})
            table.add(setting, "skipped (budget)", *[""] * 8)
            continue
        try:
            # An untimed one-step run of both stages first: a first call pays for memory allocation and
            # oneDNN/cuDNN set-up, and captures the CUDA graphs (then the timed runs are replays, as every
            # request after a server's first is).
            log(f"sample {setting}: warm-up" + (" and graph capture" if chosen.cuda_graphs else ""))
            started = time.perf_counter()
            _sample_once(b, chosen, images, stop_after=1)
            capture_s = time.perf_counter() - started if chosen.cuda_graphs else None
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
        if b.gpu:
            # Throughput: the fastest batch-1 setting again with a full batch of images.
            fastest = min((r for r in results if r["status"] == "ok" and r["setting"] != "reference"),
                          key=lambda r: r["seconds"], default=None)
            if fastest:
                many = _run_settings(b, GPU_THROUGHPUT_IMAGES, None, 1, table,
                                     {fastest["setting"]: sample_settings(b)[fastest["setting"]]})
                for r in many:
                    r["setting"] += f" x{GPU_THROUGHPUT_IMAGES}"
                    if r["status"] == "ok":
                        r["images_per_s"] = GPU_THROUGHPUT_IMAGES / r["seconds"]
                        table.notes.append(f"{r['setting']}: {fmt(r['images_per_s'])} images/s")
                results += many
    finally:
        for name in ("base", "upsample"):
            b.model(name)[0].to(memory_format=torch.contiguous_format)
    ok = {r["setting"]: r for r in results if r["status"] == "ok"}
    if "reference" in ok:
        b.reference_s = ok["reference"]["seconds"]
    if "reference" in ok and "fast" in ok:
        speedup = ok["reference"]["seconds"] / ok["fast"]["seconds"]
        table.notes.append(f"fast vs reference: {fmt(speedup)}x less time per image")
    if "reference" in ok and "fast-auto" in ok:
        ratio = ok["fast-auto"]["seconds"] / ok["reference"]["seconds"]
        table.notes.append(f"fast-auto ({ok['fast-auto']['compute']}, the automatic choice here) takes "
                           f"{fmt(ratio)} of the reference's time")
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
pipe = gp.load_pipeline("shapes", device="cpu", dtype=sys.argv[2])
pipe.component("base"); pipe.component("upsample")
t2 = time.time()
kwargs = json.loads(sys.argv[3])
result = pipe.generate([sys.argv[4]], **kwargs)
t3 = time.time()
assert result.images
print("BENCH_RESULT " + json.dumps({"interpreter_s": t0 - spawn, "import_s": t1 - t0, "load_s": t2 - t1,
      "generate_s": t3 - t2, "first_image_s": t3 - spawn, "threads": torch.get_num_threads(), "dtype": pipe.dtype,
      "precision": pipe.precision.describe()}))
"""


def _run_child(b: Bench, what: str, script: str, *argv: str, extra_env: Optional[Dict] = None) -> Dict:
    """`script` in a fresh Python process (this checkout's glide, this process's threads): its BENCH_RESULT."""
    child_env = dict(os.environ, **(extra_env or {}))
    # The child imports glide from this checkout even when the project is not pip-installed.
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(env.REPO_ROOT), child_env.get("PYTHONPATH")]))
    child_env["OMP_NUM_THREADS"] = str(torch.get_num_threads())  # the same threads as this process
    left = b.budget_left()
    # Within a budget the child may overrun what is left by a little, not by minutes.
    child_timeout = 1800 if left is None else max(30.0, left + 15.0)
    proc = subprocess.run([sys.executable, "-c", script, repr(time.time()), *argv], capture_output=True, text=True,
                          env=child_env, cwd=env.REPO_ROOT, timeout=child_timeout)
    line = [out for out in proc.stdout.splitlines() if out.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"{what} child failed (rc {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return {"status": "ok", **json.loads(line[-1].split(" ", 1)[1])}


def _dtypes_to_compare(device: torch.device) -> List[str]:
    """float32 and the automatic choice, or only float32 where "auto" is float32 on this machine."""
    return ["float32"] + (["auto"] if choose_precision("auto", device).dtype != "float32" else [])


def section_shapes(b: Bench):
    from glide.families import list_models
    from glide.pipeline import load_pipeline

    info = next(m for m in list_models() if m["name"] == "shapes")
    if not info["ready"]:
        note = "the embedded shapes weights are not in glide/assets/shapes (run `make train-default`)"
        table = Table("Embedded default model (shapes), CPU", ["measure", "value"], notes=[note])
        return {"status": "skipped", "note": note}, [table]
    # Quick mode: the real family (it is small) with a couple of steps, so the code path is exercised fast.
    gen_kwargs = dict(steps=2, upsample_steps="2") if b.quick else {}
    throughput_batch = 2 if b.quick else 8
    table = Table("Embedded default model (shapes), CPU end to end", ["measure", "dtype", "value", "detail"])
    cpu = torch.device("cpu")
    out = {"status": "ok", "device": "cpu", "settings": gen_kwargs or "pipeline defaults",
           "auto": asdict(choose_precision("auto", cpu)), "runs": []}
    for dtype in _dtypes_to_compare(cpu):
        run: Dict = {"dtype_asked": dtype}
        out["runs"].append(run)
        if b.out_of_budget():
            run.update(status="skipped", budget=True, note=b.budget_note())
            table.add("cold start and throughput", dtype, "skipped", b.budget_note())
            continue
        log(f"shapes: cold start in a fresh process, dtype {dtype}")
        try:
            cold = _run_child(b, "cold-start", _COLD_START, dtype, json.dumps(gen_kwargs), SHAPES_PROMPT)
            run["cold_start"] = cold
            table.add("cold start to first image", cold["dtype"], f"{fmt(cold['first_image_s'])} s",
                      f"interpreter {fmt(cold['interpreter_s'])} s + import {fmt(cold['import_s'])} s + load "
                      f"{fmt(cold['load_s'])} s + generate {fmt(cold['generate_s'])} s ({cold['threads']} threads)")
        except Exception as e:
            run["cold_start"] = {"status": "error", "error": _error(e)}
            table.add("cold start to first image", dtype, "error", run["cold_start"]["error"])
        try:
            if b.out_of_budget():
                raise _BudgetSpent()
            log(f"shapes: warm generate, batch 1 then {throughput_batch}, dtype {dtype}")
            pipe = load_pipeline("shapes", device="cpu", dtype=dtype)
            one = pipe.generate([SHAPES_PROMPT], seed=0, **gen_kwargs)   # also the warm-up
            many = pipe.generate(SHAPES_PROMPT, batch_size=throughput_batch, seed=0, **gen_kwargs)
            s = many.settings[0]
            run["warm_batch1_s"] = one.seconds
            run["throughput"] = {"status": "ok", "dtype": pipe.dtype, "batch": throughput_batch,
                                 "seconds": many.seconds, "images_per_s": throughput_batch / many.seconds,
                                 "settings": {k: s[k] for k in ("sampler", "steps", "guidance", "upsample",
                                                                "upsample_steps", "upsample_sampler")}}
            table.add("warm, 1 image", pipe.dtype, f"{fmt(one.seconds)} s", "")
            table.add(f"throughput, batch {throughput_batch}", pipe.dtype,
                      f"{fmt(throughput_batch / many.seconds)} images/s",
                      f"{fmt(many.seconds)} s; {s['sampler']} {s['steps']} steps {s['guidance']}, upsampler "
                      f"{s['upsample_sampler']} {s['upsample_steps']}")
        except _BudgetSpent:
            run["throughput"] = {"status": "skipped", "budget": True, "note": b.budget_note()}
            table.add(f"throughput, batch {throughput_batch}", dtype, "skipped", b.budget_note())
        except Exception as e:
            log(traceback.format_exc())
            run["throughput"] = {"status": "error", "error": _error(e)}
            table.add(f"throughput, batch {throughput_batch}", dtype, "error", run["throughput"]["error"])
        run["status"] = _status([run["cold_start"], run["throughput"]])
    table.notes.append(f"dtype \"auto\" on this machine: {choose_precision('auto', cpu).describe()}")
    if b.quick:
        table.notes.append("quick mode: 2 base + 2 upsampler steps, not the defaults")
    out["status"] = _status(out["runs"])
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


# ---------------------------------------------------------------------------------------------- 5. recipe
_RECIPE = r"""
import json, sys, time
spawn = float(sys.argv[1]); t0 = time.time()
import torch
import glide.pipeline as gp
pipe = gp.load_pipeline("glide-filtered", device=sys.argv[2], dtype=sys.argv[3], checkpoint_dir=sys.argv[4])
pipe.component("base"); pipe.component("upsample")
t1 = time.time()
result = pipe.generate([sys.argv[6]], seed=0, **json.loads(sys.argv[5]))
t2 = time.time()
assert result.images[0].size == (256, 256)
print("BENCH_RESULT " + json.dumps({"interpreter_s": t0 - spawn, "load_s": t1 - t0, "generate_s": t2 - t1,
      "seconds": t2 - spawn, "threads": torch.get_num_threads(), "dtype": pipe.dtype,
      "precision": pipe.precision.describe()}))
"""
RECIPE_PROMPT = "an oil painting of a corgi"
GLIDE_TOKENIZER_FILES = ("encoder.json.gz", "vocab.bpe.gz")


def _tokenizer_files() -> Optional[Path]:
    """A folder holding GLIDE's tokenizer files (the user's cache, else the reference data), or None."""
    from glide.download import default_cache_dir

    reference = Path(os.environ.get("GLIDE_REFERENCE_DIR", env.REPO_ROOT.parent / "shared" / "reference"))
    for folder in (default_cache_dir(), reference / "vocab"):
        if all((folder / name).is_file() for name in GLIDE_TOKENIZER_FILES):
            return folder
    return None


def section_recipe(b: Bench):
    """The README's fast recipe at full size, end to end in a fresh process, from checkpoint files in the
    official format (random weights): interpreter, import, loading and both stages, as a user runs it."""
    from glide.download import CHECKPOINT_FILENAMES

    a = b.args
    recipe = dict(sampler="dpm++2m", steps=a["fast_base_steps"], upsample_sampler=a["fast_upsample_sampler"],
                  upsample_steps=str(a["fast_upsample_steps"]))
    table = Table("The fast recipe at 256 px, end to end from checkpoint files (random weights, fresh process)",
                  ["dtype", "total s", "load s", "generate s", "detail"])
    vocab = _tokenizer_files()
    if b.quick or vocab is None:
        note = ("quick mode: full-size models only" if b.quick else
                "needs GLIDE's tokenizer files (encoder.json.gz, vocab.bpe.gz) in the cache; they come with the model "
                "download, or set GLIDE_REFERENCE_DIR")
        table.notes.append(note)
        return {"status": "skipped", "note": note}, [table]
    results = []
    with tempfile.TemporaryDirectory(prefix="glide-bench-") as folder:
        folder = Path(folder)
        log("recipe: writing official-format checkpoints with random weights")
        for name in ("base", "upsample"):
            torch.save(b.model(name)[0].state_dict(), folder / CHECKPOINT_FILENAMES[name])
        for name in GLIDE_TOKENIZER_FILES:
            shutil.copy(vocab / name, folder / name)
        for dtype in _dtypes_to_compare(b.device):
            if b.out_of_budget():
                results.append({"dtype_asked": dtype, "status": "skipped", "budget": True, "note": b.budget_note()})
                table.add(dtype, "skipped (budget)", "", "", "")
                continue
            log(f"recipe: dtype {dtype}")
            try:
                row = _run_child(b, "recipe", _RECIPE, str(b.device), dtype, str(folder), json.dumps(recipe),
                                 RECIPE_PROMPT, extra_env={"GLIDE_CACHE_DIR": str(folder)})
                row["dtype_asked"] = dtype
                if b.reference_s:
                    row["of_reference"] = row["seconds"] / b.reference_s
                table.add(row["dtype"], row["seconds"], row["load_s"], row["generate_s"],
                          row["precision"] + (f"; {fmt(row['of_reference'])} of the notebook's settings"
                                              if b.reference_s else ""))
            except Exception as e:
                row = {"dtype_asked": dtype, "status": "error", "error": _error(e)}
                table.add(dtype, "error", "", "", row["error"])
            results.append(row)
    table.notes.append(f"recipe: base DPM-Solver++(2M) {recipe['steps']} steps classifier-free, upsampler "
                       f"{recipe['upsample_sampler']} {recipe['upsample_steps']}; one image; total = from the "
                       "interpreter's start to the PNG-ready image")
    if b.reference_s:
        table.notes.append(f"the notebook's settings (sample section, float32, loading excluded): "
                           f"{fmt(b.reference_s)} s per image")
    return {"status": _status(results), "recipe": recipe, "results": results}, [table]


RUNNERS: Dict[str, Callable] = {"matmul": section_matmul, "forward": section_forward, "sample": section_sample,
                                "shapes": section_shapes, "batch": section_batch, "recipe": section_recipe}
