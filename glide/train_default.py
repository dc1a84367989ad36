"""Re-train the embedded `shapes` family from scratch and export it to glide/assets/shapes/.

    make train-default            # = python -m glide.train_default   (~2 hours on 2 CPU cores)
    python -m glide.train_default --only base --minutes-scale 0.1   # a quick partial run

Stages run in order, each resumable (rerun the command after an interruption): the 32 px base,
the noised CLIP, the 32->128 upsampler, then the inpainting variants fine-tuned from the first two.
The EMA weights are exported as float16 safetensors with a model card (`MODEL_CARD.json`).
"""
import argparse
import json
import platform
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from . import shapes_family
from .checkpoints import save_safetensors_atomic
from .train import TrainConfig, build_trainer

SEED = 0
# (stage, minutes on 2 CPU cores, batch size, learning rate, parent stage for fine-tunes)
RECIPE = [
    ("base", 60, 32, 1e-3, None),
    ("clip", 10, 64, 5e-4, None),
    ("upsample", 20, 8, 5e-4, None),
    ("base-inpaint", 12, 32, 5e-4, "base"),
    ("upsample-inpaint", 8, 8, 5e-4, "upsample"),
]


def export(stage: str, runs: Path, asset_dir: Path = shapes_family.ASSET_DIR, weights: str = "ema") -> Path:
    """Copy a stage's weights ("ema" or the raw "model") into the assets as float16 (half the size; loads as float32)."""
    trained = load_file(runs / stage / f"{weights}.safetensors")
    state = {k: v.half() if v.is_floating_point() else v for k, v in trained.items()}
    out = asset_dir / f"{stage}.safetensors"
    save_safetensors_atomic(state, out)
    return out


def update_model_card(stage: str, runs: Path, wall_minutes: float, weights: str = "ema",
                      asset_dir: Path = shapes_family.ASSET_DIR):
    card_path = asset_dir / "MODEL_CARD.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {
        "family": "shapes", "data": "glide.data.shapes: procedural one/two-shape scenes, captions from its grammar",
        "tokenizer": "byte-level BPE (GLIDE's code) trained on 20,000 captions: encoder.json, vocab.bpe",
        "command": "make train-default  (python -m glide.train_default)", "seed": SEED, "stages": {}}
    state = json.loads((runs / stage / "state.json").read_text())
    card["stages"][stage] = {
        "options": shapes_family.CLIP_CONFIG if stage == "clip" else shapes_family.MODEL_OPTIONS[stage],
        "train_config": state["config"], "steps": state["step"],
        "final_loss": state["log"][-1]["loss"] if state["log"] else None,
        "wall_minutes_this_run": round(wall_minutes, 1), "exported_weights": weights,
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads",
    }
    card_path.write_text(json.dumps(card, indent=1, default=str))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where checkpoints go (resumable)")
    parser.add_argument("--only", nargs="*", default=None, help="stages to run (default: all)")
    parser.add_argument("--minutes-scale", type=float, default=1.0, help="scale every stage's time budget")
    parser.add_argument("--export-only", action="store_true", help="export existing runs without training")
    parser.add_argument("--weights", choices=["ema", "model"], default="ema",
                        help="export the EMA (default) or the raw weights (better for very short runs)")
    args = parser.parse_args(argv)
    if not (shapes_family.ASSET_DIR / "encoder.json").exists():
        shapes_family.train_tokenizer()
    for stage, minutes, batch, lr, parent in RECIPE:
        if args.only is not None and stage not in args.only:
            continue
        if not args.export_only:
            cfg = TrainConfig(stage=stage, out=str(args.runs / stage), minutes=minutes * args.minutes_scale,
                              batch_size=batch, lr=lr, seed=SEED, high_noise_fraction=0.5 if stage == "base" else 0.0,
                              init_from=str(args.runs / parent / "ema.safetensors") if parent else "")
            start = time.time()
            build_trainer(cfg).run()
            wall = (time.time() - start) / 60
        else:
            wall = 0.0
        print(f"exported {export(stage, args.runs, weights=args.weights)}", flush=True)
        update_model_card(stage, args.runs, wall, args.weights)


if __name__ == "__main__":
    main()
