"""End-to-end text-to-image, inpainting and guidance comparison for one loaded model family.

    from glide.pipeline import load_pipeline
    pipe = load_pipeline("shapes", device="cpu")
    res = pipe.generate(["a small red circle on the left on a blue background"], sampler="ddim", steps=50,
                        guidance="classifier-free", guidance_scale=3.0, seed=0, upsample=True)
    res = pipe("a small red circle on the left on a blue background", seed=[3, 9])   # as generate
    res.images, res.base_images, res.settings

Each public method takes either the keyword arguments above or a `glide.settings.GenerationSettings`
(the keywords build one: every default and bound is defined there). The pipeline owns the
family's models (loaded lazily, once, on one device and dtype), encodes the text once per run,
composes a step rule and a guidance strategy from the sampler plugins, and returns PIL images with
the exact settings that made them. Image i uses seeds[i] (an int seed s means s, s+1, ...), so any
image regenerates alone from its settings: exactly when it was made alone, and to within one 8-bit
level when it came from a larger batch in float32 (the math libraries sum in a batch-size-dependent
order; in bfloat16 within a few levels). Device and dtype default to "auto" (`glide.precision`).
"""
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch

import samplers

from .cuda_graphs import GraphedModel
from .declarations import takes_settings
from .deep_cache import with_deep_cache
from .errors import UserError
from .families import COMPONENTS, Family, channels_last_on_cpu, get_family
from .images import (
    EditWindow,
    ImageLike,
    InputError,
    image_digest,
    image_to_tensor,
    mask_to_keep,
    masked_preview,
    quantize,
    tensor_to_pil,
)
from .int8 import OpenVINOUNet, openvino_unet
from .precision import DTYPES, INT8, Precision, choose_precision, resolve_device
from .settings import ComparisonSettings, GenerationSettings

UPSAMPLE_SEED_OFFSET = 1_000_003  # the upsampler's noise stream, distinct from the base's

# callback(stage, step, total, x0_preview) with stage "base" or "upsample"
ProgressCallback = Callable[[str, int, int, torch.Tensor], None]


@dataclass
class Result:
    """Images of one call, and for each image the settings that regenerate it."""

    # Final PIL images (upsampled when asked); inpainting: the whole picture at its size, the edit put back.
    images: List = field(default_factory=list)
    # The base model's PIL images; inpainting: of the square the model worked on (glide.images.EditWindow).
    base_images: List = field(default_factory=list)
    settings: List[Dict] = field(default_factory=list)
    # Inpainting: that square as the base model saw it, the region to replace greyed.
    masked_inputs: List = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Comparison:
    """One image of a comparison: a guidance strategy's sample at one seed. `seconds` is its share of its
    batch's wall time."""

    guidance: str
    guidance_params: Dict
    image: object
    base_image: object
    seconds: float
    clip_score: Optional[float]
    checker: Optional[Dict]
    settings: Dict

    @property
    def seed(self) -> int:
        return self.settings["seed"]


