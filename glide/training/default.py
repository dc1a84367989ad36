"""Re-train the embedded `shapes` family from scratch and export it to glide/assets/shapes/.

    make train-default            # = python -m glide.train_default   (~2 hours on 2 CPU cores)
    python -m glide.train_default --only base --minutes-scale 0.1   # a quick partial run
    python -m glide.train_default --recipe gpu   # one GPU, ~6 minutes: the shipped weights

The CPU recipe runs the stages in order, each resumable (rerun the command after an interruption):
the 32 px base, the noised CLIP, the 32->128 upsampler, then the inpainting variants fine-tuned
from the first two. The GPU recipe runs them side by side, each stage in its own process with its
own data workers (each model is far too small to fill a GPU alone); the inpainting variants start
from a snapshot of their parent's EMA. The EMA weights are exported as float16 safetensors with a
model card (`MODEL_CARD.json`).
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple, Optional

import torch
from safetensors.torch import load_file

from ..checkpoints import save_safetensors_atomic
from ..families import shapes as shapes_family
from ..fileio import atomic_write
from . import shapes as shapes_training
from .trainer import TrainConfig, build_trainer

SEED = 0


class Stage(NamedTuple):
    stage: str
    minutes: float                # wall-clock budget of the stage
    batch: int
    lr: float
    parent: Optional[str] = None  # inpainting variants fine-tune from this stage's EMA
    start: float = 0.0            # GPU recipe: minutes after the start at which the stage begins
    workers: int = 0              # data-rendering processes


RECIPES = {
    # Sequential, on 2 CPU cores: ~2 hours.
    "cpu": [
        Stage("base", 60, 32, 1e-3),
        Stage("clip", 10, 64, 5e-4),
        Stage("upsample", 20, 8, 5e-4),
        Stage("base-inpaint", 12, 32, 5e-4, parent="base"),
        Stage("upsample-inpaint", 8, 8, 5e-4, parent="upsample"),
    ],
    # Side by side on one GPU with 16 CPU cores (the data workers use 15 of them): ~6 minutes.
    "gpu": [
        Stage("base", 5.5, 256, 1e-3, workers=6),
        Stage("clip", 5.5, 256, 5e-4, workers=2),
        Stage("upsample", 5.5, 48, 5e-4, workers=3),
        Stage("base-inpaint", 2.75, 256, 5e-4, parent="base", start=2.75, workers=2),
        Stage("upsample-inpaint", 2.75, 48, 5e-4, parent="upsample", start=2.75, workers=2),
    ],
}


def export(stage: str, runs: Path, asset_dir: Path = shapes_family.ASSET_DIR, weights: str = "ema") -> Path:
    """Copy a stage's weights ("ema" or the raw "model") into the assets as float16 (half the size; loads as float32)."""
    trained = load_file(runs / stage / f"{weights}.safetensors")
    state = {k: v.half() if v.is_floating_point() else v for k, v in trained.items()}
    out = asset_dir / f"{stage}.safetensors"
    save_safetensors_atomic(state, out)
    return out


def _machine() -> str:
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} GPU, {cpu}, torch {torch.__version__}"
    return f"{cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def update_model_card(stage: str, runs: Path, wall_minutes: float, weights: str = "ema", recipe: str = "cpu",
                      parent_step: Optional[int] = None, asset_dir: Path = shapes_family.ASSET_DIR):
    card_path = asset_dir / "MODEL_CARD.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {
        "family": "shapes", "data": "glide.data.shapes: procedural one/two-shape scenes, captions from its grammar",
        "tokenizer": "byte-level BPE (GLIDE's code) trained on 20,000 captions: encoder.json, vocab.bpe",
        "seed": SEED, "stages": {}}
    card["command"] = ("make train-default  (python -m glide.train_default)" if recipe == "cpu"
                       else f"python -m glide.train_default --recipe {recipe}")
    state = json.loads((runs / stage / "state.json").read_text())
    card["stages"][stage] = {
        "options": shapes_family.CLIP_CONFIG if stage == "clip" else shapes_family.MODEL_OPTIONS[stage],
        "train_config": state["config"], "steps": state["step"],
        "final_loss": state["log"][-1]["loss"] if state["log"] else None,
        "wall_minutes_this_run": round(wall_minutes, 1), "exported_weights": weights, "recipe": recipe,
        "machine": _machine(),
    }
    if parent_step is not None:
        card["stages"][stage]["fine_tuned_from_parent_step"] = parent_step
    card_path.write_text(json.dumps(card, indent=1, default=str))


def _train_config(s: Stage, runs: Path, minutes_scale: float, init_from: str) -> TrainConfig:
    return TrainConfig(stage=s.stage, out=str(runs / s.stage), minutes=s.minutes * minutes_scale, batch_size=s.batch,
                       lr=s.lr, seed=SEED, high_noise_fraction=0.5 if s.stage == "base" else 0.0,
                       init_from=init_from, workers=s.workers)


