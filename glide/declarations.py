"""Every generation setting, declared once: what each door needs to present it.

A setting reaches a user through several doors: a keyword of `GenerationSettings.create` and of the
pipeline's `generate` / `inpaint`, a flag of `glide generate` / `glide inpaint` (and of `upsample` and
`compare` where the setting applies there), an input of the demo's `/generate` and `/inpaint` API, a
control of the UI, and a key in each PNG's settings chunk. Those doors are loops over `SETTINGS`; the
declaration carries the name, the kind of value, the help text, the label, the bounds, what "not given"
becomes, which modes take it and where a PNG records it. Validation is `glide.settings`' (it reads the
bounds from here), and the UI arranges its controls by hand but takes labels, bounds and values from here.

"Not given" is None and nothing else: None is the family's default (or the preset's, when one is
chosen), 0 is the number 0 (DeepCache 0 is off even under a preset; 0 steps is an error).

This module imports nothing heavy, so that `glide --help` answers at once.

Adding a setting: declare it here (at the end of SETTINGS, so positional API clients keep working), add
its field and its check to `glide.settings.GenerationSettings`, use it where it acts, give the UI a
control, and test it; the CLI flag, the API input, the keyword and the PNG key follow from here.
"""
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

MAX_PROMPT_CHARS = 1000
MAX_SEED = 2 ** 53 - 1          # seeds travel through JSON and JavaScript numbers: keep them exact
UPSAMPLE_TEMP = 0.997           # GLIDE's upsampler temperature (the reference notebook's)
UPSAMPLE_TEMP_RANGE = (0.01, 2.0)
MAX_DEEP_CACHE = 10             # beyond this the cached feature is many steps stale
DEFAULT_GUIDANCE = "classifier-free"
COMPARE_SEEDS = 4               # seeds a comparison runs every strategy over when not told: spread or sameness shows
DEFAULT_MODEL = "shapes"        # the embedded family: works on a fresh machine, no download
MODES = ("generate", "inpaint", "upsample", "compare")

# The kinds of value, each read the same way by every door:
#   text, int, float, bool; steps: a count or a respacing spec ("fast27", "ddim25"); step_rule / strategy /
#   model / preset: a name from a registry; params: plugin parameters (NAME=VALUE on the command line, a JSON
#   object in the API, a dict in Python).
#   image: a picture (a file on the command line and in the API, a PIL image or array in Python), recorded in
#   the PNG by its digest.
KINDS = ("text", "int", "float", "bool", "steps", "step_rule", "strategy", "model", "preset", "params", "image")
SAMPLING = ("generate", "inpaint")


@dataclass(frozen=True)
class Setting:
    """One generation setting (see the module docstring)."""

    name: str                       # the keyword, the API input, the flag (--name-with-dashes), the PNG key
    kind: str                       # one of KINDS
    help: str                       # one sentence: the flag's help, the API's and the UI's description
    label: str                      # the UI control's label
    modes: Tuple[str, ...] = SAMPLING   # which commands and endpoints take it
    fallback: Any = None            # what "not given" becomes when that is one value for every model
    unset: str = ""                 # otherwise how the help names "not given" ("the model's", "random")
    lo: Optional[float] = None      # bounds of a number (inclusive)
    hi: Optional[float] = None
    default: Any = None             # the keyword's default: None (not given) but for a switch that is on
    recorded_as: Optional[str] = None   # the PNG key it lands in when not its own name ("" = none: why in help)
    python_only: bool = False       # a keyword of the Python API only (the CLI and the API say it another way)

    @property
    def flag(self) -> str:
        return "--param" if self.kind == "params" else "--" + self.name.replace("_", "-")

    @property
    def png_key(self) -> Optional[str]:
        """Where a PNG records it: its own name, another key (a scale lands in guidance_params), or None."""
        if self.recorded_as == "":
            return None
        return self.recorded_as or self.name

    def default_text(self) -> str:
        """How help texts name the value used when it is not given."""
        if self.default is not None:
            return "on" if self.default is True else str(self.default)
        if self.fallback is not None and self.fallback != "":
            return str(self.fallback)
        return self.unset or "none"

    def describe(self) -> str:
        """The help text with its bounds and default, as the CLI and the API show it."""
        bounds = f"; {_plain(self.lo)} to {_plain(self.hi)}" if self.lo is not None and self.hi is not None else ""
        return f"{self.help}{bounds} (default: {self.default_text()})"


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


