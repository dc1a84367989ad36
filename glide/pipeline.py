"""End-to-end text-to-image, inpainting and guidance comparison for one loaded model family.

    from glide.pipeline import load_pipeline
    pipe = load_pipeline("shapes", device="cpu")
    res = pipe.generate(["a small red circle on the left on a blue background"], sampler="ddim", steps=50,
                        guidance="classifier-free", guidance_scale=3.0, seed=0, upsample=True)
    res.images, res.base_images, res.settings

The pipeline owns the family's models (loaded lazily, once, on one device and dtype), encodes the
text once per run, composes a step rule and a guidance strategy from the sampler plugins, and
returns PIL images with the exact settings that made them. Batch item i uses seed + i, so any image
regenerates alone from its settings: exactly when it was made alone, and to within one 8-bit level
when it came from a larger batch (the math libraries sum in a batch-size-dependent order).
"""
import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch

import samplers

from .cuda_graphs import GraphedModel
from .images import (ImageLike, InputError, check_mask_fits, image_to_tensor, mask_to_keep, masked_preview, quantize,
                     tensor_to_pil)
from .model_registry import Family, get_family

MAX_PROMPT_CHARS = 1000
MAX_BATCH = 64
UPSAMPLE_SEED_OFFSET = 1_000_003  # the upsampler's noise stream, distinct from the base's
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# callback(stage, step, total, x0_preview) with stage "base" or "upsample"
ProgressCallback = Callable[[str, int, int, torch.Tensor], None]


@dataclass
class Result:
    """Images of one call, and for each image the settings that regenerate it."""

    images: List = field(default_factory=list)          # final PIL images (upsampled when asked)
    base_images: List = field(default_factory=list)     # the base model's PIL images
    settings: List[Dict] = field(default_factory=list)
    masked_inputs: List = field(default_factory=list)   # inpainting: the input with the edit region greyed
    seconds: float = 0.0


@dataclass
class Comparison:
    """One guidance strategy's sample in a comparison."""

    guidance: str
    guidance_params: Dict
    image: object
    base_image: object
    seconds: float
    clip_score: Optional[float]
    checker: Optional[Dict]
    settings: Dict


def _prompts(prompts: Union[str, Sequence[str]], batch_size: Optional[int]) -> List[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = [p if isinstance(p, str) else None for p in prompts]
    if not prompts or any(p is None for p in prompts):
        raise InputError("give at least one prompt (text)")
    for p in prompts:
        if not p.strip():
            raise InputError("the prompt is empty: describe the image to make")
        if len(p) > MAX_PROMPT_CHARS:
            raise InputError(f"the prompt is too long ({len(p)} characters; at most {MAX_PROMPT_CHARS})")
    if batch_size is not None:
        if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
            raise InputError(f"batch_size must be an integer from 1 to {MAX_BATCH}, got {batch_size!r}")
        if len(prompts) == 1:
            prompts = prompts * batch_size
        elif len(prompts) != batch_size:
            raise InputError(f"{len(prompts)} prompts but batch_size={batch_size}")
    if len(prompts) > MAX_BATCH:
        raise InputError(f"at most {MAX_BATCH} images per call, got {len(prompts)}")
    return [p.strip() for p in prompts]


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63 - UPSAMPLE_SEED_OFFSET - MAX_BATCH:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


def check_device(device: Union[str, torch.device]) -> torch.device:
    """`device` as a torch.device this machine has; a ValueError naming the problem otherwise.

    Checked up front because torch's own failure comes late, from deep inside model loading.
    """
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"bad device {device!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for but no CUDA GPU is available to torch")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {device} was asked for but torch sees {torch.cuda.device_count()} GPU(s)")
    return device


