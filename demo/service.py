"""What the demo does, without the UI: validate requests, queue them, run them on the pipeline, save PNGs.

The gradio layer (demo.app) turns widget values into requests with the `*_request` methods,
submits them, follows the returned Job and shows its result. Every user-facing problem is
raised as glide.images.InputError, samplers.SamplerError, ModelNotAvailable or jobs.QueueFull,
each with a message that says what to fix; the UI shows those messages as they are.

Models are loaded once per (family, device, dtype) by glide.pipeline.load_pipeline and shared
by every user; the scheduler decides what runs on the device and batches compatible requests.
"""
import atexit
import json
import logging
import math
import re
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image

import samplers
from glide.images import InputError
from glide.model_registry import FAMILIES, ModelNotAvailable
from glide.pipeline import MAX_PROMPT_CHARS, load_pipeline
from glide.pngmeta import save_png
from glide.respace import space_timesteps
from samplers import validate_params

from . import imaging
from .jobs import Batch, Job, Scheduler
from .models import APPROX_BYTES, Downloads, human_bytes, model_rows

log = logging.getLogger("glide.demo")

MAX_SEED = 2 ** 53 - 1          # seeds travel through JSON and JavaScript numbers: keep them exact
UPSAMPLE_STEP_CHOICES = ["8", "fast27", "ddim25", "50", "100"]
MIN_STEPS = 1


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, so that one user cannot occupy a shared device for long."""

    max_batch: int = 8            # images per request (and per batched run)
    max_steps: int = 250          # sampling steps per stage
    max_image_side: int = 4096    # uploaded images, pixels a side
    max_sweep: int = 6            # guidance scales in one comparison sweep


@dataclass(frozen=True)
class SampleRequest:
    """A validated text-to-image or inpainting request (everything but the image and mask)."""

    prompt: str
    model: str
    seed: Optional[int]               # None: a random seed, chosen when the job is scheduled
    batch_size: int = 1
    negative_prompt: str = ""
    sampler: str = "ddim"
    sampler_params: Tuple = ()        # sorted (name, value) pairs: hashable, so requests can be grouped
    steps: int = 25
    guidance: str = "classifier-free"
    guidance_params: Tuple = ()
    upsample: bool = True
    upsample_sampler: str = "ddpm"
    upsample_steps: str = "fast27"
    upsample_temp: float = 0.997

    def batch_key(self) -> tuple:
        """Everything a shared run must agree on: all settings but the prompt and the seed."""
        d = asdict(self)
        for name in ("prompt", "seed", "batch_size"):
            d.pop(name)
        return tuple(sorted(d.items()))

    def pipeline_kwargs(self) -> dict:
        return dict(sampler=self.sampler, sampler_params=dict(self.sampler_params), steps=self.steps,
                    guidance=self.guidance, guidance_scale=None, guidance_params=dict(self.guidance_params),
                    negative_prompt=self.negative_prompt, upsample=self.upsample,
                    upsample_sampler=self.upsample_sampler, upsample_steps=self.upsample_steps,
                    upsample_temp=self.upsample_temp)


@dataclass(frozen=True)
class CompareRequest:
    prompt: str
    model: str
    seed: Optional[int]
    sampler: str = "ddim"
    steps: int = 25
    clip_scale: float = 3.0
    cfg_scale: float = 3.0
    upsample: bool = False
    sweep: Tuple[float, ...] = ()


@dataclass
class Output:
    """One request's images as PNG files carrying their settings."""

    images: List[str]                 # final images (upsampled when asked)
    base_images: List[str]            # the base model's images (same as images without upsampling)
    settings: List[Dict]
    seconds: float
    masked_input: Optional[str] = None  # inpainting: the input with the region to replace greyed


@dataclass
class CompareOutput:
    entries: List[Dict]               # guidance, scale, seconds, clip_score, checker, verdict, image, caption
    grid: Optional[str] = None        # the sweep grid image, if a sweep was asked for
    seed: int = 0


def _number(value, name: str, kind=float, lo=None, hi=None):
    """`value` as an int or float within [lo, hi], or an InputError naming the field and the range."""
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{name} is missing: give a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if kind is int:
        if not number.is_integer():
            raise InputError(f"{name} must be a whole number, got {value!r}")
        number = int(number)
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise InputError(f"{name} must be between {lo} and {hi}, got {value!r}")
    return number


