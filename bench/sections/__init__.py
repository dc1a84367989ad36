"""The benchmark's sections, one module each. Each returns (JSON-ready dict, tables) and never raises for one bad case.

matmul   the device's dense matmul rate per dtype: the denominator of every MFU figure
forward  one forward of the full-size base model and upsampler per precision/layout variant
sample   text -> 256x256 sample: the reference's settings against our fastest of equal quality
batch    throughput vs batch size
deepcache  one sampling step with DeepCache off and on: full and shallow step, average per step at N = 2, 3
loading  each model from its checkpoint file: the old way (random init, read, load_state_dict) against the loader
shapes   the embedded default family end to end: cold start to first image, images/s at batch 8
guidance seconds per image of each guidance strategy on the shapes family, and what an interval saves
recipe   the fast recipe and the `fast` preset at 256 px from checkpoint files in a fresh process, loading included
int8     one U-Net forward in torch float32/bf16 and through OpenVINO in float32, bf16 and int8 (dtype="int8")
Sections that compare precisions run float32 and what dtype="auto" picks on this machine.

With a wall-clock budget (`--budget-s`), a section, variant, setting or batch that would start after
the budget is spent is not run: it is recorded as `skipped` with a note saying so.
"""
from typing import Callable, Dict

from .batch import section_batch
from .common import Bench, log
from .deep_cache import section_deep_cache
from .forward import section_forward
from .guidance import section_guidance
from .int8 import section_int8
from .loading import section_loading
from .matmul import section_matmul
from .recipe import section_recipe
from .sample import SAMPLE_SETTINGS, section_sample
from .shapes import section_shapes

# Run order: what a GPU run must show first (MFU's denominator, forward MFU, sampling time, batch
# scaling, DeepCache's step cost, loading), then the embedded model's CPU figures, so a budget cut loses
# the least important part; int8 (CPU only, the optional extra) last.
SECTIONS = ("matmul", "forward", "sample", "batch", "deepcache", "loading", "shapes", "guidance", "recipe", "int8")
RUNNERS: Dict[str, Callable] = {
    "matmul": section_matmul,
    "forward": section_forward,
    "sample": section_sample,
    "shapes": section_shapes,
    "batch": section_batch,
    "deepcache": section_deep_cache,
    "guidance": section_guidance,
    "loading": section_loading,
    "recipe": section_recipe,
    "int8": section_int8,
}

__all__ = ["RUNNERS", "SAMPLE_SETTINGS", "SECTIONS", "Bench", "log"]