class Pipeline:
    """A loaded model family on one device and dtype (see the module docstring)."""

    def __init__(self, family: Family, device="cpu", dtype: str = "float32", checkpoint_dir: Optional[Path] = None,
                 cuda_graphs: bool = False):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
        self.family = family
        self.name = family.name
        self.device = check_device(device)
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs needs a CUDA device, got {self.device}")
        self.dtype = dtype
        self.checkpoint_dir = checkpoint_dir
        self.cuda_graphs = cuda_graphs
        self._components: Dict[str, object] = {}
        self._graphed: Dict[str, GraphedModel] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ models
    def component(self, name: str):
        """(model, diffusion) for a diffusion component, or the CLIP model; loaded on first use."""
        with self._lock:
            if name not in self._components:
                self._components[name] = self.family.load(name, self.device, self.checkpoint_dir)
            return self._components[name]

    def _sampling_model(self, name: str, model):
        """The model as the sampling loop calls it: with `cuda_graphs`, its forward passes replayed from
        CUDA graphs kept per component, so a shape captured once serves every later run."""
        if not self.cuda_graphs:
            return model
        with self._lock:
            if name not in self._graphed:
                self._graphed[name] = GraphedModel(model)
            return self._graphed[name]

    def _autocast(self):
        if self.dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.dtype])

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
    def _sample_stage(self, stage, component, prompts, seeds, *, steps, sampler, sampler_params, guidance,
                      guidance_params, negative_prompt="", extra_kwargs=None, keep=None, known=None,
                      temperature=1.0, callback=None, should_stop=None):
        model, diffusion = self.component(component)
        size = self.family.upsample_size if stage == "upsample" else self.family.base_size
        strategy = samplers.get_registry().guidance_strategy(guidance)
        clip = self.component("clip") if strategy.needs_clip else None
        with self._autocast():
            cond, uncond = self._text_kwargs(model, prompts, negative_prompt)
            for kwargs in (cond, uncond):
                kwargs.update(extra_kwargs or {})
            denoised_fn = None
            if keep is not None:
                # Paste the known region into every x0 prediction (the reference inpainting notebook).
                def denoised_fn(x0):
                    return x0 * (1 - keep) + known * keep
            out = samplers.sample(
                self._sampling_model(component, model), diffusion, (len(prompts), 3, size, size), steps=steps,
                prompts=prompts, cond_kwargs=cond, uncond_kwargs=uncond, sampler=sampler, sampler_params=sampler_params,
                guidance=guidance, guidance_params=guidance_params, clip=clip, seeds=seeds,
                denoised_fn=denoised_fn, temperature=temperature,
                callback=(lambda i, n, x0: callback(stage, i, n, x0)) if callback else None,
                should_stop=should_stop)
        out = out.float().clamp(-1, 1)
        if keep is not None:
            out = out * (1 - keep) + known * keep  # the kept region is the input, exactly
        return out

    def _upsample_stage(self, prompts, seeds, low_res, *, steps, sampler, temperature, callback, should_stop,
                        inpaint=None):
        """The upsampler, unguided, on `low_res` [N, 3, base, base] at 8-bit levels; item i on its own noise
        stream from seeds[i]. With `inpaint` (image, mask) the kept region is the input image's, exactly."""
        extra, keep, known = {"low_res": low_res}, None, None
        if inpaint:
            size, n = self.family.upsample_size, len(prompts)
            known = image_to_tensor(inpaint[0], size).to(self.device).expand(n, -1, -1, -1)
            keep = mask_to_keep(inpaint[1], size).to(self.device).expand(n, -1, -1, -1)
            extra.update(inpaint_image=known, inpaint_mask=keep)
        return self._sample_stage(
            "upsample", "upsample-inpaint" if inpaint else "upsample", prompts,
            [s + UPSAMPLE_SEED_OFFSET for s in seeds], steps=steps, sampler=sampler, sampler_params=None,
            guidance="none", guidance_params=None, extra_kwargs=extra, keep=keep, known=known,
            temperature=temperature, callback=callback, should_stop=should_stop)

    def _run(self, prompts, *, seed, sampler, steps, guidance, guidance_scale, sampler_params, guidance_params,
             negative_prompt, upsample, upsample_steps, upsample_sampler, upsample_temp, callback, should_stop,
             inpaint=None):
        start = time.time()
        seed = _seed(seed)
        if not isinstance(negative_prompt, str) or len(negative_prompt) > MAX_PROMPT_CHARS:
            raise InputError(f"negative_prompt must be text of at most {MAX_PROMPT_CHARS} characters")
        guidance_params = dict(guidance_params or {})
        strategy = samplers.get_registry().guidance_strategy(guidance)
        if guidance_scale is not None and any(p.name == "guidance_scale" for p in strategy.params):
            guidance_params.setdefault("guidance_scale", guidance_scale)
        family = self.family
        sampler = sampler or family.default_sampler
        steps = steps if steps is not None else family.default_base_steps
        upsample_steps = upsample_steps if upsample_steps is not None else family.default_upsample_steps
        upsample_sampler = upsample_sampler or family.default_upsample_sampler
        seeds = [seed + i for i in range(len(prompts))]
        base_component = "base-inpaint" if inpaint else "base"
        base_extra, keep, known = {}, None, None
        if inpaint:
            image, mask = inpaint
            known = image_to_tensor(image, self.family.base_size).to(self.device).expand(len(prompts), -1, -1, -1)
            keep = mask_to_keep(mask, self.family.base_size).to(self.device).expand(len(prompts), -1, -1, -1)
            base_extra = {"inpaint_image": known, "inpaint_mask": keep}
        base = self._sample_stage("base", base_component, prompts, seeds, steps=steps, sampler=sampler,
                                  sampler_params=sampler_params, guidance=guidance, guidance_params=guidance_params,
                                  negative_prompt=negative_prompt, extra_kwargs=base_extra, keep=keep, known=known,
                                  callback=callback, should_stop=should_stop)
        final = base
        if upsample:
            final = self._upsample_stage(prompts, seeds, quantize(base), steps=upsample_steps, sampler=upsample_sampler,
                                         temperature=upsample_temp, callback=callback, should_stop=should_stop,
                                         inpaint=inpaint)
        common = dict(model=self.name, sampler=sampler, sampler_params=dict(sampler_params or {}), steps=steps,
                      guidance=guidance, guidance_params=guidance_params, negative_prompt=negative_prompt,
                      upsample=bool(upsample), upsample_steps=upsample_steps, upsample_sampler=upsample_sampler,
                      upsample_temp=upsample_temp, mode="inpaint" if inpaint else "generate")
        settings = [dict(common, prompt=p, seed=s) for p, s in zip(prompts, seeds)]
        result = Result(images=tensor_to_pil(final), base_images=tensor_to_pil(base), settings=settings)
        if inpaint:
            result.masked_inputs = masked_preview(known, keep)
        result.seconds = time.time() - start
        return result

    # ------------------------------------------------------------------ public API
    def generate(self, prompts: Union[str, Sequence[str]], *, sampler: Optional[str] = None,
                 steps: Union[int, str, None] = None,
                 guidance: str = "classifier-free", guidance_scale: Optional[float] = 3.0,
                 sampler_params: Optional[Dict] = None, guidance_params: Optional[Dict] = None,
                 negative_prompt: str = "", seed: int = 0, batch_size: Optional[int] = None, upsample: bool = True,
                 upsample_steps: Union[int, str, None] = None, upsample_sampler: Optional[str] = None,
                 upsample_temp: float = 0.997, callback: Optional[ProgressCallback] = None,
                 should_stop: Optional[Callable[[], bool]] = None) -> Result:
        """Text to image: base model with the chosen rule and guidance, then (optionally) the upsampler.

        `guidance_scale` fills the strategy's `guidance_scale` parameter (ignored by strategies without
        one); `guidance_params`/`sampler_params` set any plugin parameter. The upsampler runs unguided
        with initial-noise temperature `upsample_temp`. `sampler`, `steps`, `upsample_steps` and
        `upsample_sampler` default to the family's: for glide-filtered DDIM 100 and the notebook's
        upsampler DDPM "fast27"; for shapes the fastest settings measured as good as the slow ones
        (DPM-Solver++(2M) 10 steps; upsampler DDIM 8: see README).
        """
        return self._run(_prompts(prompts, batch_size), seed=seed, sampler=sampler, steps=steps, guidance=guidance,
                         guidance_scale=guidance_scale, sampler_params=sampler_params,
                         guidance_params=guidance_params, negative_prompt=negative_prompt, upsample=upsample,
                         upsample_steps=upsample_steps, upsample_sampler=upsample_sampler,
                         upsample_temp=upsample_temp, callback=callback, should_stop=should_stop)

    def upsample(self, images: Union[ImageLike, Sequence[ImageLike]], prompts: Union[str, Sequence[str]], *,
                 sampler: Optional[str] = None, steps: Union[int, str, None] = None, seed: int = 0,
                 upsample_temp: float = 0.997, callback: Optional[ProgressCallback] = None,
                 should_stop: Optional[Callable[[], bool]] = None) -> Result:
        """Super-resolve given images (any size; centre-cropped and resized to the base size) with the upsampler.

        The second stage of `generate` on images you supply: one prompt per image (or one for all),
        unguided, `sampler`/`steps` defaulting to the family's upsampler settings. `base_images` of
        the result are the inputs as the upsampler saw them. Given `generate`'s base images, prompts
        and seed, it reproduces `generate`'s upsampled images.
        """
        images = [images] if not isinstance(images, (list, tuple)) else list(images)
        if not images or any(image is None for image in images):
            raise InputError("give an image to upsample")
        prompts = _prompts(prompts, None)
        if len(prompts) == 1:
            prompts = prompts * len(images)
        if len(prompts) != len(images) or len(images) > MAX_BATCH:
            raise InputError(f"give one prompt per image, or one for all (at most {MAX_BATCH} images); got "
                             f"{len(images)} images and {len(prompts)} prompts")
        seed = _seed(seed)
        start = time.time()
        steps = steps if steps is not None else self.family.default_upsample_steps
        sampler = sampler or self.family.default_upsample_sampler
        low_res = torch.cat([image_to_tensor(image, self.family.base_size) for image in images]).to(self.device)
        seeds = [seed + i for i in range(len(prompts))]
        final = self._upsample_stage(prompts, seeds, low_res, steps=steps, sampler=sampler, temperature=upsample_temp,
                                     callback=callback, should_stop=should_stop)
        settings = [dict(model=self.name, mode="upsample", prompt=p, seed=s, upsample_steps=steps,
                         upsample_sampler=sampler, upsample_temp=upsample_temp) for p, s in zip(prompts, seeds)]
        result = Result(images=tensor_to_pil(final), base_images=tensor_to_pil(low_res), settings=settings)
        result.seconds = time.time() - start
        return result

    def inpaint(self, image: ImageLike, mask: ImageLike, prompts: Union[str, Sequence[str]], **kwargs) -> Result:
        """Replace the masked region (white = edit; any size, centre-cropped like the image) to match the prompt.

        Takes generate's keyword arguments. At the base resolution the kept region of the result
        equals the (resized) input exactly; the upsampler keeps it too.
        """
        batch_size = kwargs.pop("batch_size", None)
        prompts = _prompts(prompts, batch_size)
        if image is None:
            raise InputError("give an image to edit")
        if mask is None:
            raise InputError("give a mask: paint the region to replace")
        check_mask_fits(mask, image)
        defaults = dict(sampler=None, steps=None, guidance="classifier-free", guidance_scale=3.0,
                        sampler_params=None, guidance_params=None, negative_prompt="", seed=0, upsample=True,
                        upsample_steps=None, upsample_sampler=None, upsample_temp=0.997, callback=None,
                        should_stop=None)
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise TypeError(f"inpaint() got unexpected arguments {sorted(unknown)}")
        return self._run(prompts, inpaint=(image, mask), **{**defaults, **kwargs})

    def compare(self, prompt: str, strategies: Optional[Sequence] = None, *, seed: int = 0, sampler: Optional[str] = None,
                steps: Union[int, str, None] = None, upsample: bool = False,
                callback: Optional[ProgressCallback] = None,
                should_stop: Optional[Callable[[], bool]] = None) -> List[Comparison]:
        """One prompt and seed under several guidance strategies: image, scale, wall time and scores.

        `strategies` is a list of names or (name, params) pairs; by default CLIP guidance, classifier-free
        and unguided. Scores: the noised CLIP's similarity at t=0 and, on families that have one, the
        prompt checker's per-attribute verdict.
        """
        if strategies is None:
            strategies = [("clip", {}), ("classifier-free", {}), ("none", {})]
        entries = []
        for item in strategies:
            name, params = (item, {}) if isinstance(item, str) else item
            result = self.generate([prompt], sampler=sampler, steps=steps, guidance=name, guidance_scale=None,
                                   guidance_params=params, seed=seed, upsample=upsample, callback=callback,
                                   should_stop=should_stop)
            settings = result.settings[0]
            entries.append(Comparison(
                guidance=name, guidance_params=settings["guidance_params"], image=result.images[0],
                base_image=result.base_images[0], seconds=result.seconds,
                clip_score=self.clip_score(result.base_images[0], prompt), checker=self.check(result.base_images[0], prompt),
                settings=settings))
        return entries

    def clip_score(self, image, prompt: str) -> Optional[float]:
        """The noised CLIP's cosine similarity between a base-size image and the prompt at t=0 (None without CLIP)."""
        try:
            clip = self.component("clip")
        except Exception:  # a family without a CLIP still compares, just without this score
            return None
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


def load_pipeline(name: str = "shapes", device: Union[str, torch.device] = "cpu", dtype: str = "float32",
                  checkpoint_dir: Optional[Union[str, Path]] = None, cuda_graphs: bool = False) -> Pipeline:
    """The pipeline of a model family ("shapes" or "glide-filtered"), shared per (name, device, dtype, dir,
    cuda_graphs). `cuda_graphs` (CUDA only) replays each sampling forward from a CUDA graph."""
    family = get_family(name)
    key = (name, str(torch.device(device)), dtype, str(checkpoint_dir), cuda_graphs)
    with _PIPELINES_LOCK:
        if key not in _PIPELINES:
            _PIPELINES[key] = Pipeline(family, device, dtype, Path(checkpoint_dir) if checkpoint_dir else None,
                                       cuda_graphs=cuda_graphs)
        return _PIPELINES[key]
