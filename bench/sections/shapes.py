"""3. shapes: the embedded default family end to end: cold start to first image, images/s at batch 8."""
import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

import torch

from glide.precision import choose_precision

from .. import env
from ..report import Table, fmt
from .common import CHILDREN, SHAPES_PROMPT, Bench, BudgetSpent, error_text, log, section_status


def run_child(b: Bench, what: str, script: Path, *argv: str, extra_env: Optional[Dict] = None) -> Dict:
    """`script` in a fresh Python process (this checkout's glide, this process's threads): its BENCH_RESULT."""
    child_env = dict(os.environ, **(extra_env or {}))
    # The child imports glide from this checkout even when the project is not pip-installed.
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(env.REPO_ROOT), child_env.get("PYTHONPATH")]))
    child_env["OMP_NUM_THREADS"] = str(torch.get_num_threads())  # the same threads as this process
    left = b.budget_left()
    # Within a budget the child may overrun what is left by a little, not by minutes.
    child_timeout = 1800 if left is None else max(30.0, left + 15.0)
    proc = subprocess.run([sys.executable, str(script), repr(time.time()), *argv], capture_output=True, text=True,
                          env=child_env, cwd=env.REPO_ROOT, timeout=child_timeout)
    line = [out for out in proc.stdout.splitlines() if out.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"{what} child failed (rc {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return {"status": "ok", **json.loads(line[-1].split(" ", 1)[1])}


def dtypes_to_compare(device: torch.device) -> List[str]:
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
    for dtype in dtypes_to_compare(cpu):
        run: Dict = {"dtype_asked": dtype}
        out["runs"].append(run)
        if b.out_of_budget():
            run.update(status="skipped", budget=True, note=b.budget_note())
            table.add("cold start and throughput", dtype, "skipped", b.budget_note())
            continue
        log(f"shapes: cold start in a fresh process, dtype {dtype}")
        try:
            cold = run_child(b, "cold-start", CHILDREN / "cold_start.py", dtype, json.dumps(gen_kwargs), SHAPES_PROMPT)
            run["cold_start"] = cold
            table.add("cold start to first image", cold["dtype"], f"{fmt(cold['first_image_s'])} s",
                      f"interpreter {fmt(cold['interpreter_s'])} s + import {fmt(cold['import_s'])} s + load "
                      f"{fmt(cold['load_s'])} s + generate {fmt(cold['generate_s'])} s ({cold['threads']} threads)")
        except Exception as e:
            run["cold_start"] = {"status": "error", "error": error_text(e)}
            table.add("cold start to first image", dtype, "error", run["cold_start"]["error"])
        try:
            if b.out_of_budget():
                raise BudgetSpent()
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
        except BudgetSpent:
            run["throughput"] = {"status": "skipped", "budget": True, "note": b.budget_note()}
            table.add(f"throughput, batch {throughput_batch}", dtype, "skipped", b.budget_note())
        except Exception as e:
            log(traceback.format_exc())
            run["throughput"] = {"status": "error", "error": error_text(e)}
            table.add(f"throughput, batch {throughput_batch}", dtype, "error", run["throughput"]["error"])
        run["status"] = section_status([run["cold_start"], run["throughput"]])
    table.notes.append(f"dtype \"auto\" on this machine: {choose_precision('auto', cpu).describe()}")
    if b.quick:
        table.notes.append("quick mode: 2 base + 2 upsampler steps, not the defaults")
    out["status"] = section_status(out["runs"])
    return out, [table]