class Pipeline:
    """A loaded model family on one device and dtype (see the module docstring).

    `device` "auto" is cuda, then mps, then cpu; `dtype` "auto" is the precision that measures fastest
    on this machine without losing quality (`glide.precision`): `self.precision` says which and why.
    In a half precision the diffusion models' weights are converted once, in the reference's fp16
    layout (norms, timestep embedding and output layer in float32); the samplers, the guidance and the
    noised CLIP stay in float32. `dtype` "int8" (CPU only) runs the U-Nets W8A8 through OpenVINO
    (`glide.int8`: converted and calibrated on first use, then cached on disk), the text encoder in float32.
    """

    def __init__(self, family: Family, device="auto", dtype: Union[str, Precision] = "auto",
                 checkpoint_dir: Optional[Path] = None, cuda_graphs: bool = False):
        self.family = family
        self.name = family.name
        self.device = resolve_device(device, dtype.dtype if isinstance(dtype, Precision) else dtype)
        if cuda_graphs and self.device.type != "cuda":
            raise UserError(f"cuda_graphs needs a CUDA device, got {self.device}")
        self.precision = dtype if isinstance(dtype, Precision) else choose_precision(dtype, self.device)
        self.dtype = self.precision.dtype
        self.checkpoint_dir = checkpoint_dir
        self.cuda_graphs = cuda_graphs
        self._components: Dict[str, object] = {}
        self._graphed: Dict[str, GraphedModel] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ models
    def component(self, name: str):
        """(model, diffusion) for a diffusion component, the CLIP model, or a component a sampler plugin
        provides (`glide_components`); loaded on first use, then kept."""
        with self._lock:
            if name not in self._components:
                if name in COMPONENTS:
                    shadowed = samplers.get_registry().component_plugins.get(name)
                    if shadowed:
                        warnings.warn(f"sampler plugin {shadowed!r} provides a component named {name!r}, like the "
                                      f"family's own; the {self.name} family's is used", samplers.PluginWarning,
                                      stacklevel=2)
                    loaded = self.family.load(name, self.device, self.checkpoint_dir)
                    if name != "clip" and self.dtype == INT8:
                        calibrating = lambda: Pipeline(self.family, "cpu", "float32", self.checkpoint_dir)
                        loaded = (openvino_unet(self.family, name, *loaded, self.checkpoint_dir, calibrating),
                                  loaded[1])
                    elif name != "clip":
                        # Converted before the layout change, so a mapped checkpoint's weights are read once,
                        # straight into the half precision (channels-last copies the converted weights).
                        if self.dtype != "float32":
                            loaded[0].convert_to_half(DTYPES[self.dtype])
                        channels_last_on_cpu(loaded[0], self.device)
                    self._components[name] = loaded
                else:
                    provided = samplers.get_registry().components
                    if name not in provided:
                        raise samplers.SamplerError(
                            f"no component {name!r}: the {self.name} family has {', '.join(COMPONENTS)}; plugins "
                            f"provide {', '.join(provided) or 'none'}")
                    self._components[name] = provided[name](samplers.ComponentRequest(
                        family=self.name, device=self.device, dtype=self.dtype, checkpoint_dir=self.checkpoint_dir,
                        image_size=self.family.base_size))
            return self._components[name]

    def warm_up(self, names: Sequence[str]) -> None:
        """Load the named components; in int8, also run each U-Net once at the batch sizes a one-image request
        gives it (the base 1 and 2, guided or not; the upsampler 1): OpenVINO creates a model's kernels at its
        first run at each input shape, about 5 s in all for GLIDE's, which the first request would wait for."""
        for name in names:
            model = self.component(name)[0]
            if isinstance(model, OpenVINOUNet):
                model.warm_up((1,) if name.startswith("upsample") else (1, 2))

    def _required(self, guidance: str) -> Dict[str, object]:
        """The components a guidance strategy `requires`, loaded."""
        registry = samplers.get_registry()
        return {name: self.component(name) for name in registry.requires_of(registry.guidance_strategy(guidance))}

    def _sampling_model(self, name: str, model, deep_cache: int = 0):
        """The model as one run's sampling loop calls it: with `deep_cache` N >= 2, DeepCache's every-N-steps
        full forward (state of this run only); else with `cuda_graphs`, its forward passes replayed from
        CUDA graphs kept per component, so a shape captured once serves every later run. DeepCache runs
        eagerly: its shallow steps take a feature from outside the call, which a graph cannot."""
        if deep_cache >= 2:
            return with_deep_cache(model, deep_cache)
        if not self.cuda_graphs:
            return model
        with self._lock:
            if name not in self._graphed:
                self._graphed[name] = GraphedModel(model)
            return self._graphed[name]

    def _text_kwargs(self, model, prompts: List[str], negative_prompt: str):
        """Model kwargs for the prompts and for the negative (or empty) prompt, text encoded once."""
        tok = model.tokenizer

        def encode(texts):
            pairs = [tok.padded_tokens_and_mask(tok.encode(t), model.text_ctx) for t in texts]
            tokens = torch.tensor([p[0] for p in pairs], device=self.device)
            mask = torch.tensor([p[1] for p in pairs], dtype=torch.bool, device=self.device)
            with torch.no_grad():
                return {"text_emb": model.encode_text(tokens, mask)}

        return encode(prompts), encode([negative_prompt] * len(prompts))

    # ------------------------------------------------------------------ stages
    def _sample_stage(self, stage: str, component: str, settings: GenerationSettings, *, steps, sampler,
                      sampler_params, guidance, guidance_params, seeds, deep_cache, extra_kwargs=None, inpaint=None,
                      temperature=1.0, start=None, callback=None, should_stop=None):
        """One diffusion stage of `settings`' images on `component`: text encoded once, then the sampler
        plugins. With `inpaint` (keep, known) the known region is pasted into every x0 prediction; with `start`
        (images [N, 3, S, S]) the run starts from them at `settings.strength`."""
        model, diffusion = self.component(component)
        size = self.family.upsample_size if stage == "upsample" else self.family.base_size
        prompts = list(settings.prompts)
        components = self._required(guidance)
        cond, uncond = self._text_kwargs(model, prompts, settings.negative_prompt)
        for kwargs in (cond, uncond):
            kwargs.update(extra_kwargs or {})
        denoised_fn = None
        if inpaint is not None:
            keep, known = inpaint

            # Paste the known region into every x0 prediction (the reference inpainting notebook).
            def denoised_fn(x0):
                return x0 * (1 - keep) + known * keep
        out = samplers.sample(
            self._sampling_model(component, model, deep_cache), diffusion, (len(prompts), 3, size, size), steps=steps,
            prompts=prompts, cond_kwargs=cond, uncond_kwargs=uncond, sampler=sampler, sampler_params=sampler_params,
            guidance=guidance, guidance_params=guidance_params, components=components, seeds=seeds,
            denoised_fn=denoised_fn, temperature=temperature, init_image=start,
            strength=settings.strength if start is not None else 1.0,
            callback=(lambda i, n, x0: callback(stage, i, n, x0)) if callback else None, should_stop=should_stop)
        return out.float().clamp(-1, 1)

    def _inpaint_tensors(self, inpaint, size: int, n: int):
        """(keep, known) at `size` for n images from a square (image, edit mask): keep [n, 1, S, S] (1 = keep),
        the input image [n, 3, S, S]."""
        image, mask = inpaint
        known = image_to_tensor(image, size).to(self.device).expand(n, -1, -1, -1)
        keep = mask_to_keep(mask, size).to(self.device).expand(n, -1, -1, -1)
        return keep, known

    def base_stage(self, settings: GenerationSettings, *, inpaint=None, init_image=None,
                   callback: Optional[ProgressCallback] = None,
                   should_stop: Optional[Callable[[], bool]] = None) -> torch.Tensor:
        """The base model with the settings' step rule and guidance: images [N, 3, base, base] in [-1, 1].
        With `inpaint` (image, mask), the base inpainting model fills the mask and keeps the rest. A strength
        below 1 starts from `init_image`, or when inpainting from the image itself (its strokes in the mask)."""
        extra, tensors, start = {}, None, None
        if inpaint:
            tensors = self._inpaint_tensors(inpaint, self.family.base_size, len(settings))
            extra = {"inpaint_image": tensors[1], "inpaint_mask": tensors[0]}
        if settings.strength < 1:
            start = tensors[1] if inpaint else image_to_tensor(init_image, self.family.base_size).to(self.device)
        return self._sample_stage(
            "base", "base-inpaint" if inpaint else "base", settings, steps=settings.steps, sampler=settings.sampler,
            sampler_params=settings.sampler_params, guidance=settings.guidance,
            guidance_params=settings.guidance_params, seeds=list(settings.seeds), deep_cache=settings.deep_cache,
            extra_kwargs=extra, inpaint=tensors, start=start, callback=callback, should_stop=should_stop)

    def upsample_stage(self, settings: GenerationSettings, low_res: torch.Tensor, *, inpaint=None,
                       callback: Optional[ProgressCallback] = None,
                       should_stop: Optional[Callable[[], bool]] = None) -> torch.Tensor:
        """The upsampler, unguided, on `low_res` [N, 3, base, base] at 8-bit levels; image i on its own noise
        stream from seeds[i]. With `inpaint` (image, mask) the kept region is pasted in as in the base stage."""
        extra, tensors = {"low_res": low_res}, None
        if inpaint:
            tensors = self._inpaint_tensors(inpaint, self.family.upsample_size, len(settings))
            extra.update(inpaint_image=tensors[1], inpaint_mask=tensors[0])
        return self._sample_stage(
            "upsample", "upsample-inpaint" if inpaint else "upsample", settings, steps=settings.upsample_steps,
            sampler=settings.upsample_sampler, sampler_params=None, guidance="none", guidance_params=None,
            seeds=[s + UPSAMPLE_SEED_OFFSET for s in settings.seeds], deep_cache=settings.upsample_deep_cache,
            extra_kwargs=extra, inpaint=tensors,
            temperature=settings.upsample_temp, callback=callback, should_stop=should_stop)

    def run(self, settings: GenerationSettings, *, images=None, inpaint=None, init_image=None,
            callback: Optional[ProgressCallback] = None, should_stop: Optional[Callable[[], bool]] = None) -> Result:
        """Make the images `settings` describe: the one entry point behind generate, inpaint and upsample.

        `inpaint` is (image, mask) for mode "inpaint"; `images` the low-resolution inputs for mode "upsample";
        `init_image` the image a generation starts from, the one whose digest the settings record.
        """
        if not isinstance(settings, GenerationSettings):
            raise TypeError(f"run() takes a GenerationSettings, got {type(settings).__name__}")
        if settings.model != self.name:
            raise UserError(f"these settings are for the {settings.model} model, but this pipeline runs {self.name}")
        if (settings.mode == "inpaint") != (inpaint is not None) or (settings.mode == "upsample") != (images is not None):
            raise UserError(f"settings of mode {settings.mode!r} need "
                            + {"inpaint": "an image and a mask", "upsample": "images to upsample"}.get(
                                settings.mode, "no input images"))
        window = None
        if inpaint is not None:   # the models work on a square of the picture; the result is the whole picture
            window = EditWindow.of(*inpaint)
            inpaint = window.square()
        if settings.init_image is None and init_image is not None:
            raise UserError("a starting image was given but these settings have no init_image: give it to "
                            "the settings (their digest records it)")
        if settings.init_image is not None and (init_image is None or image_digest(init_image) != settings.init_image):
            raise UserError(f"these settings start from the image {settings.init_image[:19]}…: pass that image as "
                            "init_image" + ("" if init_image is None else " (the one given is another)"))
        start = time.time()
        # Each image records what computed it too: the same settings on other hardware or in another
        # precision make a close image, not always the identical one.
        computed_by = {"device": str(self.device), "dtype": self.dtype}
        result = Result(settings=[{**s, **computed_by} for s in settings.per_image()])
        if settings.mode == "upsample":
            base = torch.cat([image_to_tensor(image, self.family.base_size) for image in images]).to(self.device)
            final = self.upsample_stage(settings, base, callback=callback, should_stop=should_stop)
        else:
            base = self.base_stage(settings, inpaint=inpaint, init_image=init_image, callback=callback,
                                   should_stop=should_stop)
            final = base
            if settings.upsample:
                final = self.upsample_stage(settings, quantize(base), inpaint=inpaint, callback=callback,
                                            should_stop=should_stop)
            if inpaint:
                keep, known = self._inpaint_tensors(inpaint, self.family.base_size, len(settings))
                result.masked_inputs = masked_preview(known, keep)
        result.images, result.base_images = tensor_to_pil(final), tensor_to_pil(base)
        if window is not None:
            result.images = [window.put_back(image) for image in result.images]
        result.seconds = time.time() - start
        return result

    def settings(self, prompts, **kwargs) -> GenerationSettings:
        """GenerationSettings for this pipeline's model from generate's keyword arguments."""
        return GenerationSettings.create(prompts, model=self.name, **kwargs)

    # ------------------------------------------------------------------ public API
    @takes_settings("generate", after=("callback", "should_stop"))
    def generate(self, prompts: Union[str, Sequence[str], GenerationSettings], *,
                 callback: Optional[ProgressCallback] = None, should_stop: Optional[Callable[[], bool]] = None,
                 **settings) -> Result:
        """Text to image: base model with the chosen rule and guidance, then (optionally) the upsampler.

        `prompts` is a prompt, a list of them, or a complete GenerationSettings (then no settings keywords).
        The keywords are the settings of glide.declarations (`glide generate --help` describes each), checked
        by GenerationSettings.create: not given (None) is the family's default — for glide-filtered DDIM 100
        and the notebook's upsampler DDPM "fast27"; for shapes DPM-Solver++(2M) 10 steps and upsampler DDIM 8 —
        classifier-free guidance at scale 3, random seeds (each image's PNG settings record its seed).
        `init_image` (a PIL image or array) with `strength` s < 1 is image-to-image: the run starts from that
        image noised to an intermediate time and takes max(1, round(s * steps)) steps.
        `seed=s` gives image i the seed s + i; a list gives each image its own. `preset="fast"` fills what is
        not given with glide.settings.PRESETS["fast"]. `callback(stage, step, total, x0_preview)` reports
        progress; `should_stop()` returning true cancels the run.
        """
        init_image = settings.get("init_image")
        chosen = self._given(prompts, "generate", settings)
        return self.run(chosen, init_image=init_image, callback=callback, should_stop=should_stop)

    __call__ = generate  # pipe("a prompt", **kw), as diffusers' pipelines are called

    def upsample(self, images: Union[ImageLike, Sequence[ImageLike]],
                 prompts: Union[str, Sequence[str], GenerationSettings], *, sampler: Optional[str] = None,
                 steps: Union[int, str, None] = None, seed: Union[int, Sequence[int], None] = None,
                 upsample_temp: Optional[float] = None, deep_cache: Optional[int] = None,
                 callback: Optional[ProgressCallback] = None,
                 should_stop: Optional[Callable[[], bool]] = None) -> Result:
        """Super-resolve given images (any size; centre-cropped and resized to the base size) with the upsampler.

        The second stage of `generate` on images you supply: one prompt per image (or one for all),
        unguided; `sampler`, `steps` and `deep_cache` are the upsampler's (upsample_sampler, upsample_steps,
        upsample_deep_cache; defaults: the family's upsampler settings). `base_images` of the result are the
        inputs as the upsampler saw them. Given `generate`'s base images, prompts and seed, it reproduces
        `generate`'s upsampled images.
        """
        images = [images] if not isinstance(images, (list, tuple)) else list(images)
        if not images or any(image is None for image in images):
            raise InputError("give an image to upsample")
        if not isinstance(prompts, GenerationSettings):
            prompts = [prompts] if isinstance(prompts, str) else list(prompts)
            if len(prompts) == 1:
                prompts = prompts * len(images)
        given = dict(upsample_sampler=sampler, upsample_steps=steps, seed=seed, upsample_temp=upsample_temp,
                     upsample_deep_cache=deep_cache)
        settings = self._given(prompts, "upsample", {k: v for k, v in given.items() if v is not None})
        if len(settings) != len(images):
            raise InputError(f"give one prompt per image, or one for all; got {len(images)} images and "
                             f"{len(settings)} prompts")
        return self.run(settings, images=images, callback=callback, should_stop=should_stop)

    @takes_settings("inpaint", after=("callback", "should_stop"))
    def inpaint(self, image: ImageLike, mask: ImageLike, prompts: Union[str, Sequence[str], GenerationSettings], *,
                callback: Optional[ProgressCallback] = None, should_stop: Optional[Callable[[], bool]] = None,
                **settings) -> Result:
        """Replace the masked region of an image of any size and shape to match the prompt.

        The mask is white = edit (an RGBA mask: opaque = edit), resized to the image when its size differs.
        The models work on a square of the image around the mask (glide.images.EditWindow); `images` are the
        whole image at its size (enlarged a whole number of times where the upsampler made that many more pixels
        than the square has) with the edit put back where the mask is, `base_images` and `masked_inputs`
        that square at the base resolution. Takes generate's settings keywords. The model sees the kept region
        at every step (the known region is pasted into each x0 prediction, as the reference notebook does) and
        fills the rest.
        """
        chosen = self._given(prompts, "inpaint", settings)
        if image is None:
            raise InputError("give an image to edit")
        if mask is None:
            raise InputError("give a mask: paint the region to replace")
        return self.run(chosen, inpaint=(image, mask), callback=callback, should_stop=should_stop)

    def _given(self, prompts, mode: str, settings: Dict) -> GenerationSettings:
        """A GenerationSettings passed in (no settings keywords then), or one built from the keywords for this
        pipeline's model."""
        if isinstance(prompts, GenerationSettings):
            if settings:
                raise TypeError(f"give either a GenerationSettings or settings keywords, not both ({sorted(settings)})")
            if prompts.mode != mode:
                raise UserError(f"these settings are for {prompts.mode}, not {mode}")
            return prompts
        model = settings.pop("model", None)
        if model is not None and get_family(model).name != self.name:
            raise UserError(f"this pipeline runs the {self.name} model, not {model}: load_pipeline({model!r})")
        return GenerationSettings.create(prompts, model=self.name, mode=mode, **settings)

    def compare(self, prompt: Union[str, ComparisonSettings], strategies: Optional[Sequence] = None, *,
                seed: Optional[int] = None, seeds: Optional[int] = None, sampler: Optional[str] = None,
                steps: Union[int, str, None] = None, upsample: bool = False, sweep: Sequence[float] = (),
                callback: Optional[ProgressCallback] = None,
                should_stop: Optional[Callable[[], bool]] = None) -> List[Comparison]:
        """One prompt under several guidance strategies over the same seeds: per image its strategy, scale,
        seed, time and scores (glide.comparison.rows groups them into a row per run).

        `strategies` is a list of names or (name, params) pairs, any installed strategy; by default CLIP
        guidance, classifier-free and unguided. `seeds` is how many seeds (from `seed`) each runs over, as one
        batch. `sweep` adds each strategy with a declared scale at every given scale. Or pass a complete
        ComparisonSettings as `prompt`. Scores: the noised CLIP's similarity at t=0 and, on families that have
        one, the prompt checker's per-attribute verdict.
        """
        if isinstance(prompt, ComparisonSettings):
            comparison = prompt
        else:
            comparison = ComparisonSettings.create(prompt, model=self.name, seed=seed, seeds=seeds, sampler=sampler,
                                                   steps=steps, strategies=strategies, sweep=sweep, upsample=upsample)
        if comparison.base.model != self.name:
            raise UserError(f"this comparison is for the {comparison.base.model} model, not {self.name}")
        entries = []
        for name, params in comparison.runs():
            result = self.run(comparison.generation(name, params), callback=callback, should_stop=should_stop)
            for image, base_image, settings in zip(result.images, result.base_images, result.settings):
                entries.append(Comparison(
                    guidance=name, guidance_params=settings["guidance_params"], image=image, base_image=base_image,
                    seconds=result.seconds / len(result.images),
                    clip_score=self.clip_score(base_image, comparison.prompt),
                    checker=self.check(base_image, comparison.prompt), settings=settings))
        return entries

    def on_disk(self, component: str) -> bool:
        """Whether a family component's files are all present (loading it then downloads nothing)."""
        paths = self.family.files(self.checkpoint_dir).get(component)
        paths = paths if isinstance(paths, list) else [paths]
        return all(path is not None and Path(path).exists() for path in paths)

    def clip_score(self, image, prompt: str) -> Optional[float]:
        """The noised CLIP's cosine similarity between a base-size image and the prompt at t=0; None when the
        family's CLIP is not on disk (a score is never worth a download: only a request that needs CLIP
        fetches it, through the front end's up-front check)."""
        if not self.on_disk("clip"):
            return None
        clip = self.component("clip")
        x = image_to_tensor(image, self.family.base_size).to(self.device)
        return float(clip.similarity(x, torch.zeros(1, dtype=torch.long, device=self.device), [prompt])[0])

    def check(self, image, prompt: str) -> Optional[Dict]:
        """The shapes checker's verdict on an image for a prompt of the grammar (None for other families)."""
        if not self.family.has_checker:
            return None
        from .data import shapes

        scene = shapes.parse_caption(prompt)
        if scene is None:
            return {"all": None, "note": "prompt is outside the shapes grammar; cannot judge"}
        return shapes.matches(image, scene)


