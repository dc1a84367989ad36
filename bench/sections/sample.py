"""2. sample: text -> 256x256 sample: the reference's settings against our fastest of equal quality."""
import time
import traceback
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional

import torch

import samplers
from glide.families import channels_last_on_cpu
from glide.settings import GenerationSettings
from samplers import Cancelled

from .. import env, models
from ..report import Table, fmt
from .common import Bench, budget_notes, error_text, log, section_status
from .forward import SHORT


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
            res = {"setting": setting, "status": "error", "compute": compute, "error": error_text(e)}
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
                       "(docs/performance.md; step counts are flags)")
    if not full_run:
        table.notes.append(f"CPU: each stage's total is text encoding + all steps x the median of {stop_after} "
                           "measured steps (extrapolated); --full runs every step")
    if b.gpu:
        table.notes.append("GPU: ms/step is the median of CUDA-event intervals between steps (no host sync "
                           "inside the loop); stage s is the loop's wall time plus text encoding")
    table.notes.append("peak memory: " + (next((r["mem_method"] for r in results if r.get("mem_method")), "-")) +
                       ", model weights included (both models stay loaded)")
    table.notes += budget_notes(b, results)
    return {"status": section_status(results), "results": results}, [table]
