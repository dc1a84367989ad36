"""Train any GLIDE-family diffusion model (or the noised CLIP): one file, one loop.

    python -m glide.training --stage base --out runs/base --minutes 50
    torchrun --nproc_per_node 4 -m glide.train --stage base --out runs/base --steps 20000

The hybrid loss of improved DDPM (`GaussianDiffusion.training_losses`), 20% empty captions for
classifier-free guidance (in the family's batches), AdamW, an EMA of the weights, safetensors
checkpoints, resumable (rerun the same command), single process on CPU/GPU or multi-GPU through
torchrun (DistributedDataParallel; rank 0 writes).
"""
import argparse
import json
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file

from ..checkpoints import save_safetensors_atomic
from ..clip.model_creation import create_clip_model
from ..families import shapes as shapes_family
from ..fileio import write_text_atomic
from ..model_creation import create_model_and_diffusion
from . import shapes as shapes_training


@dataclass
class TrainConfig:
    stage: str = "base"
    out: str = "runs/base"
    steps: int = 100_000          # upper bound; `minutes` usually stops first
    minutes: float = 0.0          # wall-clock budget (0 = none)
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 200
    ema_rate: float = 0.999
    vb_weight: float = 1.0
    save_every: int = 500
    log_every: int = 50
    seed: int = 0
    init_from: str = ""           # safetensors weights to start from (inpainting fine-tunes)
    workers: int = 0              # processes rendering batches (0 = in the training process; GPUs want several)
    # Share of batches' timesteps drawn from the noisiest 30% of the process instead of uniformly.
    # Text conditioning is learned where the image carries little signal; on a small compute budget,
    # sampling there more often teaches the model to follow the caption sooner.
    high_noise_fraction: float = 0.0


def _distributed() -> tuple:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def load_expanding_inputs(model: torch.nn.Module, state: dict) -> None:
    """Load `state` into `model`; an input conv with more channels than saved gets zeros for the extra.

    This is how the inpainting variants start from the base/upsampler: the 4 extra channels
    (masked image + mask) are zero-initialised, so the fine-tune begins at the parent's function.
    Super-resolution models keep the low-res channels last, after the inpainting channels.
    """
    key = "input_blocks.0.0.weight"
    target = model.state_dict()[key]
    if state[key].shape != target.shape:
        saved = state[key]
        expanded = torch.zeros_like(target)
        expanded[:, :3] = saved[:, :3]                      # x_t
        if saved.shape[1] > 3:                              # super-res: low-res channels go last
            expanded[:, -3:] = saved[:, 3:6]
        state = {**state, key: expanded}
    model.load_state_dict(state, strict=True)


class _Batches(torch.utils.data.IterableDataset):
    """An endless stream of `make(rng, batch_size)`; each data worker draws from its own seeded stream."""

    def __init__(self, make: Callable, batch_size: int, seed_words: tuple):
        super().__init__()
        self.make, self.batch_size, self.seed_words = make, batch_size, seed_words

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([*self.seed_words, worker.id if worker else 0])
        while True:
            yield self.make(rng, self.batch_size)


def batch_stream(make: Callable, batch_size: int, seed_words: tuple, workers: int, pin_memory: bool):
    """Batches made in this process (workers=0) or rendered ahead by `workers` processes."""
    batches = _Batches(make, batch_size, seed_words)
    if workers == 0:
        return iter(batches)
    # Batch makers close over the tokenizer and cannot be pickled: workers must be forked.
    return iter(torch.utils.data.DataLoader(batches, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                                            prefetch_factor=4, multiprocessing_context="fork"))


