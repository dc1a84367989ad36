"""guidance: seconds per image of each guidance strategy of the trade-off sweep, and what an interval saves."""
import statistics
from typing import Dict, List

from samplers.builtin_guidance import SDXL_INTERVAL

from .. import env
from ..report import Table, fmt
from .common import SHAPES_PROMPT, Bench, error_text, log, section_status

# The trade-off sweep's strategies (glide.evaluation.shapes.TRADEOFF_CURVES) at the scales docs/shapes-family.md
# discusses: label -> (strategy, its parameters, the label of the same guidance without an interval).
GUIDANCE_ROWS = {
    "none": ("none", {}, None),
    "classifier-free 3": ("classifier-free", {"guidance_scale": 3.0}, None),
    "classifier-free 3, interval": ("classifier-free", {"guidance_scale": 3.0, "interval": SDXL_INTERVAL},
                                    "classifier-free 3"),
    "cfg-rescale 3 (phi 0.7)": ("cfg-rescale", {"guidance_scale": 3.0, "phi": 0.7}, None),
    "clip 10": ("clip", {"guidance_scale": 10.0}, None),
    "clip 10, interval": ("clip", {"guidance_scale": 10.0, "interval": SDXL_INTERVAL}, "clip 10"),
}


REPEATS = 3


def section_guidance(b: Bench):
    """The shapes family's base model (the sweep's settings: DPM-Solver++(2M) 10, float32) at one batch, each
    strategy warmed up and timed REPEATS times (the median)."""
    from glide.families import list_models
    from glide.pipeline import load_pipeline

    table = Table("Guidance strategies on the shapes family: seconds per image (base model, DPM-Solver++(2M) "
                  "10, float32)", ["guidance", "s / image", "detail"])
    if not next(m for m in list_models() if m["name"] == "shapes")["ready"]:
        note = "the embedded shapes weights are not in glide/assets/shapes (run `make train-default`)"
        table.notes.append(note)
        return {"status": "skipped", "note": note}, [table]
    batch, steps = (2, 2) if b.quick else (16, 10)
    pipe = load_pipeline("shapes", device=b.device, dtype="float32")

    def generate(strategy, params):
        return lambda: pipe.generate(SHAPES_PROMPT, batch_size=batch, seed=0, sampler="dpm++2m", steps=steps,
                                     guidance=strategy, guidance_params=params, upsample=False)

    # Repeats are interleaved (every strategy once, then again, ...) so that a neighbour's load on a shared
    # machine falls on all rows alike instead of on whichever row it coincides with.
    samples: Dict[str, List[float]] = {label: [] for label in GUIDANCE_ROWS}
    errors: Dict[str, str] = {}
    for repeat in range(1 + REPEATS):   # the first round warms up, untimed
        for label, (strategy, params, _) in GUIDANCE_ROWS.items():
            if label in errors or b.out_of_budget():
                continue
            log(f"guidance: {label}, batch {batch}" + (" (warm-up)" if repeat == 0 else ""))
            try:
                seconds = env.time_call(generate(strategy, params), b.device)
                if repeat:
                    samples[label].append(seconds)
            except Exception as e:
                errors[label] = error_text(e)
    results: List[Dict] = []
    per_image: Dict[str, float] = {}
    for label, (strategy, params, without) in GUIDANCE_ROWS.items():
        if label in errors:
            results.append({"guidance": label, "status": "error", "error": errors[label]})
            table.add(label, "error", errors[label])
            continue
        if len(samples[label]) < REPEATS:
            results.append({"guidance": label, "status": "skipped", "budget": True, "note": b.budget_note()})
            table.add(label, "skipped (budget)", b.budget_note())
            continue
        per_image[label] = statistics.median(samples[label]) / batch
        row = {"guidance": label, "status": "ok", "strategy": strategy, "params": params, "batch": batch,
               "steps": steps, "seconds_per_image": per_image[label], "samples_s": samples[label],
               "repeats": REPEATS}
        detail = ""
        if without in per_image:
            row["saves_vs_" + without] = 1 - per_image[label] / per_image[without]
            detail = f"{fmt(100 * row['saves_vs_' + without])}% less than {without}"
        table.add(label, per_image[label], detail)
        results.append(row)
    table.notes.append(f"batch {batch}, {steps} steps, one prompt; the interval is {SDXL_INTERVAL} in sigma (on 10 "
                       "time-uniform steps it guides 6: the unconditional half of the batch is skipped on the other 4)")
    if b.quick:
        table.notes.append("quick mode: batch 2, 2 steps")
    return {"status": section_status(results), "results": results}, [table]