def _snapshot_parent(s: Stage, runs: Path) -> tuple:
    """Copy the parent's current EMA beside the child's run, so the child's starting point stays on disk."""
    step = json.loads((runs / s.parent / "state.json").read_text())["step"]
    target = runs / s.stage / "init.safetensors"
    with atomic_write(target) as tmp:
        shutil.copyfile(runs / s.parent / "ema.safetensors", tmp)
    return str(target), step


def run_side_by_side(stages, runs: Path, minutes_scale: float, poll_s: float = 0.5) -> tuple:
    """Each stage in its own `python -m glide.training` process; waits for all.

    A stage starts at its `start` minute, and a fine-tune not before its parent has saved a checkpoint
    (the parent's state.json is written last, atomically). A failing stage does not stop the others.
    Returns ({stage: (wall minutes, parent step or None)} of the stages that finished, [failed stages]).
    """
    t0, pending, running, done, failed = time.time(), list(stages), {}, {}, []
    runs.mkdir(parents=True, exist_ok=True)
    try:
        while pending or running:
            elapsed = (time.time() - t0) / 60
            for s in list(pending):
                if s.parent in failed:
                    pending.remove(s)
                    failed.append(s.stage)
                    print(f"[{elapsed:5.2f} min] {s.stage} not started: its parent {s.parent} failed", flush=True)
                if (s not in pending or s.start * minutes_scale > elapsed
                        or (s.parent and not (runs / s.parent / "state.json").exists())):
                    continue
                init_from, parent_step = _snapshot_parent(s, runs) if s.parent else ("", None)
                cfg = _train_config(s, runs, minutes_scale, init_from)
                args = [f"--{k.replace('_', '-')}={v}" for k, v in cfg.__dict__.items()]
                with open(runs / f"{s.stage}.log", "a") as log:
                    # One torch thread per trainer: the GPU does the arithmetic, the cores render data.
                    process = subprocess.Popen([sys.executable, "-m", "glide.training", *args, "--threads=1"],
                                               stdout=log, stderr=subprocess.STDOUT)
                running[s.stage] = (process, time.time(), parent_step)
                pending.remove(s)
                print(f"[{elapsed:5.2f} min] started {s.stage}" + (f" from {s.parent} step {parent_step}" if s.parent else "")
                      + f" (log: {runs / (s.stage + '.log')})", flush=True)
            for stage, (process, started, parent_step) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[stage]
                now = (time.time() - t0) / 60
                if process.returncode != 0:
                    failed.append(stage)
                    print(f"[{now:5.2f} min] {stage} FAILED (exit {process.returncode}); see its log", flush=True)
                else:
                    done[stage] = ((time.time() - started) / 60, parent_step)
                    print(f"[{now:5.2f} min] finished {stage}", flush=True)
            time.sleep(poll_s)
    finally:
        for process, _, _ in running.values():
            process.terminate()  # SIGTERM: each saves its checkpoint and stops
        for process, _, _ in running.values():
            process.wait()
    return done, failed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where checkpoints go (resumable)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="cpu",
                        help="cpu: stages one after another (~2 h on 2 cores); gpu: side by side on one GPU")
    parser.add_argument("--only", nargs="*", default=None, help="stages to run (default: all)")
    parser.add_argument("--minutes-scale", type=float, default=1.0, help="scale every stage's time budget")
    parser.add_argument("--export-only", action="store_true", help="export existing runs without training")
    parser.add_argument("--weights", choices=["ema", "model"], default="ema",
                        help="export the EMA (default) or the raw weights (better for very short runs)")
    parser.add_argument("--asset-dir", type=Path, default=shapes_family.ASSET_DIR,
                        help="where the exported weights and MODEL_CARD.json go")
    args = parser.parse_args(argv)
    if not (shapes_family.ASSET_DIR / "encoder.json").exists():
        shapes_training.train_tokenizer()
    stages = [s for s in RECIPES[args.recipe] if args.only is None or s.stage in args.only]
    failed = []
    if args.export_only:
        trained = {s.stage: (0.0, None) for s in stages}
    elif args.recipe == "gpu":
        trained, failed = run_side_by_side(stages, args.runs, args.minutes_scale)
    else:
        trained = {}
        for s in stages:
            init_from = str(args.runs / s.parent / "ema.safetensors") if s.parent else ""
            start = time.time()
            build_trainer(_train_config(s, args.runs, args.minutes_scale, init_from)).run()
            trained[s.stage] = ((time.time() - start) / 60, None)
    for s in [s for s in stages if s.stage in trained]:
        wall, parent_step = trained[s.stage]
        print(f"exported {export(s.stage, args.runs, args.asset_dir, args.weights)}", flush=True)
        update_model_card(s.stage, args.runs, wall, args.weights, args.recipe, parent_step, args.asset_dir)
    if failed:
        raise SystemExit(f"stages that failed (not exported): {', '.join(failed)}")