SETTINGS: Tuple[Setting, ...] = (
    # The order is the demo API's positional order after its prompt (and image, mask): append, never insert.
    Setting("negative_prompt", "text", "what classifier-free guidance steers away from (CLIP and unguided "
            "sampling ignore it, and the images then record none)", "Negative prompt",
            fallback=""),
    Setting("seed", "int", "seed of the first image; image i uses seed + i; -1 also means random",
            "Seed", modes=MODES, unset="random, recorded in each PNG", lo=-1, hi=MAX_SEED),
    Setting("batch_size", "int", "images per prompt when one prompt is given", "Batch size",
            unset="one per prompt", lo=1, recorded_as=""),
    Setting("steps", "steps", "base sampling steps, or a respacing spec such as fast27 or ddim25", "Steps",
            modes=(*SAMPLING, "compare"), unset="the model's"),
    Setting("sampler", "step_rule", "the base model's step rule (see `glide samplers`)", "Step rule",
            modes=(*SAMPLING, "compare"), unset="the model's"),
    Setting("guidance", "strategy", "guidance strategy (see `glide samplers`)", "Guidance",
            fallback=DEFAULT_GUIDANCE),
    Setting("guidance_scale", "float", "the guidance strategy's scale (ignored by strategies without one)",
            "Guidance scale", unset="the strategy's, 3 for classifier-free and CLIP", lo=0,
            recorded_as="guidance_params"),
    Setting("upsample", "bool", "run the upsampler after the base model", "Upsample", default=True),
    Setting("upsample_steps", "steps", "upsampler steps, or a respacing spec", "Upsample steps",
            modes=(*SAMPLING, "upsample"), unset="the model's"),
    Setting("upsample_temp", "float", "scales the upsampler's initial noise", "Upsample temperature",
            modes=(*SAMPLING, "upsample"), fallback=UPSAMPLE_TEMP, lo=UPSAMPLE_TEMP_RANGE[0], hi=UPSAMPLE_TEMP_RANGE[1]),
    Setting("plugin_params", "params", "a step rule's or guidance strategy's parameter, NAME=VALUE (see "
            "`glide samplers`); on the command line repeatable, in the API a JSON object", "Plugin parameters",
            unset="the plugins' own", recorded_as="sampler_params"),
    Setting("model", "model", "model family: shapes (embedded) or glide-filtered", "Model", modes=MODES,
            unset=f"{DEFAULT_MODEL}; in the demo, the model it serves"),
    Setting("upsample_sampler", "step_rule", "the upsampler's step rule", "Upsample step rule",
            modes=(*SAMPLING, "upsample"), unset="the model's"),
    Setting("deep_cache", "int", "DeepCache for the base model: a full forward every N steps, the steps between "
            "reuse its deep features; 0 or 1 is off", "DeepCache interval", fallback=0, lo=0, hi=MAX_DEEP_CACHE),
    Setting("upsample_deep_cache", "int", "DeepCache for the upsampler, as deep_cache", "Upsampler DeepCache interval",
            modes=(*SAMPLING, "upsample"), fallback=0, lo=0, hi=MAX_DEEP_CACHE),
    Setting("preset", "preset", "a named bundle of settings that fills what is not given: fast (fewer steps, "
            "guidance only in the middle noise levels, DeepCache)", "Preset", unset="none", recorded_as=""),
    Setting("init_image", "image", "the image to start from (image-to-image with strength); each PNG records "
            "its digest", "Starting image", modes=("generate",), unset="none (text to image)"),
    Setting("strength", "float", "where on the noise schedule the run starts: 1 is pure noise (the image "
            "is ignored), lower keeps more of the starting image (with inpainting: of the image inside the "
            "mask, strokes included); above 0", "Strength", fallback=1.0, lo=0, hi=1),
    # Python only: the command line and the API give these as plugin_params (a parameter goes to whichever of
    # the step rule and the strategy declares it).
    Setting("sampler_params", "params", "the step rule's parameters", "Step rule parameters", python_only=True,
            unset="the rule's own"),
    Setting("guidance_params", "params", "the guidance strategy's parameters", "Guidance parameters",
            python_only=True, unset="the strategy's own"),
)

BY_NAME: Dict[str, Setting] = {s.name: s for s in SETTINGS}


def for_mode(mode: Optional[str], *, python: bool = False) -> Tuple[Setting, ...]:
    """The settings a mode takes (None: all), in declaration order; `python`: the Python API's keywords too."""
    return tuple(s for s in SETTINGS if (mode is None or mode in s.modes) and (python or not s.python_only))


def keyword_parameters(mode: Optional[str]) -> Tuple[inspect.Parameter, ...]:
    """The keyword-only parameters a Python function taking `mode`'s settings shows in its signature."""
    return tuple(inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=s.default)
                 for s in for_mode(mode, python=True))


def takes_settings(mode: Optional[str], after: Sequence[str] = ()) -> Callable:
    """Decorate `fn(..., **settings)` so that its signature lists `mode`'s settings (help() and editors see
    them) and an unknown keyword is a TypeError naming the known ones; keywords named in `after` (the
    function's own, such as callback) stay where they are, after the settings."""
    names = {s.name for s in for_mode(mode, python=True)}

    def decorate(fn):
        signature = inspect.signature(fn)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        leading = [p for p in own if p.name not in after]
        trailing = [p for p in own if p.name in after]
        settings = [p for p in keyword_parameters(mode) if p.name not in signature.parameters]
        known = names | {p.name for p in own}

        def checked(*args, **kwargs):
            unknown = sorted(set(kwargs) - known)
            if unknown:
                raise TypeError(f"{fn.__qualname__}() got unexpected keyword arguments {unknown}; "
                                f"settings are: {', '.join(sorted(names))}")
            return fn(*args, **kwargs)

        checked.__name__, checked.__qualname__, checked.__module__ = fn.__name__, fn.__qualname__, fn.__module__
        checked.__doc__ = fn.__doc__
        checked.__signature__ = signature.replace(parameters=[*leading, *settings, *trailing])
        return checked

    return decorate
