"""What every section shares: the run's state (Bench), timing profiles, progress and status."""
import copy
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from glide.cuda_graphs import GraphedModel
from glide.families import FAMILIES
from glide.pipeline import Pipeline
from glide.precision import choose_precision

from .. import models

CHILDREN = Path(__file__).resolve().parent.parent / "children"

SHAPES_PROMPT = "a small red circle on the left on a blue background"


def log(msg: str):
    """Progress on stderr, so a ten-minute run shows where it is without cluttering the table on stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Profile:
    """How hard to time: per-variant repeat bounds and time budget, sized to finish `make bench` in minutes."""

    warmup: int
    max_repeats: int
    budget_s: float            # timed calls per variant fit in this (at least one)
    skip_over_s: float         # a variant predicted slower than this per call is estimated, not run (unless --full)
    matmul_target_s: float     # one matmul call at least this long (N doubles until it is)
    matmul_max_n: int
    matmul_budget_s: float
    sample_steps: int          # steps measured per stage when extrapolating
    sample_repeats: int = 1    # full sampling runs per setting (the median is reported)


def profile_for(device: torch.device, quick: bool) -> Profile:
    if quick:
        return Profile(warmup=1, max_repeats=3, budget_s=0.3, skip_over_s=60, matmul_target_s=0.01,
                       matmul_max_n=512, matmul_budget_s=0.05, sample_steps=2)
    if device.type == "cuda":
        # ~40 timed calls (forward, batch, matmul) at about a second each, and 3 full sampling runs
        # per setting: the whole run is a minute or two on an H100/H200.
        return Profile(warmup=3, max_repeats=30, budget_s=1.0, skip_over_s=600, matmul_target_s=0.02,
                       matmul_max_n=8192, matmul_budget_s=0.5, sample_steps=5, sample_repeats=3)
    # CPU: a base forward at batch 2 is ~5-10 s on 2 cores and an upsampler forward ~15-30 s, so the
    # budget buys 2-3 timed calls of the base and one of the upsampler per variant.
    return Profile(warmup=1, max_repeats=3, budget_s=20.0, skip_over_s=45, matmul_target_s=0.2,
                   matmul_max_n=4096, matmul_budget_s=1.5, sample_steps=2)


class Bench:
    """Shared state of one run: options, device, the models (built once), the measured matmul rates."""

    def __init__(self, device: torch.device, *, quick: bool, full: bool, compile: bool, args: Dict,
                 budget_s: Optional[float] = None, cuda_graphs: bool = False,
                 started: Optional[float] = None):
        self.device = device
        self.quick, self.full, self.compile = quick, full, compile
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        self.args = args
        self.options = models.quick_options() if quick else models.full_options()
        self.profile = profile_for(device, quick)
        self._models: Dict[str, tuple] = {}
        self._graphed: Dict[str, GraphedModel] = {}
        self._pipelines: Dict[tuple, Pipeline] = {}
        self._flops_per_item: Dict[str, Tuple[float, float]] = {}
        self.rates: Dict[str, Dict] = {}
        self.reference_s: Optional[float] = None   # the notebook's settings, one image (the sample section)
        self.budget_s = budget_s
        self.started = time.monotonic() if started is None else started   # time.monotonic() at the start

    # -------------------------------------------------------------------------------- wall-clock budget
    def budget_left(self) -> Optional[float]:
        """Seconds of the --budget-s budget left (negative when overspent); None without a budget."""
        if self.budget_s is None:
            return None
        return self.budget_s - (time.monotonic() - self.started)

    def out_of_budget(self) -> bool:
        left = self.budget_left()
        return left is not None and left <= 0

    def budget_note(self) -> str:
        return f"not run: the wall-clock budget (--budget-s {self.budget_s:g}) was spent"

    @property
    def gpu(self) -> bool:
        return self.device.type == "cuda"

    def model(self, name: str):
        """(model, diffusion) of 'base' or 'upsample', built with random weights on first use."""
        if name not in self._models:
            log(f"building {name} model with random weights")
            self._models[name] = models.build(self.options[name], self.device)
        return self._models[name]

    def pipeline(self, dtype: str, cuda_graphs: bool = False) -> Pipeline:
        """A pipeline over this run's models (the GLIDE (filtered) family's shape, random weights) in `dtype`
        ("auto" included): the sample section runs the pipeline's own stages, as users do."""
        precision = choose_precision(dtype, self.device)
        key = (precision.dtype, cuda_graphs)
        if key not in self._pipelines:
            def load(component, _device, _checkpoint_dir):
                model, diffusion = self.model(component)
                # A half-precision pipeline converts its weights: give it a copy, keep the float32 original.
                return (model if precision.dtype == "float32" else copy.deepcopy(model)), diffusion

            family = replace(
                FAMILIES["glide-filtered"], base_size=self.options["base"]["image_size"],
                upsample_size=self.options["upsample"]["image_size"], text_ctx=self.options["base"]["text_ctx"],
                load=load)
            self._pipelines[key] = Pipeline(family, self.device, dtype=precision, cuda_graphs=cuda_graphs)
        return self._pipelines[key]

    def graphed(self, name: str) -> GraphedModel:
        """The model of 'base' or 'upsample' with CUDA-graph replay; its graphs last for the whole run."""
        if name not in self._graphed:
            self._graphed[name] = GraphedModel(self.model(name)[0])
        return self._graphed[name]

    def inputs(self, name: str, batch: int, seed: int = 0) -> Dict:
        return models.make_inputs(self.options[name], batch, self.device, models.low_res_size(self.options), seed)

    def flops(self, name: str, batch: int) -> Tuple[float, float]:
        """(FLOPs of a forward, FLOPs of its text encoder) at this batch.

        Counted once per model at batch 1 and scaled: every op is per batch element, so FLOPs are
        exactly linear in the batch, and a full-size count costs about a second of CPU each time.
        """
        if name not in self._flops_per_item:
            self._flops_per_item[name] = models.count_flops(self.options[name], 1, models.low_res_size(self.options))
        total, text = self._flops_per_item[name]
        return total * batch, text * batch

    def half_dtypes(self) -> List[str]:
        """Reduced precisions to try: bf16 everywhere (measured, however slow), fp16 on GPU only."""
        if self.gpu:
            out = ["float16"]
            if torch.cuda.is_bf16_supported():
                out.insert(0, "bfloat16")
            return out
        return ["bfloat16"]

    def peak_rate(self, compute: str) -> Optional[float]:
        """The measured matmul FLOP/s matching a variant's compute precision (MFU's denominator).

        GPU float32 convolutions run as TF32 when cuDNN allows it (PyTorch's default), so their
        ceiling is the TF32 matmul rate, not strict float32's.
        """
        if not self.rates:
            from .matmul import section_matmul

            section_matmul(self)
        key = compute
        if compute == "float32" and self.gpu and torch.backends.cudnn.allow_tf32 and "tf32" in self.rates:
            key = "tf32"
        rate = self.rates.get(key)
        return rate["gflop_per_s"] * 1e9 if rate else None


def section_status(rows: List[Dict]) -> str:
    """A section's status from its rows: ok (skips allowed), partial (some failed), error (all failed)."""
    failed = sum(r.get("status") == "error" for r in rows)
    return "ok" if not failed else "error" if failed == len(rows) else "partial"


def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]


class BudgetSpent(Exception):
    pass


def budget_notes(b: "Bench", rows: List[Dict]) -> List[str]:
    n = sum(bool(r.get("budget")) for r in rows)
    return [f"{n} row(s) {b.budget_note()}"] if n else []