def step_count(spec, diffusion_steps: int = 1000) -> int:
    """How many steps a respacing spec runs (27 for "fast27", 25 for "ddim25", 30 for "10,20"); 0 when it is
    not a spec the diffusion can run."""
    try:
        return len(space_timesteps(diffusion_steps, str(spec)))
    except ValueError:
        return 0


class DemoService:
    """The demo's shared state: the pipelines in use, the job scheduler, downloads and the output folder."""

    def __init__(self, default_model: str = "shapes", device: str = "cpu", dtype: str = "float32",
                 checkpoint_dir: Optional[Path] = None, limits: Limits = Limits(), concurrency: int = 1,
                 queue_size: int = 64, out_dir: Optional[Path] = None, keep_outputs_s: float = 3600.0,
                 cuda_graphs: bool = False):
        if default_model not in FAMILIES:
            raise ValueError(f"unknown model {default_model!r}; available: {', '.join(FAMILIES)}")
        self.default_model = default_model
        self.device, self.dtype, self.cuda_graphs = device, dtype, cuda_graphs
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.limits = limits
        self.registry = samplers.get_registry()
        self.downloads = Downloads(self.checkpoint_dir)
        if out_dir is None:
            out_dir = tempfile.mkdtemp(prefix="glide-demo-")
            atexit.register(shutil.rmtree, out_dir, ignore_errors=True)  # ours alone: remove it on exit
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.keep_outputs_s = keep_outputs_s
        self._last_prune = 0.0
        self.scheduler = Scheduler({"generate": self._run_generate, "inpaint": self._run_inpaint,
                                    "compare": self._run_compare},
                                   workers=concurrency, max_batch=limits.max_batch, max_pending=queue_size)

    # ------------------------------------------------------------------ models
    def models(self) -> Dict[str, dict]:
        return model_rows(self.checkpoint_dir)

    def default_steps(self, model: str) -> int:
        return min(FAMILIES[model].default_base_steps, self.limits.max_steps)

    def require(self, model: str, components: Sequence[str]):
        """The pipeline of `model`, after checking that the components a request needs are on disk.

        Checked up front so that a request never starts a multi-gigabyte download in a worker.
        """
        rows = self.models()
        if model not in rows:
            raise InputError(f"unknown model {model!r}; choose one of: {', '.join(rows)}")
        missing = [c for c in components if not rows[model]["components"][c]["ready"]]
        if missing:
            if model in APPROX_BYTES:
                raise ModelNotAvailable(
                    f"{model} is not downloaded yet (missing: {', '.join(missing)}). Choose it under Model and "
                    f"click Download (≈{human_bytes(APPROX_BYTES[model])}), or use another model meanwhile.")
            raise ModelNotAvailable(f"the {model} model has no trained weights for {', '.join(missing)}; "
                                    "run `make train-default` to train them")
        return load_pipeline(model, device=self.device, dtype=self.dtype, checkpoint_dir=self.checkpoint_dir,
                             cuda_graphs=self.cuda_graphs)

    def warm_up(self, model: Optional[str] = None) -> None:
        """Load a family's models in the background, so the first request does not wait for them."""
        def load():
            try:
                pipe = self.require(model or self.default_model, ["base"])
                for component, info in self.models()[pipe.name]["components"].items():
                    if info["ready"]:
                        pipe.component(component)
                log.info("models of %s loaded on %s", pipe.name, self.device)
            except Exception as exc:  # noqa: BLE001 - the UI reports it again on the first request
                log.warning("could not preload %s: %s", model or self.default_model, exc)

        threading.Thread(target=load, name="warm-up", daemon=True).start()

    # ------------------------------------------------------------------ validation
    def _plugin_params(self, plugin, params: Optional[Dict]) -> Tuple:
        """Validated plugin parameters as sorted pairs (only the plugin's own; SamplerError if out of range)."""
        given = {k: v for k, v in (params or {}).items() if any(p.name == k for p in plugin.params)}
        return tuple(sorted(validate_params(plugin, given).items()))

    def _seed(self, seed) -> Optional[int]:
        if seed is None or (isinstance(seed, str) and not seed.strip()):
            return None
        seed = _number(seed, "seed", int, -1, MAX_SEED)
        return None if seed == -1 else seed

    def _prompt(self, prompt, what: str = "prompt") -> str:
        if not isinstance(prompt, str) or not prompt.strip():
            if what == "prompt":
                raise InputError("the prompt is empty: describe the image to make")
            return ""
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InputError(f"the {what} is too long ({len(prompt)} characters; at most {MAX_PROMPT_CHARS})")
        return prompt.strip()

    def _steps(self, steps, model: str) -> int:
        if steps is None or (isinstance(steps, str) and not steps.strip()):
            return self.default_steps(model)
        return _number(steps, "steps", int, MIN_STEPS, max(self.limits.max_steps, MIN_STEPS))

    def sample_request(self, prompt, *, model=None, seed=None, batch_size=1, negative_prompt="", sampler=None,
                       sampler_params=None, steps=None, guidance="classifier-free", guidance_params=None,
                       guidance_scale=None, upsample=True, upsample_sampler=None, upsample_steps=None,
                       upsample_temp=0.997) -> SampleRequest:
        """A checked SampleRequest from raw values (widgets or API); InputError / SamplerError if something is off.

        `guidance_scale`, when given, sets the strategy's `guidance_scale` parameter (if it has one).
        """
        model = model or self.default_model
        if model not in FAMILIES:
            raise InputError(f"unknown model {model!r}; choose one of: {', '.join(FAMILIES)}")
        family = FAMILIES[model]
        rule = self.registry.step_rule(sampler or family.default_sampler)
        strategy = self.registry.guidance_strategy(guidance or "classifier-free")
        guidance_params = dict(guidance_params or {})
        if guidance_scale is not None and any(p.name == "guidance_scale" for p in strategy.params):
            guidance_params["guidance_scale"] = _number(guidance_scale, "guidance_scale")
        try:
            upsample_rule = self.registry.step_rule(upsample_sampler or family.default_upsample_sampler)
        except samplers.SamplerError as exc:
            raise samplers.SamplerError(f"upsample_sampler: {exc}") from None
        upsample_steps = str(upsample_steps or family.default_upsample_steps).strip()
        if not MIN_STEPS <= step_count(upsample_steps) <= max(self.limits.max_steps, MIN_STEPS):
            raise InputError(f"upsample_steps must be a schedule like 'fast27' or a number of steps from {MIN_STEPS} to "
                             f"{self.limits.max_steps}, got {upsample_steps!r}")
        return SampleRequest(
            prompt=self._prompt(prompt), model=model, seed=self._seed(seed),
            batch_size=_number(batch_size if batch_size is not None else 1, "batch size", int, 1, self.limits.max_batch),
            negative_prompt=self._prompt(negative_prompt, "negative prompt"), sampler=rule.name,
            sampler_params=self._plugin_params(rule, sampler_params), steps=self._steps(steps, model),
            guidance=strategy.name, guidance_params=self._plugin_params(strategy, guidance_params),
            upsample=bool(upsample), upsample_sampler=upsample_rule.name, upsample_steps=upsample_steps,
            upsample_temp=_number(upsample_temp if upsample_temp is not None else 0.997, "upsample temperature",
                                  float, 0.01, 2.0))

    def compare_request(self, prompt, *, model=None, seed=None, sampler=None, steps=None, clip_scale=3.0,
                        cfg_scale=3.0, upsample=False, sweep="") -> CompareRequest:
        model = model or self.default_model
        if model not in FAMILIES:
            raise InputError(f"unknown model {model!r}; choose one of: {', '.join(FAMILIES)}")
        scales: List[float] = []
        if isinstance(sweep, str):
            sweep = [s for s in re.split(r"[,\s;]+", sweep.strip()) if s]
        for s in sweep or []:
            scales.append(_number(s, "sweep scale", float, 0.0, 50.0))
        if len(scales) > self.limits.max_sweep:
            raise InputError(f"a sweep takes at most {self.limits.max_sweep} scales, got {len(scales)}")
        clip, cfg = self.registry.guidance_strategy("clip"), self.registry.guidance_strategy("classifier-free")
        return CompareRequest(
            prompt=self._prompt(prompt), model=model, seed=self._seed(seed),
            sampler=self.registry.step_rule(sampler or FAMILIES[model].default_sampler).name,
            steps=self._steps(steps, model),
            clip_scale=dict(self._plugin_params(clip, {"guidance_scale": clip_scale}))["guidance_scale"],
            cfg_scale=dict(self._plugin_params(cfg, {"guidance_scale": cfg_scale}))["guidance_scale"],
            upsample=bool(upsample), sweep=tuple(scales))

    def inpaint_inputs(self, image, mask) -> Tuple[Image.Image, Image.Image]:
        """Uploaded image and mask (paths or PIL images) checked and aligned; InputError if unusable."""
        image = imaging.open_upload(image, "image", self.limits.max_image_side)
        if mask is None:
            raise InputError("give a mask: white (or painted) pixels mark the region to replace")
        mask = imaging.open_upload(mask, "mask", self.limits.max_image_side)
        return image, imaging.fit_mask(mask, image)

    # ------------------------------------------------------------------ submitting
    def _components(self, req, inpaint=False) -> List[str]:
        suffix = "-inpaint" if inpaint else ""
        needed = ["base" + suffix] + (["upsample" + suffix] if req.upsample else [])
        if getattr(req, "guidance", None) == "clip" or isinstance(req, CompareRequest):
            needed.append("clip")
        return needed

    def submit_generate(self, req: SampleRequest, session: Optional[str] = None, previews: bool = False) -> Job:
        self.require(req.model, self._components(req))
        return self.scheduler.submit(Job("generate", req, prompts=[req.prompt] * req.batch_size, seed=req.seed,
                                         batch_key=req.batch_key(), session=session, previews=previews))

    def submit_inpaint(self, req: SampleRequest, image, mask, session: Optional[str] = None,
                       previews: bool = False) -> Job:
        image, mask = self.inpaint_inputs(image, mask)
        self.require(req.model, self._components(req, inpaint=True))
        # Each edit has its own picture, so inpainting jobs never share a run.
        return self.scheduler.submit(Job("inpaint", (req, image, mask), prompts=[req.prompt] * req.batch_size,
                                         seed=req.seed, session=session, previews=previews))

    def submit_compare(self, req: CompareRequest, session: Optional[str] = None, previews: bool = False) -> Job:
        self.require(req.model, self._components(req))
        return self.scheduler.submit(Job("compare", req, prompts=[req.prompt], seed=req.seed, session=session,
                                         previews=previews))

    def cancel_session(self, session: str) -> int:
        return self.scheduler.cancel_session(session)

    # ------------------------------------------------------------------ running (worker threads)
    def _save(self, image: Image.Image, settings: Dict, tag: str) -> str:
        self._prune()
        path = self.out_dir / f"{time.time_ns()}-{settings.get('seed', 0)}-{tag}.png"
        return str(save_png(image, path, settings))

    def _prune(self):
        """Delete outputs older than keep_outputs_s (at most once a minute): a long-running server stays small."""
        now = time.time()
        if now - self._last_prune < 60:
            return
        self._last_prune = now
        for path in self.out_dir.glob("*.png"):
            try:
                if now - path.stat().st_mtime > self.keep_outputs_s:
                    path.unlink()
            except OSError:
                pass

    def _outputs(self, result, settings: List[Dict], sl: slice, upsample: bool, seconds: float) -> Output:
        finals = [self._save(im, s, "final" if upsample else "base")
                  for im, s in zip(result.images[sl], settings)]
        bases = ([self._save(im, s, "base") for im, s in zip(result.base_images[sl], settings)]
                 if upsample else list(finals))
        return Output(images=finals, base_images=bases, settings=settings, seconds=seconds)

    def _run_generate(self, batch: Batch, report, should_stop) -> List[Output]:
        req: SampleRequest = batch.jobs[0].payload   # the batch key makes every job's settings equal
        pipe = self.require(req.model, self._components(req))
        log.info("generate run: %d request(s), %d image(s), seeds %d..%d", len(batch.jobs), len(batch.prompts),
                 batch.seed, batch.seed + len(batch.prompts) - 1)
        result = pipe.generate(batch.prompts, seed=batch.seed, callback=report, should_stop=should_stop,
                               **req.pipeline_kwargs())
        outputs = []
        for job in batch.jobs:
            sl = slice(job.offset, job.offset + len(job.prompts))
            outputs.append(self._outputs(result, result.settings[sl], sl, req.upsample, result.seconds))
        return outputs

    def _run_inpaint(self, batch: Batch, report, should_stop) -> List[Output]:
        (req, image, mask), = [job.payload for job in batch.jobs]
        seed = batch.seed if batch.seed is not None else self.scheduler.random_seed()
        batch.jobs[0].seed = seed
        pipe = self.require(req.model, self._components(req, inpaint=True))
        result = pipe.inpaint(image, mask, batch.prompts, seed=seed, callback=report, should_stop=should_stop,
                              **req.pipeline_kwargs())
        out = self._outputs(result, result.settings, slice(None), req.upsample, result.seconds)
        size = result.images[0].width
        masked = result.masked_inputs[0].resize((size, size), Image.NEAREST)
        out.masked_input = self._save(masked, {"prompt": req.prompt, "note": "inpainting input, region greyed"},
                                      "masked")
        return [out]

    def _run_compare(self, batch: Batch, report, should_stop) -> List[CompareOutput]:
        req: CompareRequest = batch.jobs[0].payload
        seed = req.seed if req.seed is not None else self.scheduler.random_seed()
        batch.jobs[0].seed = seed
        pipe = self.require(req.model, self._components(req))
        strategies = [("clip", {"guidance_scale": req.clip_scale}),
                      ("classifier-free", {"guidance_scale": req.cfg_scale}), ("none", {})]
        sweep = [(name, {"guidance_scale": s}) for name in ("clip", "classifier-free") for s in req.sweep]
        plan = strategies + sweep
        current = {"index": -1}

        def progress(stage, step, total, x0):
            # compare() runs one generate per strategy; a new base stage starting means the next one.
            if stage == "base" and step == 0:
                current["index"] += 1
            name, params = plan[min(current["index"], len(plan) - 1)]
            label = f"{name}" + (f" ×{params['guidance_scale']:g}" if params else "")
            report(f"{label} ({current['index'] + 1}/{len(plan)}) {stage}", step, total, x0)

        entries = pipe.compare(req.prompt, plan, seed=seed, sampler=req.sampler, steps=req.steps,
                               upsample=req.upsample, callback=progress, should_stop=should_stop)
        rows = []
        for entry in entries[:len(strategies)]:
            scale = entry.guidance_params.get("guidance_scale")
            verdict = checker_verdict(entry.checker)
            caption = " · ".join(x for x in [
                STRATEGY_TITLES.get(entry.guidance, entry.guidance),
                f"scale {scale:g}" if scale is not None else "no scale",
                f"{entry.seconds:.1f} s",
                f"CLIP score {entry.clip_score:.3f}" if entry.clip_score is not None else "",
                f"checker {verdict}" if verdict else ""] if x)
            rows.append({"guidance": entry.guidance, "scale": scale, "seconds": round(entry.seconds, 3),
                         "clip_score": entry.clip_score, "checker": entry.checker, "verdict": verdict,
                         "caption": caption, "image": self._save(entry.image, entry.settings, entry.guidance)})
        grid = None
        if req.sweep:
            by_name = {}
            for (name, _), entry in zip(sweep, entries[len(strategies):]):
                by_name.setdefault(name, []).append(entry.image)
            grid_image = imaging.labelled_grid([(STRATEGY_TITLES[n], ims) for n, ims in by_name.items()],
                                               [f"scale {s:g}" for s in req.sweep])
            grid = self._save(grid_image, {"prompt": req.prompt, "seed": seed, "sweep": list(req.sweep),
                                           "model": req.model}, "sweep")
        return [CompareOutput(entries=rows, grid=grid, seed=seed)]


STRATEGY_TITLES = {"clip": "CLIP guidance", "classifier-free": "Classifier-free", "none": "Unguided"}


def checker_verdict(checker: Optional[Dict]) -> str:
    """The shapes checker's verdict in a few words: "✓ matches" or "✗ colour, position"."""
    if not checker:
        return ""
    if checker.get("all") is None:
        return "n/a (prompt outside the shapes grammar)"
    if checker["all"]:
        return "✓ matches the prompt"
    wrong = [k for k in ("background", "count") if not checker.get(k)]
    for shape in checker.get("shapes", []):
        wrong += [k for k, ok in shape.items() if not ok and k not in wrong]
    return "✗ wrong " + ", ".join(wrong)


def settings_summary(settings: Dict) -> str:
    """One line describing how an image was made (gallery captions)."""
    params = {**settings.get("sampler_params", {}), **settings.get("guidance_params", {})}
    extra = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))
    return f"seed {settings['seed']} · {settings['sampler']} {settings['steps']} steps · {settings['guidance']}" + (
        f" ({extra})" if extra else "")


def settings_json(settings: Dict) -> str:
    return json.dumps(settings, indent=2, sort_keys=True)
