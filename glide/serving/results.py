"""What a finished job gives back, whichever backend ran it: one request's images, or a comparison's samples.

Plain objects (PIL images, settings dicts) that pickle, so a Ray replica on another machine can send them
back; writing PNGs is the front end's business. At the bottom of glide.serving with glide.errors: the
batch runner makes these, the metrics count their images, the front ends show them.
"""
from dataclasses import dataclass
from typing import Any, Dict, List

from ..pipeline import Comparison
from ..settings import ComparisonSettings


@dataclass
class Images:
    """One request's images: final, base, and the settings each PNG records."""

    images: List
    base_images: List
    settings: List[Dict]
    seconds: float
    masked_input: Any = None          # inpainting: the input with the region to replace greyed

    def count(self) -> int:
        return len(self.images)


@dataclass
class Compared:
    """A comparison's samples: one per run and seed, run by run (glide.comparison.rows groups them)."""

    compared: ComparisonSettings
    entries: List[Comparison]
    seconds: float

    def count(self) -> int:
        return len(self.entries)
