"""0. matmul: the device's dense matmul rate per dtype: the denominator of every MFU figure."""

import torch

from glide.precision import DTYPES

from .. import env
from ..report import Table, fmt, fmt_rate
from .common import Bench, error_text, log, section_status


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
            r = {"dtype": name, "status": "error", "error": error_text(e)}
            table.add(name, "-", "-", "error: " + r["error"])
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
        results.append(r)
    if not b.gpu and "bfloat16" in b.rates and b.rates["bfloat16"]["gflop_per_s"] < b.rates["float32"]["gflop_per_s"]:
        ratio = b.rates["float32"]["gflop_per_s"] / b.rates["bfloat16"]["gflop_per_s"]
        table.notes.append(f"bfloat16 is {fmt(ratio)}x SLOWER than float32 on this CPU "
                           f"(flags: {', '.join(env._cpu_info()['cpu_flags']) or 'none'}; no avx512_bf16/amx "
                           "means bf16 is emulated)")
    return {"status": section_status(results), "results": results}, [table]