class Trainer:
    """Owns model, EMA, optimiser and the loop.

    `make_batch(rng, n)` draws training examples (in data workers when `cfg.workers` > 0) and
    `loss_fn(model, batch, rng) -> scalar loss` scores one batch, `rng` drawing its timesteps.
    """

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module, make_batch: Callable, loss_fn: Callable,
                 device: torch.device, rank: int = 0, world: int = 1):
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        self.out = Path(cfg.out)
        self.model = model.to(device)
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
        # The fused kernel updates every parameter in a few launches: the loop on a GPU is launch-bound.
        self.fused = device.type == "cuda"
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=self.fused)
        self.step = 0
        self.make_batch, self.loss_fn = make_batch, loss_fn
        self.log = []
        self._resume()
        floating = [k for k, v in self.model.state_dict().items() if v.dtype.is_floating_point]
        self._ema_pairs = ([self.ema[k] for k in floating], [self.model.state_dict()[k] for k in floating])
        self.ddp = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
                    if world > 1 else model)

    def _resume(self):
        state_path = self.out / "state.json"
        if not state_path.exists():
            return
        state = json.loads(state_path.read_text())
        self.step = state["step"]
        self.log = state.get("log", [])
        self.model.load_state_dict(load_file(self.out / "model.safetensors", device=str(self.device)))
        self.ema = load_file(self.out / "ema.safetensors", device=str(self.device))
        optim = load_file(self.out / "optim.safetensors", device=str(self.device))
        for i, p in enumerate(self.model.parameters()):
            if f"{i}.exp_avg" in optim:
                # AdamW keeps its step count on the parameter's device when fused, on the CPU otherwise;
                # the fused kernel also wants the moments in the parameter's memory layout (channels-last
                # convolutions), which safetensors does not keep.
                step = torch.tensor(float(self.step), device=p.device if self.fused else "cpu")
                self.opt.state[p] = {"step": step,
                                     "exp_avg": torch.empty_like(p).copy_(optim[f"{i}.exp_avg"]),
                                     "exp_avg_sq": torch.empty_like(p).copy_(optim[f"{i}.exp_avg_sq"])}
        print(f"resumed {self.out} at step {self.step}", flush=True)

    def save(self):
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        save_safetensors_atomic(self.model.state_dict(), self.out / "model.safetensors")
        save_safetensors_atomic(self.ema, self.out / "ema.safetensors")
        optim = {}
        for i, p in enumerate(self.model.parameters()):
            if p in self.opt.state:
                optim[f"{i}.exp_avg"] = self.opt.state[p]["exp_avg"]
                optim[f"{i}.exp_avg_sq"] = self.opt.state[p]["exp_avg_sq"]
        save_safetensors_atomic(optim, self.out / "optim.safetensors")
        write_text_atomic(self.out / "state.json",
                          json.dumps({"step": self.step, "config": asdict(self.cfg), "log": self.log}, indent=1))

    def run(self):
        cfg = self.cfg
        seed_words = (cfg.seed, self.rank, self.step)  # resumes continue with fresh data
        rng = np.random.default_rng(seed_words)
        batches = batch_stream(self.make_batch, cfg.batch_size, seed_words, cfg.workers,
                               pin_memory=self.device.type == "cuda")
        torch.manual_seed(cfg.seed * 1000 + self.rank + self.step)
        # Losses are summed on the device and read at log time: a per-step .item() would stall a GPU.
        start, last_log = time.time(), time.time()
        loss_sum, loss_count = torch.zeros((), device=self.device), 0
        self.model.train()
        # SIGTERM (a scheduler or `kill`) ends the run cleanly at the next step, checkpoint saved.
        stop = {"now": False}
        in_main_thread = threading.current_thread() is threading.main_thread()  # signals need the main thread
        if in_main_thread:
            previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        while (self.step < cfg.steps and not stop["now"]
               and not (cfg.minutes and time.time() - start > cfg.minutes * 60)):
            lr = cfg.lr * min(1.0, (self.step + 1) / cfg.warmup_steps)
            for group in self.opt.param_groups:
                group["lr"] = lr
            loss = self.loss_fn(self.ddp, next(batches), rng)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            # EMA with a warm-up: early on, average over ~step/10 steps rather than 1/(1-rate), so short
            # runs are not dominated by their first, poor weights.
            rate = min(cfg.ema_rate, (1 + self.step) / (10 + self.step))
            with torch.no_grad():
                torch._foreach_lerp_(self._ema_pairs[0], self._ema_pairs[1], 1 - rate)
            self.step += 1
            loss_sum += loss.detach()
            loss_count += 1
            if self.step % cfg.log_every == 0 and self.rank == 0:
                entry = {"step": self.step, "loss": loss_sum.item() / loss_count, "lr": lr,
                         "sec_per_step": (time.time() - last_log) / loss_count,
                         "elapsed_min": (time.time() - start) / 60}
                self.log.append(entry)
                print(json.dumps(entry), flush=True)
                loss_sum.zero_()
                loss_count, last_log = 0, time.time()
            if self.step % cfg.save_every == 0:
                self.save()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
        self.save()
        return self


