"""What the demo does, without the UI: validate requests, queue them, run them on the pipeline, save PNGs.

The gradio layer (demo.app) turns widget values into requests with the `*_request` methods,
submits them, follows the returned Job and shows its result. Every user-facing problem is
raised as a glide.errors.UserError (InputError, SamplerError, ModelNotAvailable, QueueFull, ...),
each with a message that says what to fix; the UI shows those messages as they are.

Models are loaded once per (family, device, dtype) by glide.pipeline.load_pipeline and shared
by every user; the backend (glide.serving) decides what runs on the device and batches compatible requests.
"""
import atexit
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image

import samplers
from glide import comparison
from glide.errors import InputError, ModelNotAvailable
from glide.families import get_family
from glide.fileio import human_bytes
from glide.images import EditWindow
from glide.pipeline import load_pipeline
from glide.pngmeta import save_png
from glide.precision import choose_precision, resolve_device
from glide.serving.backend import Backend, BackendOptions, create_backend
from glide.serving.jobs import Compare, Generate, Inpaint, Job, Payload, Upsample
from glide.serving.results import Compared, Images
from glide.settings import ComparisonSettings, GenerationSettings, Limits

from . import imaging
from .models import APPROX_BYTES, Downloads, model_rows

log = logging.getLogger("glide.demo")

# After a drain, how long the handlers of the jobs it answered may take to answer their users (write PNGs).
ANSWER_S = 10.0
# A shared server's limits: small enough that one user cannot hold the device for long.
DEMO_LIMITS = Limits(max_batch=8, max_steps=250, max_image_side=4096, max_sweep=6)
GRID_TILE = 128   # px per image in a comparison's one-PNG grid (the shapes model's 32 px, scaled up sharp)
UPSAMPLE_STEP_CHOICES = ["8", "fast27", "ddim25", "50", "100"]


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
    """A comparison: its rows (glide.comparison.rows), each image's PNG row by row, and the whole as one PNG."""

    rows: List[comparison.Row]
    images: List[List[str]]           # per row, per seed: the image's PNG (carrying its settings)
    grid: str                         # the comparison as one PNG: rows, measures and legend
    seeds: List[int]


