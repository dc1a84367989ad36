"""5. recipe: the fast recipe and the `fast` preset at 256 px from checkpoint files in a fresh process, loading
included."""
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import torch

from .. import env
from ..report import Table, fmt
from .common import CHILDREN, Bench, error_text, log, section_status
from .shapes import dtypes_to_compare, run_child

RECIPE_PROMPT = "an oil painting of a corgi"
# int8 on random weights: the calibration's content does not change the speed, and GLIDE's own plan (glide.int8)
# samples tens of minutes of float32 runs on a CPU; this plan records the `fast` preset's run of one caption.
INT8_BENCH_PLAN = {"captions": ["an oil painting of a corgi"], "with_defaults": 0, "items": 8}
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
    """The fast recipe (docs/performance.md) at full size, end to end in a fresh process, from checkpoint files in the
    official format (random weights): interpreter, import, loading and both stages, as a user runs it."""
    from glide.download import CHECKPOINT_FILENAMES

    a = b.args
    recipes = {"fast settings": dict(sampler="dpm++2m", steps=a["fast_base_steps"],
                                     upsample_sampler=a["fast_upsample_sampler"],
                                     upsample_steps=str(a["fast_upsample_steps"])),
               "preset fast": dict(preset="fast")}
    table = Table("The fast recipe and the `fast` preset at 256 px, end to end from checkpoint files (random weights, "
                  "fresh process)", ["settings", "dtype", "total s", "load s", "generate s", "next image s", "detail"])
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
        dtypes = a["recipe_dtypes"].split(",") if a.get("recipe_dtypes") else dtypes_to_compare(b.device)
        int8_plan = (json.dumps(INT8_BENCH_PLAN),) if "int8" in dtypes else ()
        if int8_plan:
            log("recipe: int8's first use (conversion, calibration, quantization into the cache)")
            try:
                row = run_child(b, "recipe", CHILDREN / "recipe.py", str(b.device), "int8", str(folder), "build",
                                RECIPE_PROMPT, *int8_plan, extra_env={"GLIDE_CACHE_DIR": str(folder)})
                row.update(recipe="int8 first use", dtype_asked="int8")
                table.add("int8 first use", "int8", row["seconds"], row["load_s"], "", "",
                          f"builds the int8 models into the cache, calibrated on {INT8_BENCH_PLAN}")
            except Exception as e:
                row = {"recipe": "int8 first use", "dtype_asked": "int8", "status": "error", "error": error_text(e)}
                table.add("int8 first use", "int8", "error", "", "", "", row["error"])
            results.append(row)
        for label, recipe in recipes.items():
            for dtype in dtypes:
                if b.out_of_budget():
                    results.append({"recipe": label, "dtype_asked": dtype, "status": "skipped", "budget": True,
                                    "note": b.budget_note()})
                    table.add(label, dtype, "skipped (budget)", "", "", "", "")
                    continue
                log(f"recipe: {label}, dtype {dtype}")
                try:
                    row = run_child(b, "recipe", CHILDREN / "recipe.py", str(b.device), dtype, str(folder),
                                    json.dumps(recipe), RECIPE_PROMPT, *(int8_plan if dtype == "int8" else ()),
                                    extra_env={"GLIDE_CACHE_DIR": str(folder)})
                    row.update(recipe=label, dtype_asked=dtype)
                    if b.reference_s:
                        row["of_reference"] = row["seconds"] / b.reference_s
                    table.add(label, row["dtype"], row["seconds"], row["load_s"], row["generate_s"], row["next_image_s"],
                              row["precision"] + (f"; {fmt(row['of_reference'])} of the notebook's settings"
                                                  if b.reference_s else ""))
                except Exception as e:
                    row = {"recipe": label, "dtype_asked": dtype, "status": "error", "error": error_text(e)}
                    table.add(label, dtype, "error", "", "", "", row["error"])
                results.append(row)
    fast = recipes["fast settings"]
    table.notes.append(f"fast settings: base DPM-Solver++(2M) {fast['steps']} steps classifier-free, upsampler "
                       f"{fast['upsample_sampler']} {fast['upsample_steps']}; preset fast: glide.settings.PRESETS"
                       "['fast']; one image; total = from the interpreter's start to the PNG-ready image; next image = one more "
                       "image in the same process, as a server makes it"
                       + ("; int8 with a warm cache (its first use is the row apart)" if int8_plan else ""))
    if b.reference_s:
        table.notes.append(f"the notebook's settings (sample section, float32, loading excluded): "
                           f"{fmt(b.reference_s)} s per image")
    return {"status": section_status(results), "recipes": recipes, "results": results}, [table]
