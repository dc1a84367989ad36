"""One batch of a serving backend's work on a loaded pipeline: what a local worker thread and a Ray Serve
replica both run, so both backends make the same images from the same settings.

A batch is one kind of payload (glide.serving.jobs: Generate, Inpaint or Compare), one per request;
generate requests with equal settings (apart from prompts and seeds) share one sampling run, the
others run alone. Each request gets its glide.serving.results object, or the exception it alone failed with.
"""
import logging
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from PIL import Image

import samplers

from .. import comparison
from ..errors import OutOfDeviceMemory
from ..pipeline import Pipeline
from ..settings import ComparisonSettings, GenerationSettings
from .jobs import Compare, Generate, Inpaint, Payload, Upsample
from .results import Compared, Images

log = logging.getLogger("glide.serving")

# report(stage, step, total, x0) as the pipeline's callback; stage may be a label in words (comparisons)
Report = Callable[[str, int, int, Any], None]


def is_out_of_memory(exc: BaseException) -> bool:
    """A failed allocation: CUDA's OutOfMemoryError, or the CPU allocator's failure."""
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(exc, RuntimeError) and ("out of memory" in str(exc) or "can't allocate memory" in str(exc)))


def run_batch(pipeline_of: Callable[[str], Pipeline], payloads: Sequence[Payload], report: Report,
              should_stop: Optional[Callable[[], bool]] = None) -> List:
    """Run one batch of payloads of one kind; one result per payload, or the exception that payload alone
    failed with.

    Generate payloads (equal but for prompts and seeds: their batch key) run as one sampling run. A run
    that runs out of device memory is split in halves and each retried, down to single images (each
    image has its own seed, so the images are the ones the whole batch would have made); an image that
    does not fit even alone fails its own request only.
    """
    first = payloads[0]
    if isinstance(first, Compare):
        (only,) = payloads
        return [_compare(pipeline_of(only.model), only.compared, report, should_stop)]
    if isinstance(first, Generate):
        settings = first.settings.with_items([p for x in payloads for p in x.prompts],
                                             [s for x in payloads for s in x.seeds])
        inputs = {"init_image": first.init_image}   # equal batch keys: the same starting image's digest, or none
        log.info("generate run: %d request(s), %d image(s)", len(payloads), len(settings))
    elif isinstance(first, Inpaint):
        (only,) = payloads
        settings, inputs = only.settings, {"inpaint": (only.image, only.mask)}
    elif isinstance(first, Upsample):
        (only,) = payloads
        settings, inputs = only.settings, {"images": list(only.images)}
    else:
        raise TypeError(f"not a job payload: {first!r}")
    started = time.time()
    pipe = pipeline_of(settings.model)
    made, masked = _fitting(pipe, settings, inputs, report, should_stop)
    seconds = time.time() - started
    out, start = [], 0
    for payload in payloads:
        mine = made[start:start + len(payload.prompts)]
        start += len(payload.prompts)
        failed = next((m for m in mine if isinstance(m, BaseException)), None)
        out.append(failed or Images([m[0] for m in mine], [m[1] for m in mine], [m[2] for m in mine], seconds,
                                    masked))
    return out


def batch_runner(pipeline_of: Callable[[str], Pipeline]) -> Callable:
    """The local backend's runner: each batch of jobs on the pipelines `pipeline_of` gives."""
    def runner(batch, report, should_stop):
        return run_batch(pipeline_of, [job.payload for job in batch.jobs], report, should_stop)

    return runner


def _fitting(pipe: Pipeline, settings: GenerationSettings, inputs: Dict, report: Report, should_stop) -> Tuple[List, Any]:
    """Per image (final, base, settings) or OutOfDeviceMemory, and the inpainting preview (or None); `inputs` are
    Pipeline.run's images (inpaint, init_image)."""
    try:
        result = pipe.run(settings, **inputs, callback=report, should_stop=should_stop)
    except Exception as exc:  # noqa: BLE001 - only allocation failures are handled here
        if not is_out_of_memory(exc):
            raise
        if pipe.device.type == "cuda":
            torch.cuda.empty_cache()
        if len(settings) == 1:
            return [OutOfDeviceMemory(f"the image does not fit in the {pipe.device.type.upper()}'s memory even "
                                      "alone: try fewer steps, no upsampling, or another time")], None
        half = len(settings) // 2
        log.warning("out of memory with %d images: trying %d and %d", len(settings), half, len(settings) - half)

        def without_previews(stage, step, total, x0):   # a half's x0 rows are not the batch's
            report(stage, step, total, None)

        def part(items: slice) -> Dict:   # images to upsample are one per image; the other inputs are shared
            return {**inputs, "images": inputs["images"][items]} if "images" in inputs else inputs

        first, masked = _fitting(pipe, settings.with_items(settings.prompts[:half], settings.seeds[:half]),
                                 part(slice(None, half)), without_previews, should_stop)
        second, masked_too = _fitting(pipe, settings.with_items(settings.prompts[half:], settings.seeds[half:]),
                                      part(slice(half, None)), without_previews, should_stop)
        return first + second, masked or masked_too
    masked = None
    if result.masked_inputs:   # the square the base model saw, at the last stage's size to show beside its output
        size = pipe.family.upsample_size if settings.upsample else pipe.family.base_size
        masked = result.masked_inputs[0].resize((size, size), Image.NEAREST)
    return list(zip(result.images, result.base_images, result.settings)), masked


def _compare(pipe: Pipeline, compared: ComparisonSettings, report: Report, should_stop) -> Compared:
    plan = compared.runs()
    current = {"index": -1}

    def progress(stage, step, total, x0):
        # compare() runs one generation per strategy and scale; a base stage starting means the next one.
        if stage == "base" and step == 0:
            current["index"] += 1
        index = min(current["index"], len(plan) - 1)
        report(run_label(plan[index], index, len(plan), stage), step, total, x0)

    entries = pipe.compare(compared, callback=progress, should_stop=should_stop)
    return Compared(compared, entries, sum(e.seconds for e in entries))


def run_label(run: Tuple[str, Dict], index: int, total: int, stage: str) -> str:
    """A comparison's progress in words: "Classifier-free guidance, scale 3 — run 2 of 15 (upsampler)"."""
    name, params = run
    registry = samplers.get_registry()
    scale = registry.scale_of(registry.guidance_strategy(name))
    label = comparison.title(name) + (f", scale {params[scale.name]:g}" if scale is not None else "")
    return f"{label} — run {index + 1} of {total} ({'upsampler' if stage == 'upsample' else 'base model'})"
