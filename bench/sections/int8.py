"""int8: one U-Net forward of the base (batch 2) and upsampler (batch 1) in torch and through OpenVINO, int8 included.

What `dtype="int8"` runs (glide.int8): the U-Net converted with the text embeddings as inputs (the text encoder
stays in torch, so every row times the U-Net alone), quantized W8A8 by NNCF. Rows: torch float32 (the
reference of every error), torch bf16 in the pipeline's layout (weights converted once, channels-last), the
converted model in OpenVINO float32 and bf16, and int8 with the unquantized operations in float32 (what the
pipeline runs) and in bf16. Random weights, so the calibration is a few random inputs: the speed does not depend
on it, the errors say little about images (the shapes family's evaluation judges those). The conversion and
quantization times are the first use's cost per component (the pipeline also calibrates on sampling runs and
builds DeepCache's shallow path).
"""
import copy
import time
import traceback
from typing import Dict, List

import numpy as np
import torch

from glide import int8
from glide.deep_cache import default_depth
from glide.precision import cpu_flags

from .. import env
from ..report import Table, fmt, fmt_err
from .common import Bench, error_text, log, section_status

BATCHES = {"base": 2, "upsample": 1}
CALIBRATION_ITEMS = 4
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")   # the instructions OpenVINO's int8 kernels are fast with


def _inputs(b: Bench, name: str, batch: int, model, seed: int = 0) -> Dict[str, torch.Tensor]:
    """The converted model's inputs by name: random x, timesteps and low_res, the text encoded once."""
    raw = b.inputs(name, batch, seed)
    with torch.no_grad():
        text = model.encode_text(raw["tokens"], raw["mask"])
    return {"x": raw["x"], "timesteps": raw["timesteps"].float(), "xf_proj": text["xf_proj"],
            "xf_out": text["xf_out"], **({"low_res": raw["low_res"]} if "low_res" in raw else {})}


def _torch_call(model, inputs, channels_last: bool = False):
    x = inputs["x"].contiguous(memory_format=torch.channels_last) if channels_last else inputs["x"]
    extra = {"low_res": inputs["low_res"]} if "low_res" in inputs else {}

    def call():
        with torch.no_grad():
            return model(x, inputs["timesteps"], text_emb={"xf_proj": inputs["xf_proj"], "xf_out": inputs["xf_out"]},
                         **extra)
    return call


def _openvino_call(compiled, arrays: List[np.ndarray]):
    request = compiled.create_infer_request()

    def call():
        request.infer(arrays)
        return torch.from_numpy(request.get_output_tensor(0).data.copy())
    return call


def model_rows(b: Bench, name: str) -> List[Dict]:
    batch = BATCHES[name]
    model, _ = b.model(name)
    inputs = _inputs(b, name, batch, model)
    names = list(inputs)
    arrays = [np.ascontiguousarray(inputs[n].numpy()) for n in names]
    p = b.profile
    rows, reference = [], None

    def timed(variant: str, call, **extra):
        nonlocal reference
        log(f"int8 {name} batch {batch}: {variant}")
        holder = {}
        stats = env.benchmark(lambda: holder.update(out=call()), b.device, warmup=p.warmup, max_repeats=p.max_repeats,
                              budget_s=p.budget_s)
        out = holder["out"].float()
        reference = out if reference is None else reference
        rows.append({"model": name, "batch": batch, "variant": variant, "status": "ok", "ms": stats["median_s"] * 1e3,
                     "repeats": stats["repeats"], "rel_err_vs_float32": float((out - reference).norm() / reference.norm()),
                     **extra})

    timed("torch float32", _torch_call(model, inputs))
    half = copy.deepcopy(model)
    half.convert_to_half(torch.bfloat16)
    half.to(memory_format=torch.channels_last)
    # The text as a half-precision model encodes it: its attention layers take the tokens in bf16.
    half_inputs = {**inputs, "xf_out": inputs["xf_out"].to(torch.bfloat16)}
    timed("torch bf16 (pipeline layout)", _torch_call(half, half_inputs, channels_last=True))
    del half
    start = time.time()
    items = [{n: np.ascontiguousarray(t[:1].numpy()) for n, t in _inputs(b, name, 1, model, seed=1 + i).items()}
             for i in range(CALIBRATION_ITEMS)]
    converted = int8.convert(model, names, items[0], default_depth(model), shallow=False)
    convert_s = time.time() - start
    timed("openvino float32", _openvino_call(int8.compile_for_cpu(converted, "f32"), arrays), convert_s=convert_s)
    timed("openvino bf16", _openvino_call(int8.compile_for_cpu(converted, "bf16"), arrays))
    start = time.time()
    quantized = int8.quantize(converted, items, names)
    quantize_s = time.time() - start
    timed("openvino int8 (rest float32: dtype int8)", _openvino_call(int8.compile_for_cpu(quantized, "f32"), arrays),
          quantize_s=quantize_s)
    timed("openvino int8 (rest bf16)", _openvino_call(int8.compile_for_cpu(quantized, "bf16"), arrays))
    return rows


def section_int8(b: Bench):
    table = Table("int8: one U-Net forward, torch and OpenVINO (random weights, text encoded apart; median ms)",
                  ["model", "batch", "variant", "ms/call", "vs torch bf16", "rel err vs fp32", "n"])
    if b.gpu:
        return {"status": "skipped", "note": "int8 runs on the CPU only"}, [table]
    if b.quick:   # tests/test_int8.py runs its rows on the tiny models instead
        return {"status": "skipped", "note": "not in --quick: exporting and quantizing take a minute even for the "
                                             "tiny models"}, [table]
    try:
        int8._backends()
    except Exception as e:  # the optional extra is not installed
        return {"status": "skipped", "note": error_text(e)}, [table]
    results = []
    for name in BATCHES:
        try:
            rows = model_rows(b, name)
        except Exception as e:  # a failed conversion is reported; the other model still runs
            log(traceback.format_exc())
            rows = [{"model": name, "batch": BATCHES[name], "status": "error", "error": error_text(e)}]
        bf16 = next((r["ms"] for r in rows if r.get("variant", "").startswith("torch bf16")), None)
        for r in rows:
            if r["status"] == "ok":
                r["speedup_vs_torch_bf16"] = bf16 / r["ms"] if bf16 else None
                table.add(name, r["batch"], r["variant"], r["ms"], f"{r['speedup_vs_torch_bf16']:.2f}x",
                          fmt_err(r["rel_err_vs_float32"]), r["repeats"])
            else:
                table.add(name, r["batch"], "error", "-", "-", "-", 0)
        results += rows
    flags = cpu_flags()
    present = [f for f in INT8_FLAGS if f in flags]
    table.notes.append("CPU int8 instructions: " + (", ".join(present) if present else
                                                     "none (no VNNI/AMX): int8 cannot be expected to be faster here"))
    table.notes += [f"{r['model']}: conversion {fmt(r['convert_s'])} s" for r in results if "convert_s" in r]
    table.notes += [f"{r['model']}: NNCF quantization ({CALIBRATION_ITEMS} random items) {fmt(r['quantize_s'])} s"
                    for r in results if "quantize_s" in r]
    table.notes.append("errors on random weights and random calibration say little about images: see the shapes "
                       "family's evaluation in int8")
    table.notes += [f"{r['model']}: {r['error']}" for r in results if r["status"] == "error"]
    return {"status": section_status(results), "int8_cpu_flags": present, "results": results}, [table]
