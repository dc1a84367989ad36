"""`python -m bench`: run the sections, print their tables, write JSON and markdown to bench/results/."""
import argparse
import datetime
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from glide.fileio import write_text_atomic

from . import env
from .report import Table
from .sections import RUNNERS, SAMPLE_SETTINGS, SECTIONS, Bench, log

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# 2: shapes runs per dtype, recipe section, forward weights; 3: deepcache, loading, guidance, recipes (the fast preset)
SCHEMA_VERSION = 3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny models and few repeats: seconds, for tests")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections to run, from: {', '.join(SECTIONS)}")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ...; unset: cuda when available, else cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch; unset: torch's choice, one per core")
    p.add_argument("--compile", action="store_true",
                   help="add torch.compile variants to the forward section (on CPU compiling takes minutes)")
    p.add_argument("--full", action="store_true",
                   help="CPU: run every sampling step instead of extrapolating, and run variants estimated too slow")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON and markdown results")
    p.add_argument("--budget-s", type=float, default=None, metavar="SECONDS",
                   help="wall-clock budget: sections, variants, settings and batches that would start after it "
                        "is spent are recorded as skipped (the one running finishes); results are always written")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="GPU: add CUDA-graph variants to the forward section (one forward captured, then replayed)")
    g = p.add_argument_group("sampling settings (section 'sample')")
    g.add_argument("--ref-base-steps", default="100", help="reference: base DDPM steps")
    g.add_argument("--ref-upsample-steps", default="fast27", help="reference: upsampler DDPM steps")
    # The fast defaults are the fewest steps measured as good as the reference's settings on the shapes
    # family (glide/assets/shapes/EVAL.json, EVAL_SAMPLERS.json; docs/performance.md).
    g.add_argument("--fast-base-steps", default="10", help="fast: base DPM-Solver++(2M) steps")
    g.add_argument("--fast-upsample-sampler", default="ddim", help="fast: upsampler step rule")
    g.add_argument("--fast-upsample-steps", default="8", help="fast: upsampler steps (or a schedule like fast27)")
    g.add_argument("--sample-settings", default=None,
                   help=f"comma-separated settings to sample with, from: {', '.join(SAMPLE_SETTINGS)} "
                        "(fast-bf16 on GPUs only); unset: all")
    r = p.add_argument_group("end to end (section 'recipe')")
    r.add_argument("--recipe-dtypes", default=None,
                   help="comma-separated dtypes to run the recipes in (float32, auto, bfloat16, int8: its first use "
                        "timed apart, then with a warm cache); unset: float32 and auto")
    args = p.parse_args(argv)
    if args.budget_s is not None and not (args.budget_s >= 0 and math.isfinite(args.budget_s)):
        p.error(f"--budget-s must be a non-negative number of seconds, got {args.budget_s}")
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(SECTIONS))
    if unknown:
        p.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    if args.sample_settings is not None:
        args.sample_settings = [s.strip() for s in args.sample_settings.split(",") if s.strip()]
        unknown = sorted(set(args.sample_settings) - set(SAMPLE_SETTINGS))
        if unknown or not args.sample_settings:
            p.error(f"--sample-settings: unknown or none {unknown}; choose from {', '.join(SAMPLE_SETTINGS)}")
    for name in ("ref_base_steps", "ref_upsample_steps", "fast_base_steps", "fast_upsample_steps"):
        value = getattr(args, name)
        setattr(args, name, int(value) if value.isdigit() else value)  # "fast27" stays a respacing spec
    return args


def result_stem(info: Dict, now: datetime.datetime, args: argparse.Namespace) -> str:
    """The results' file name: device and date, then what sets the run apart, so that a partial or
    special run never overwrites the day's full one (e.g. cpu-...-2026-11-27-sample-full)."""
    stem = f"{env.device_slug(info)}-{now.strftime('%Y-%m-%d')}" + ("-quick" if args.quick else "")
    if set(args.only) != set(SECTIONS):
        stem += "-" + "-".join(s for s in SECTIONS if s in args.only)
    return stem + ("-full" if args.full else "")


