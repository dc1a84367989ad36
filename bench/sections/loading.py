"""loading: seconds to load each model from its checkpoint file, the old way against the pipeline's loader.

before: the model built with PyTorch's random initialisation, the file read whole (`torch.load` of the
        official format; the shapes family's safetensors `load_file`), then `load_state_dict` copying
        the weights in: what loading did before issue 24 (reconstructed here; glide/ no longer has it).
after:  the loaders the families use: `load_checkpoint(..., mmap=True)` and `load_model_and_diffusion`
        (built on the meta device, the mapped weights assigned) for GLIDE, `shapes.load` for shapes.
        A mapped file's weights are read when first used, so "after, weights read" also reads every
        weight once, which the first sampling step would otherwise pay.

GLIDE's base and upsampler in their released configuration, from official-format files of this run's
random weights (--quick: the tiny twins), and the embedded shapes family's two components. The files
were just written, so both ways read them from the page cache. Small models: the median of 5 loads each way.
"""
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List

import torch

from glide.download import CHECKPOINT_FILENAMES, load_checkpoint
from glide.model_creation import create_model_and_diffusion, load_model_and_diffusion

from .. import env, models
from ..report import Table
from .common import Bench, budget_notes, error_text, log, section_status


def _seconds(fn: Callable, device: torch.device):
    """(result, seconds) of one call of fn."""
    env.synchronize(device)
    start = time.perf_counter()
    result = fn()
    env.synchronize(device)
    return result, time.perf_counter() - start


def _read_every_weight(model: torch.nn.Module) -> None:
    """Touch every parameter and buffer once (a mapped checkpoint's pages are read in)."""
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.sum()


def glide_paths(b: Bench, name: str, path: Path) -> Dict:
    """before and after for one GLIDE component from `path` (the official format), on the bench's device."""
    options = b.options[name]

    def before():
        model, _ = create_model_and_diffusion(**options, tokenizer=models.RandomTokenizer())
        model.load_state_dict(torch.load(path, map_location="cpu"))
        return model.to(b.device).eval()

    def after():
        state = load_checkpoint(name, "cpu", path=path, mmap=True)
        model, _ = load_model_and_diffusion(state, **options, tokenizer=models.RandomTokenizer())
        return model.to(b.device).eval()

    # A full-size load takes seconds (the old way ~10 s for the base): timed once there.
    return _compare(b, before, after, repeats=3 if b.quick else 1)


def shapes_paths(b: Bench, name: str) -> Dict:
    """before and after for one component of the embedded shapes family (CPU, as the family runs there)."""
    from safetensors.torch import load_file

    from glide.families import shapes

    cpu = torch.device("cpu")

    def before():
        model, _ = create_model_and_diffusion(**shapes.MODEL_OPTIONS[name], tokenizer=shapes.load_tokenizer())
        model.load_state_dict(load_file(shapes.files()[name]))
        return model.eval()

    def after():
        return shapes.load(name, cpu)[0]

    return _compare(b, before, after, cpu, repeats=5)


def _compare(b: Bench, before: Callable, after: Callable, device=None, repeats: int = 1) -> Dict:
    """Median seconds of `repeats` calls of each way (after an untimed call of each when repeating: small
    models load in milliseconds, where first-call costs would decide), alternating before and after."""
    device = device or b.device
    if repeats > 1:
        before(), after()
    times: Dict[str, List[float]] = {"before": [], "after": [], "read": []}
    for _ in range(repeats):
        times["before"].append(_seconds(before, device)[1])   # the model is dropped before the next load
        new, seconds = _seconds(after, device)
        times["after"].append(seconds)
        times["read"].append(_seconds(lambda: _read_every_weight(new), device)[1])
    before_s, after_s, read_s = (env.median(times[k]) for k in ("before", "after", "read"))
    return {"before_s": before_s, "after_s": after_s, "after_weights_read_s": after_s + read_s,
            "speedup": before_s / after_s, "repeats": repeats, "parameters": sum(p.numel() for p in new.parameters())}


def section_loading(b: Bench):
    from glide.families import list_models

    results: List[Dict] = []
    table = Table("Loading a model from its checkpoint: before (random init + read + load_state_dict) and after "
                  "(meta-device build + mapped weights assigned)",
                  ["model", "component", "parameters", "before s", "after s", "after, weights read s", "speed-up"])
    shapes_ready = next(m for m in list_models() if m["name"] == "shapes")["ready"]
    cases = [("glide-filtered" + (" (tiny, --quick)" if b.quick else ""), name) for name in ("base", "upsample")]
    cases += [("shapes", name) for name in ("base", "upsample")] if shapes_ready else []
    with tempfile.TemporaryDirectory(prefix="glide-bench-load-") as folder:
        for family, name in cases:
            row: Dict = {"family": family, "component": name}
            results.append(row)
            if b.out_of_budget():
                row.update(status="skipped", budget=True, note=b.budget_note())
                table.add(family, name, "", "skipped (budget)", "", "", "")
                continue
            try:
                if family == "shapes":
                    log(f"loading: shapes {name}")
                    row.update(shapes_paths(b, name))
                else:
                    path = Path(folder) / CHECKPOINT_FILENAMES[name]
                    log(f"loading: writing an official-format {name} checkpoint with random weights")
                    torch.save(b.model(name)[0].state_dict(), path)
                    log(f"loading: glide {name}")
                    row.update(glide_paths(b, name, path))
                    path.unlink()
                row["status"] = "ok"
                table.add(family, name, row["parameters"], row["before_s"], row["after_s"],
                          row["after_weights_read_s"], f"{row['speedup']:.1f}x")
            except Exception as e:
                log(traceback.format_exc())
                row.update(status="error", error=error_text(e))
                table.add(family, name, "", "error", row["error"], "", "")
    if not shapes_ready:
        table.notes.append("shapes: not measured, its weights are not in glide/assets/shapes (`make train-default`)")
    table.notes.append(f"GLIDE on {b.device}, float32 (a half-precision pipeline then converts the weights); "
                       "tokenizer: the benchmark's stand-in for both ways; shapes on the CPU with its own tokenizer")
    table.notes += budget_notes(b, results)
    return {"status": section_status(results), "results": results}, [table]
