"""One batch of a serving backend's work on a loaded pipeline: what a local worker thread and a Ray Serve
replica both run, so both backends make the same images from the same settings.

A batch is one kind ("generate", "inpaint" or "compare") and one request per payload; generate
requests with equal settings (apart from prompts and seeds) share one sampling run, the others run
alone. Results are plain objects (PIL images, settings dicts) that pickle, so a replica on another
machine can send them back; writing PNGs is the front end's business.
"""
import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from PIL import Image

import samplers

from . import comparison
from .pipeline import Comparison, Pipeline
from .settings import ComparisonSettings, GenerationSettings

log = logging.getLogger("glide.runs")

# report(stage, step, total, x0) as the pipeline's callback; stage may be a label in words (comparisons)
Report = Callable[[str, int, int, Any], None]


@dataclass
class Images:
    """One request's images: final, base, and the settings each PNG records."""

    images: List
    base_images: List
    settings: List[Dict]
    seconds: float
    masked_input: Any = None          # inpainting: the input with the region to replace greyed


@dataclass
class Compared:
    """A comparison's samples: one per strategy (`entries`), then the sweep's."""

    compared: ComparisonSettings
    entries: List[Comparison]
    sweep: List[Comparison]
    seconds: float


def run_batch(pipeline_of: Callable[[str], Pipeline], kind: str, payloads: Sequence, prompts: Sequence[str],
              seeds: Sequence[int], counts: Sequence[int], report: Report,
              should_stop: Optional[Callable[[], bool]] = None) -> List:
    """Run one batch; one result per payload. `counts[i]` images of `prompts`/`seeds` belong to payload i."""
    if kind == "generate":
        settings = payloads[0].with_items(prompts, seeds)   # the batch key made every payload's settings equal
        log.info("generate run: %d request(s), %d image(s)", len(payloads), len(prompts))
        result = pipeline_of(settings.model).run(settings, callback=report, should_stop=should_stop)
        out, start = [], 0
        for n in counts:
            sl = slice(start, start + n)
            out.append(Images(result.images[sl], result.base_images[sl], result.settings[sl], result.seconds))
            start += n
        return out
    if kind == "inpaint":
        (settings, image, mask), = payloads
        result = pipeline_of(settings.model).inpaint(image, mask, settings, callback=report, should_stop=should_stop)
        size = result.images[0].width
        masked = result.masked_inputs[0].resize((size, size), Image.NEAREST)
        return [Images(result.images, result.base_images, result.settings, result.seconds, masked)]
    if kind == "compare":
        (compared,) = payloads
        return [_compare(pipeline_of(compared.base.model), compared, report, should_stop)]
    raise ValueError(f"unknown kind of job {kind!r}")


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
    main = len(compared.strategies)
    return Compared(compared, entries[:main], entries[main:], sum(e.seconds for e in entries))


def run_label(run: Tuple[str, Dict], index: int, total: int, stage: str) -> str:
    """A comparison's progress in words: "Classifier-free, scale 3: run 2 of 15, upsampler"."""
    name, params = run
    registry = samplers.get_registry()
    scale = registry.scale_of(registry.guidance_strategy(name))
    label = comparison.title(name) + (f", scale {params[scale.name]:g}" if scale is not None else "")
    return f"{label}: run {index + 1} of {total}" + (", upsampler" if stage == "upsample" else "")


def batch_key_of(kind: str, payload) -> Optional[str]:
    """Which requests may share a run: generate requests with equal settings; the others none."""
    return payload.batch_key() if kind == "generate" and isinstance(payload, GenerationSettings) else None