def _clean(obj):
    """JSON-safe: NaN/inf become null (strict JSON has no NaN), tuples lists, tensors dropped."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items() if not isinstance(v, torch.Tensor)}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def header_table(meta: Dict) -> Table:
    d = meta["device"]
    t = Table("Run", ["", "value"])
    t.add("device", d["name"])
    if d["type"] == "cpu":
        t.add("cpu", f"{d['cpu_model']}; {d['torch_threads']} torch threads of {d['cpus_usable']} usable cores; "
                     f"flags: {', '.join(d['cpu_flags']) or 'none'}")
    else:
        t.add("gpu", f"{d['name']}, {d['gpu_memory_gb']} GB, sm {d['capability']}, CUDA {d['cuda']}, "
                     f"TF32 matmul {d['tf32_matmul']} / cuDNN {d['tf32_cudnn']}")
    t.add("torch", d["torch"])
    t.add("mode", ("quick (tiny models)" if meta["quick"] else "full-size models, random weights")
          + (", --full" if meta["full"] else "") + (", --compile" if meta["compile"] else "")
          + (", --cuda-graphs" if meta.get("cuda_graphs") else "")
          + (f", --budget-s {meta['budget_s']:g}" if meta.get("budget_s") is not None else ""))
    t.add("commit", meta.get("git_commit") or "-")
    t.add("date", meta["date"])
    if d.get("loadavg_1m") is not None and d["type"] == "cpu" and d["loadavg_1m"] > 0.5 * d["cpus_usable"]:
        t.notes.append(f"the machine was busy at the start (1-min load {d['loadavg_1m']} on "
                       f"{d['cpus_usable']} cores): CPU numbers are pessimistic")
    return t


class Interrupted(BaseException):
    """SIGTERM (e.g. from `timeout`): stop where we are, but still write what was measured."""


def _on_sigterm(signum, frame):
    raise Interrupted(f"signal {signum}")


def write_results(out_dir: Path, stem: str, meta: Dict, results: Dict, tables: List[Table]):
    """JSON and markdown, each written to a temporary file and renamed: never a half-written file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    texts = {json_path: json.dumps(_clean({"meta": meta, "sections": results}), indent=2) + "\n",
             md_path: f"# GLIDE benchmark: {meta['device']['name']}, {meta['date']}\n\n"
                      + "\n".join(t.markdown() for t in tables)
                      + f"\nTotal: {meta['elapsed_s']} s. Raw numbers: `{json_path.name}`.\n"}
    for path, text in texts.items():
        write_text_atomic(path, text)
    return json_path, md_path


def main(argv=None, clock_start: Optional[float] = None) -> int:
    """Run the benchmark; `clock_start` is the time.monotonic() --budget-s counts from (default: now)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = env.resolve_device(args.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)   # streams and CUDA events (sample section) follow the current device
    torch.manual_seed(0)
    started = time.time()
    now = datetime.datetime.now().astimezone()
    info = env.device_info(device)
    meta = {"schema": SCHEMA_VERSION, "date": now.isoformat(timespec="seconds"), "device": info,
            "git_commit": env.git_commit(), "quick": args.quick, "full": args.full, "compile": args.compile,
            "cuda_graphs": args.cuda_graphs, "budget_s": args.budget_s,
            "sections_run": args.only, "argv": sys.argv[1:] if argv is None else list(argv),
            "settings": {k: getattr(args, k) for k in ("ref_base_steps", "ref_upsample_steps", "fast_base_steps",
                                                       "fast_upsample_sampler", "fast_upsample_steps",
                                                       "sample_settings", "recipe_dtypes")}}
    bench = Bench(device, quick=args.quick, full=args.full, compile=args.compile, args=meta["settings"],
                  budget_s=args.budget_s, cuda_graphs=args.cuda_graphs, started=clock_start)
    tables: List[Table] = [header_table(meta)]
    print(tables[0].text() + "\n", flush=True)
    stem = result_stem(info, now, args)

    results: Dict[str, Dict] = {}
    # The matmul rate is every MFU's denominator: measure it first whenever a section reports MFU.
    order = [s for s in SECTIONS if s in args.only or (s == "matmul" and {"forward", "batch"} & set(args.only))]
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (main() called from a test thread): no handler
        previous = None
    interrupted = None
    try:
        for name in order:
            t0 = time.time()
            if bench.out_of_budget():
                data = {"status": "skipped", "budget": True, "note": bench.budget_note()}
                section_tables = [Table(name, ["skipped"], rows=[[data["note"]]])]
            else:
                log(f"section {name}")
                try:
                    data, section_tables = RUNNERS[name](bench)
                except Exception as e:  # a broken section is reported; the others still run
                    import traceback
                    log(traceback.format_exc())
                    data = {"status": "error", "error": f"{type(e).__name__}: {e}"}
                    section_tables = [Table(name, ["error"], rows=[[data["error"]]])]
                except (KeyboardInterrupt, Interrupted) as e:
                    interrupted = e
                    data = {"status": "error", "error": f"interrupted ({type(e).__name__} {e})".strip()}
                    section_tables = [Table(name, ["error"], rows=[[data["error"]]])]
            data["elapsed_s"] = round(time.time() - t0, 2)
            results[name] = data
            for t in section_tables:
                t.notes.append(f"section took {data['elapsed_s']} s")
                tables.append(t)
                print(t.text() + "\n", flush=True)
            meta["elapsed_s"] = round(time.time() - started, 2)
            # After every section, so a run killed later still leaves everything measured so far.
            write_results(args.out, stem, meta, results, tables)
            if interrupted is not None:
                break
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    for name in order:
        if name not in results:
            results[name] = {"status": "skipped", "note": "not run: the benchmark was interrupted", "elapsed_s": 0}
    meta["elapsed_s"] = round(time.time() - started, 2)
    json_path, md_path = write_results(args.out, stem, meta, results, tables)
    print(f"total {meta['elapsed_s']} s; wrote {json_path} and {md_path}", flush=True)
    if interrupted is not None:
        log(f"interrupted: {interrupted!r}; results so far written")
        return 130
    # Non-zero when anything failed, so CI notices; skipped parts (no shapes weights) are not failures.
    return 0 if all(r.get("status") in ("ok", "skipped") for r in results.values()) else 1