_PIPELINES: Dict[tuple, Pipeline] = {}
_PIPELINES_LOCK = threading.Lock()


def load_pipeline(name: str = "shapes", device: Union[str, torch.device] = "auto", dtype: Union[str, Precision] = "auto",
                  checkpoint_dir: Optional[Union[str, Path]] = None, cuda_graphs: bool = False) -> Pipeline:
    """The pipeline of a model family ("shapes" or "glide-filtered"), shared per (name, device, dtype, dir,
    cuda_graphs) once "auto" is resolved. `cuda_graphs` (CUDA only) replays each sampling forward from a
    CUDA graph."""
    family = get_family(name)
    device = resolve_device(device, dtype.dtype if isinstance(dtype, Precision) else dtype)
    precision = dtype if isinstance(dtype, Precision) else choose_precision(dtype, device)
    key = (name, str(device), precision.dtype, str(checkpoint_dir), cuda_graphs)
    with _PIPELINES_LOCK:
        if key not in _PIPELINES:
            _PIPELINES[key] = Pipeline(family, device, precision, Path(checkpoint_dir) if checkpoint_dir else None,
                                       cuda_graphs=cuda_graphs)
        return _PIPELINES[key]


def loaded_pipelines() -> List[Dict]:
    """The pipelines of this process with models loaded: family, device, dtype and the components in memory."""
    with _PIPELINES_LOCK:
        pipelines = list(_PIPELINES.values())
    return [{"model": p.name, "device": str(p.device), "dtype": p.dtype, "components": sorted(p._components)}
            for p in pipelines if p._components]