def sample_timesteps(rng, n: int, num_timesteps: int, high_noise_fraction: float = 0.0) -> torch.Tensor:
    """Uniform timesteps, a `high_noise_fraction` of them from the noisiest 30% instead."""
    t = rng.integers(0, num_timesteps, size=n)
    high = rng.random(n) < high_noise_fraction
    t[high] = rng.integers(int(0.7 * num_timesteps), num_timesteps, size=int(high.sum()))
    return torch.from_numpy(t)


def diffusion_loss(diffusion, device, vb_weight, high_noise_fraction=0.0):
    """Hybrid loss of a batch (x_start, model_kwargs) at random timesteps."""
    def loss_fn(model, batch, rng):
        x_start, kwargs = batch
        x_start = x_start.to(device, non_blocking=True)
        kwargs = {k: v.to(device, non_blocking=True) for k, v in kwargs.items()}
        t = sample_timesteps(rng, len(x_start), diffusion.num_timesteps, high_noise_fraction).to(device)
        return diffusion.training_losses(model, x_start, t, model_kwargs=kwargs, vb_weight=vb_weight)["loss"].mean()

    return loss_fn


def clip_loss(clip, diffusion, device):
    """Symmetric contrastive loss between noised images (random t) and their captions.

    A batch is `shapes_training.clip_batch_maker`'s (images, tokens, lengths, same): captions come tokenized,
    and `same[i, j]` marks identical captions, which count as matches.
    """
    def loss_fn(_model, batch, rng):
        images, tokens, lengths, same = (v.to(device, non_blocking=True) for v in batch)
        t = torch.from_numpy(rng.integers(0, diffusion.num_timesteps, size=len(images))).to(device)
        x_t = diffusion.q_sample(images, t)
        z_i = clip.image_embeddings(x_t, t)
        z_t = clip.token_embeddings(tokens, lengths)
        logits = torch.exp(clip.logit_scale) * z_i @ z_t.T
        targets = same / same.sum(1, keepdim=True)
        return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))

    return loss_fn


class _ClipModule(torch.nn.Module):
    """Both CLIP encoders as one module, so the trainer sees one parameter set and state dict."""

    def __init__(self, clip):
        super().__init__()
        self.image_encoder, self.text_encoder = clip.image_encoder, clip.text_encoder


def build_trainer(cfg: TrainConfig, device: Optional[torch.device] = None, rank: int = 0, world: int = 1) -> Trainer:
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)
    encoder = shapes_family.load_tokenizer()
    if cfg.stage == "clip":
        clip = create_clip_model(config={**shapes_family.CLIP_CONFIG, "n_vocab": encoder.n_vocab}, device=device,
                                 tokenizer=shapes_family.ClipTokens(encoder))
        module = _ClipModule(clip)
        _, diffusion = create_model_and_diffusion(**{**shapes_family.MODEL_OPTIONS["base"], "model_mean_type": "v"},
                                                  tokenizer=encoder)
        make_batch = shapes_training.clip_batch_maker(encoder, clip.text_encoder.max_text_len)
        return Trainer(cfg, module, make_batch, clip_loss(clip, diffusion, device), device, rank, world)

    options = shapes_family.MODEL_OPTIONS[cfg.stage]
    model, diffusion = create_model_and_diffusion(**options, tokenizer=encoder)
    if device.type == "cuda":
        # cuDNN's channels-last kernels (what the shipped weights were trained with); on the CPU a base
        # training step measured ~10% slower channels-last, so it stays contiguous there.
        model.to(memory_format=torch.channels_last)
    if cfg.init_from:
        load_expanding_inputs(model, load_file(cfg.init_from))
    make_batch = shapes_training.batch_maker(cfg.stage, encoder)
    loss = diffusion_loss(diffusion, device, cfg.vb_weight, cfg.high_noise_fraction)
    return Trainer(cfg, model, make_batch, loss, device, rank, world)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in asdict(TrainConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = vars(parser.parse_args(argv))
    threads = args.pop("threads")
    if threads:
        torch.set_num_threads(threads)
    rank, world = _distributed()
    device = torch.device(f"cuda:{rank % torch.cuda.device_count()}") if torch.cuda.is_available() else None
    build_trainer(TrainConfig(**args), device, rank, world).run()