class DemoService:
    """The demo's shared state: the pipelines in use, the job scheduler, downloads and the output folder."""

    def __init__(self, default_model: str = "shapes", device: str = "auto", dtype: str = "auto",
                 checkpoint_dir: Optional[Path] = None, limits: Limits = DEMO_LIMITS, concurrency: int = 1,
                 queue_size: int = 64, out_dir: Optional[Path] = None, keep_outputs_s: float = 3600.0,
                 cuda_graphs: bool = False, backend: Optional[Backend] = None, max_per_user: int = 4,
                 images_per_minute: Optional[int] = None):
        """`backend` runs the jobs: None for the local one (worker threads in this process, `concurrency`
        of them, at most `max_per_user` waiting jobs and `images_per_minute` images a minute per user), or
        one `glide.serving.backend.create_backend` made (Ray Serve)."""
        self.default_model = get_family(default_model).name
        # "auto" resolved once here, so every pipeline, log line and the page's header agree.
        self.device = resolve_device(device, dtype)
        self.precision = choose_precision(dtype, self.device) if backend is None else None
        self.dtype = self.precision.dtype if self.precision else dtype
        self.cuda_graphs = cuda_graphs
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.limits = limits
        self.registry = samplers.get_registry()
        self.downloads = Downloads(self.checkpoint_dir)
        if out_dir is None:
            out_dir = tempfile.mkdtemp(prefix="glide-demo-")
            atexit.register(shutil.rmtree, out_dir, ignore_errors=True)  # ours alone: remove it on exit
        else:
            atexit.register(self._remove_partial_files)
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.keep_outputs_s = keep_outputs_s
        self._last_prune = 0.0
        self._jobs: List[Job] = []   # submitted, not yet answered by their handlers (shutdown waits for them)
        self._jobs_lock = threading.Lock()
        self.backend = backend or create_backend(BackendOptions(
            device=str(self.device), dtype=self.precision, checkpoint_dir=self.checkpoint_dir, cuda_graphs=cuda_graphs,
            workers=concurrency, max_batch=limits.max_batch, max_pending=queue_size, max_per_user=max_per_user,
            images_per_minute=images_per_minute))

    # ------------------------------------------------------------------ models
    def hardware(self) -> str:
        """Where and in what precision the images are computed, for the page's header."""
        if self.precision is None:
            return f"Computed on Ray Serve replicas; each picks its own device and precision (asked: {self.dtype})."
        return f"Computed on {self.device} in {self.precision.describe()}."

    def models(self) -> Dict[str, dict]:
        return model_rows(self.checkpoint_dir)

    def default_steps(self, model: str) -> int:
        return GenerationSettings.create("defaults", model=model, seed=0, limits=self.limits).steps

    def require(self, model: str, components: Sequence[str]):
        """The pipeline of `model` (its models load on first use, so only where it runs), after checking that
        the components a request needs are on disk.

        Checked up front so that a request never starts a multi-gigabyte download in a worker.
        """
        on_disk = self.models()[model]["components"]  # a plugin's own components are its business, not files here
        missing = [c for c in components if c in on_disk and not on_disk[c]["ready"]]
        if missing:
            if model in APPROX_BYTES:
                raise ModelNotAvailable(
                    f"{model} is not downloaded yet (missing: {', '.join(missing)}). Choose it under Model and "
                    f"click Download (≈{human_bytes(APPROX_BYTES[model])}), or use another model meanwhile.")
            raise ModelNotAvailable(f"the {model} model has no trained weights for {', '.join(missing)}; "
                                    "run `make train-default` to train them")
        return self._pipeline(model)

    def warm_up(self, model: Optional[str] = None) -> None:
        """Load a family's models in the background (in int8, also their first runs: Pipeline.warm_up), so the
        first request does not wait for them."""
        def load():
            try:
                pipe = self.require(model or self.default_model, ["base"])
                pipe.warm_up([component for component, info in self.models()[pipe.name]["components"].items()
                              if info["ready"]])
                log.info("models of %s loaded on %s", pipe.name, self.device)
            except Exception as exc:  # noqa: BLE001 - the UI reports it again on the first request
                log.warning("could not preload %s: %s", model or self.default_model, exc)

        threading.Thread(target=load, name="warm-up", daemon=True).start()

    # ------------------------------------------------------------------ requests (validated by glide.settings)
    def sample_request(self, prompt, mode: str = "generate", **settings) -> GenerationSettings:
        """GenerationSettings from raw widget or API values (glide.declarations' settings, None where not given),
        within this server's limits, on its default model unless another is named (a UserError if off)."""
        model = settings.pop("model", None)
        return GenerationSettings.create(prompt, mode=mode, model=model or self.default_model, limits=self.limits,
                                         **settings)

    def compare_request(self, prompt, *, model=None, seed=None, seeds=None, sampler=None, steps=None,
                        clip_scale=None, cfg_scale=None, upsample=False, sweep="",
                        strategies=None) -> ComparisonSettings:
        """ComparisonSettings: `seeds` how many (from `seed`) every strategy runs over; `strategies` any
        installed ones (default CLIP, classifier-free, none); the CLIP and classifier-free scales from their
        own inputs."""
        return ComparisonSettings.create(
            prompt, model=model or self.default_model, seed=seed, seeds=seeds, sampler=sampler, steps=steps,
            strategies=strategies or None, scales={"clip": clip_scale, "classifier-free": cfg_scale},
            sweep=sweep, upsample=upsample, limits=self.limits)

    def inpaint_inputs(self, image, mask) -> Tuple[Image.Image, Image.Image]:
        """Uploaded image and mask (paths or PIL images) checked, before anything is queued; InputError if
        unusable. A mask of another size is the pipeline's to resize (glide.images.EditWindow)."""
        image = self.open_image(image, "image")
        if mask is None:
            raise InputError("give a mask: white (or painted) pixels mark the region to replace")
        mask = self.open_image(mask, "mask")
        EditWindow.of(image, mask)
        return image, mask

    # ------------------------------------------------------------------ submitting
    def _submit(self, payload: Payload, session, user, previews) -> Job:
        job = Job(payload, session=session, user=user, previews=previews)
        job.convert = self._compare_output if isinstance(payload, Compare) else self._images_output
        self.backend.submit(job)
        with self._jobs_lock:
            self._jobs = [j for j in self._jobs if not j.answered.is_set()] + [job]
        return job

    # `session`: the browser tab or API client (what Stop cancels); `user`: whom the request counts against
    # (demo.users.user_of; None: the session).
    def open_image(self, upload, what: str) -> Image.Image:
        """An uploaded image (a path or a PIL image) checked against this server's limits; InputError if unusable."""
        return imaging.open_upload(upload, what, self.limits.max_image_side)

    def submit_generate(self, settings: GenerationSettings, init_image: Optional[Image.Image] = None,
                        session: Optional[str] = None, user: Optional[str] = None, previews: bool = False) -> Job:
        self.require(settings.model, settings.components())
        return self._submit(Generate(settings, init_image), session, user, previews)

    def submit_inpaint(self, settings: GenerationSettings, image, mask, session: Optional[str] = None,
                       user: Optional[str] = None, previews: bool = False) -> Job:
        settings = replace(settings, mode="inpaint")  # the same settings, run on the inpainting models
        image, mask = self.inpaint_inputs(image, mask)
        self.require(settings.model, settings.components())
        return self._submit(Inpaint(settings, image, mask), session, user, previews)

    def submit_upsample(self, settings: GenerationSettings, images: Sequence, session: Optional[str] = None,
                        user: Optional[str] = None, previews: bool = False) -> Job:
        """The upsampler alone on `images` (uploads: paths or PIL images), one per prompt of `settings`; each is
        centre-cropped and resized to the base size, and comes back `upsample_size / base_size` times larger."""
        settings = replace(settings, mode="upsample")
        opened = tuple(self.open_image(image, "image") for image in images if image is not None)
        if not opened:
            raise InputError("give an image to upscale")
        if len(opened) != len(settings):
            raise InputError(f"give one prompt per image: got {len(opened)} image(s) and {len(settings)} prompt(s)")
        self.require(settings.model, settings.components())
        return self._submit(Upsample(settings, opened), session, user, previews)

    def submit_compare(self, compared: ComparisonSettings, session: Optional[str] = None,
                       user: Optional[str] = None, previews: bool = False) -> Job:
        self.require(compared.base.model, compared.components())
        return self._submit(Compare(compared), session, user, previews)

    def cancel_session(self, session: str) -> int:
        return self.backend.cancel_session(session)

    def shutdown(self, grace_s: float, answer_s: float = ANSWER_S) -> None:
        """Stop taking requests; running ones get `grace_s` seconds to finish, the rest are told the server is
        restarting. Returns once the handlers waiting on those jobs have answered their users (and written
        their PNGs), or `answer_s` seconds after the drain, with no partial file left."""
        self.backend.drain(grace_s)
        deadline = time.monotonic() + answer_s
        with self._jobs_lock:
            unanswered = [job for job in self._jobs if not job.answered.is_set()]
        for job in unanswered:
            if not job.answered.wait(max(0.0, deadline - time.monotonic())):
                log.warning("shutting down with %d request(s) whose users were not answered within %g s",
                            sum(not j.answered.is_set() for j in unanswered), answer_s)
                break
        self._remove_partial_files()

    def _remove_partial_files(self) -> None:
        """Temporary files of writes cut short (a thread stopped mid-save at exit): never a result."""
        for path in self.out_dir.glob(".*.tmp"):
            path.unlink(missing_ok=True)

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

    def _pipeline(self, model: str):
        return load_pipeline(model, device=self.device, dtype=self.precision or self.dtype,
                             checkpoint_dir=self.checkpoint_dir, cuda_graphs=self.cuda_graphs)

    def _images_output(self, made: Images) -> Output:
        """A request's images as PNGs in the outputs folder (once, in the front end's process)."""
        upsampled = made.settings[0].get("upsample", True)
        finals = [self._save(im, s, "final" if upsampled else "base") for im, s in zip(made.images, made.settings)]
        bases = ([self._save(im, s, "base") for im, s in zip(made.base_images, made.settings)]
                 if upsampled else list(finals))
        out = Output(images=finals, base_images=bases, settings=made.settings, seconds=made.seconds)
        if made.masked_input is not None:
            out.masked_input = self._save(made.masked_input, {"prompt": made.settings[0]["prompt"],
                                                              "note": "inpainting input, region greyed"}, "masked")
        return out

    def _compare_output(self, made: Compared) -> CompareOutput:
        compared = made.compared
        rows = comparison.rows(made.entries)
        images = [[self._save(e.image, e.settings, e.guidance) for e in row.entries] for row in rows]
        heading = (f"{compared.prompt} | {compared.base.model}, {compared.base.sampler} {compared.base.steps} steps, "
                   f"the same {len(compared.seeds)} seeds in every row")
        grid = self._save(comparison.grid(rows, heading, tile=GRID_TILE), {**compared.describe(), "note": "comparison"},
                          "compare")
        return CompareOutput(rows=rows, images=images, grid=grid, seeds=list(compared.seeds))


def settings_summary(settings: Dict) -> str:
    """One line describing how an image was made (gallery captions)."""
    if settings.get("mode") == "upsample":   # the upsampler alone: its own settings
        return (f"seed {settings['seed']} · upsampled: {settings['upsample_sampler']} "
                f"{settings['upsample_steps']} steps")
    params = {**settings.get("sampler_params", {}), **settings.get("guidance_params", {})}
    extra = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))
    return f"seed {settings['seed']} · {settings['sampler']} {settings['steps']} steps · {settings['guidance']}" + (
        f" ({extra})" if extra else "")
