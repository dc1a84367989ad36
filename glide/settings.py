"""What to generate, said once: the settings object every entry point builds and the pipeline runs.

    from glide.settings import GenerationSettings
    settings = GenerationSettings.create("a small red circle on the left on a blue background", seed=[3, 7])
    pipe.generate(settings)                     # same as pipe.generate(prompt, seed=[3, 7])
    settings.per_image()                        # what each image's PNG records
    GenerationSettings.from_png(saved, steps=20)  # a PNG's settings, with some changed

Every default, bound and error message of a generation request lives here: the CLI, the demo's
UI and API, the pipeline's keyword API and the benchmark build a `GenerationSettings` (or a
`ComparisonSettings`) with `create`, and validate nothing themselves. Validation is the
constructor's (`__post_init__`), so every way to a settings object checks it — `create`,
`from_png`, a direct call and `dataclasses.replace` alike — and a settings object that exists is
complete (the family's defaults filled in) and valid (every value checked against its `limits`,
plugin parameters included): it travels unchanged from the UI to the sampler and back into the
PNG, and nothing downstream checks it again. `create` only turns the conveniences of the keyword
API (a seed for all images, batch_size, guidance_scale, plugin_params) into fields.

Seeds are per image: `seed=s` means s, s+1, ...; `seed=[a, b]` gives each image its own; None
(or -1, the UI's word for it) draws random seeds here, the one place that does. One prompt with
a list of seeds makes an image per seed.
"""
import json
import math
import random
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import samplers
from samplers.builtin_guidance import SDXL_INTERVAL

from .declarations import (
    BY_NAME,
    COMPARE_SEEDS,
    DEFAULT_GUIDANCE,
    DEFAULT_MODEL,
    MAX_DEEP_CACHE,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    SETTINGS,
    UPSAMPLE_TEMP,
    UPSAMPLE_TEMP_RANGE,
    takes_settings,
)
from .errors import InputError
from .families import Family, get_family
from .images import image_digest
from .respace import space_timesteps

__all__ = ["MAX_DEEP_CACHE", "MAX_PROMPT_CHARS", "MAX_SEED", "SETTINGS", "UPSAMPLE_TEMP", "UPSAMPLE_TEMP_RANGE",
           "ComparisonSettings", "GenerationSettings", "Limits", "PRESETS", "Preset", "ignored_negative_prompt"]

MIN_STEPS = 1
RANDOM_SEEDS_BELOW = 2 ** 32   # random seeds are drawn shorter than the limit: people read and type them
COMPARE_STRATEGIES = ("clip", "classifier-free", "none")   # what a comparison shows when not told
MODES = ("generate", "inpaint", "upsample")   # what a GenerationSettings runs (a comparison is its own)

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")   # how settings name an image (glide.images.image_digest)

_random = random.SystemRandom()   # users cannot predict another user's random seeds


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. The library's defaults allow anything the models can run; a
    shared server passes tighter ones (demo.service.DEMO_LIMITS) so one user cannot hold the device."""

    max_batch: int = 64            # images per request (and per batched run)
    max_steps: int = 1000          # sampling steps per stage
    max_image_side: int = 4096     # uploaded images, pixels a side
    max_sweep: int = 8             # guidance scales in one comparison sweep


LIBRARY_LIMITS = Limits()


@dataclass(frozen=True)
class Preset:
    """A named bundle of settings (`GenerationSettings.create(..., preset="fast")`, `--preset fast`, the demo's
    choice). It fills only what a request does not give (None), so a value given explicitly always wins,
    0 included (`deep_cache=0` turns the preset's DeepCache off); its plugin parameters go to whichever
    chosen step rule or strategy declares them (an `interval` for guidance that has none is dropped, not an
    error). The settings made record the values, not the preset's name. Each field is a setting's name."""

    description: str
    sampler: Optional[str] = None
    steps: Union[int, str, None] = None
    plugin_params: Dict[str, Any] = field(default_factory=dict)
    upsample_sampler: Optional[str] = None
    upsample_steps: Union[int, str, None] = None
    deep_cache: Optional[int] = None
    upsample_deep_cache: Optional[int] = None

    def values(self) -> Dict[str, Any]:
        """The settings it sets (plugin parameters apart), by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("description", "plugin_params") and getattr(self, f.name) is not None}


PRESETS = {
    # The fastest settings measured within noise of the defaults on the shapes family (docs/usage.md "Presets";
    # `python -m glide.eval shapes --presets`): 6 steps of DPM-Solver++(3M), guidance only inside the
    # SD-XL noise interval (the unconditional half of the batch is skipped outside it), upsampler DDIM 4,
    # DeepCache on both stages (base every 3rd step, upsampler every 2nd, each measured within noise).
    "fast": Preset("6 steps of DPM-Solver++(3M) with DeepCache 3, guidance only in the middle noise levels, "
                   "upsampler DDIM 4 with DeepCache 2",
                   sampler="dpm++3m", steps=6, plugin_params={"interval": SDXL_INTERVAL},
                   upsample_sampler="ddim", upsample_steps=4, deep_cache=3, upsample_deep_cache=2),
}


def preset_of(name: str) -> Preset:
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


# ---------------------------------------------------------------------------------------------- values
def number(value, name: str, kind=float, lo=None, hi=None):
    """`value` (a number, or text a form sent) as an int or float within [lo, hi]; InputError naming
    the field and the range otherwise."""
    if isinstance(value, bool):   # a bool is an int to Python, never a number a user meant
        raise InputError(f"{name} must be a number, got {value!r}")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{name} is missing: give a number")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(result):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if kind is int:
        if not result.is_integer():
            raise InputError(f"{name} must be a whole number, got {value!r}")
        result = int(result)
    if (lo is not None and result < lo) or (hi is not None and result > hi):
        raise InputError(f"{name} must be between {lo} and {hi}, got {value!r}")
    return result


def random_seed() -> int:
    """A seed drawn from system randomness, below RANDOM_SEEDS_BELOW (its batch's successors stay within MAX_SEED)."""
    return _random.randrange(RANDOM_SEEDS_BELOW)


def step_count(spec, diffusion_steps: int = 1000) -> int:
    """How many steps a respacing spec runs (27 for "fast27", 25 for "ddim25", 30 for "10,20"); 0 when it
    is not a spec the diffusion can run."""
    try:
        return len(space_timesteps(diffusion_steps, str(spec)))
    except ValueError:
        return 0


def _text(value, what: str, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InputError(f"the {what} must be text, got {value!r}")
    if not value.strip():
        if required:
            raise InputError(f"the {what} is empty: describe the image to make" if what == "prompt"
                             else f"the {what} is blank: give text, or leave it out")
        return ""
    if len(value) > MAX_PROMPT_CHARS:
        raise InputError(f"the {what} is too long ({len(value)} characters; at most {MAX_PROMPT_CHARS})")
    return value.strip()


def _expand_prompts(prompts, batch_size, limits: Limits) -> list:
    """`prompts` as a list, one prompt repeated `batch_size` times; the prompts themselves are left to the check."""
    prompts = [prompts] if isinstance(prompts, str) or prompts is None else list(prompts)
    if batch_size is not None:
        batch_size = number(batch_size, "batch_size", int, 1, limits.max_batch)
        if len(prompts) == 1:
            prompts = prompts * batch_size
        elif len(prompts) != batch_size:
            raise InputError(f"{len(prompts)} prompts but batch_size={batch_size}")
    return prompts


def _prompts(prompts, limits: Limits) -> Tuple[str, ...]:
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
        raise InputError(f"prompts must be a list of texts, got {prompts!r}")
    if not prompts:
        raise InputError("give at least one prompt (text)")
    if len(prompts) > limits.max_batch:
        raise InputError(f"at most {limits.max_batch} images per request, got {len(prompts)}")
    return tuple(_text(p, "prompt", required=True) for p in prompts)


def _expand_seed(seed, n: int):
    """Per-image seeds from an int (seed, seed+1, ...) or None / -1 (random); a list is left to the check."""
    if isinstance(seed, (list, tuple)):
        return seed
    # Random seeds are a random first one and its successors, as given ones are: "seed s for image 0" then
    # names the whole batch, so reusing it makes the same images.
    first = -1 if seed is None else number(seed, "seed", int, BY_NAME["seed"].lo, MAX_SEED - (n - 1))
    if first == -1:
        first = random_seed()
    return tuple(range(first, first + n))


def _seeds(seeds, n: int) -> Tuple[int, ...]:
    """One seed per image, each within [0, MAX_SEED]."""
    if not isinstance(seeds, (list, tuple)):
        raise InputError(f"seeds must be a list with one seed per image, got {seeds!r}")
    if len(seeds) != n:
        raise InputError(f"{len(seeds)} seeds for {n} images: give one seed per image, or one for all")
    return tuple(number(s, "seed", int, 0, MAX_SEED) for s in seeds)


def _steps(value, what: str, default, limits: Limits, family: Family) -> Union[int, str]:
    """A step count (int) or a respacing spec ("fast27", "ddim25", "10,20"), running MIN_STEPS..max_steps steps;
    None is the family's `default`."""
    if value is None:
        value = default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, str):
        spec = value.strip()
        if MIN_STEPS <= step_count(spec, family.diffusion_steps) <= limits.max_steps:
            return spec
        raise InputError(f"{what} must be a number of steps from {MIN_STEPS} to {limits.max_steps} or a schedule "
                         f"such as 'fast27' or 'ddim25', got {value!r}")
    return number(value, what, int, MIN_STEPS, limits.max_steps)


def _given_or(value, fallback):
    """`value`, or `fallback` where it is not given (None)."""
    return fallback if value is None else value


def _declared_number(name: str, value, kind=float):
    """A number setting checked against its declaration's bounds; None is the declared fallback."""
    setting = BY_NAME[name]
    return number(_given_or(value, setting.fallback), name, kind, setting.lo, setting.hi)


def _deep_cache(value, name: str) -> int:
    """A DeepCache interval: N >= 2 is a full forward every N steps; 0, 1 or not given is off (stored as 0)."""
    interval = _declared_number(name, value, int)
    return 0 if interval == 1 else interval


def _strength(value, mode: str, init_image) -> float:
    """Where the run starts on the noise schedule, in (0, 1]; below 1 it needs an image to start from."""
    strength = _declared_number("strength", value)
    if strength <= 0:
        raise InputError(f"strength must be above 0 (1 starts from pure noise), got {value!r}")
    if init_image is not None and not (isinstance(init_image, str) and DIGEST.fullmatch(init_image)):
        raise InputError(f"init_image must be an image (its digest is recorded), got {init_image!r}")
    if init_image is not None and mode != "generate":
        raise InputError(f"init_image starts text to image from a picture; {mode} takes its image as its input")
    if strength < 1 and mode == "generate" and init_image is None:
        raise InputError("a strength below 1 keeps part of a starting image: give init_image, or leave strength at 1")
    if strength < 1 and mode == "upsample":
        raise InputError("strength is for generating and inpainting; the upsampler always starts from noise")
    return strength


def _check_mapping(plugin, given) -> None:
    if given is not None and not isinstance(given, dict):
        raise InputError(f"parameters of {plugin.name!r} must be a mapping of name to value, got {given!r}")


def _plugin_params(plugin, given: Optional[Dict]) -> Dict[str, Any]:
    """`given` validated against the plugin's declared parameters (defaults filled in)."""
    _check_mapping(plugin, given)
    return samplers.validate_params(plugin, dict(given or {}))


def _declared(plugin_params: Dict, rule, strategy) -> Tuple[Dict, Dict]:
    """`plugin_params` split between the step rule and the guidance strategy, each keeping those it declares."""
    def declared_by(plugin):
        return {name: value for name, value in plugin_params.items() if any(p.name == name for p in plugin.params)}
    return declared_by(rule), declared_by(strategy)


def _route(plugin_params: Optional[Dict], rule, strategy) -> Tuple[Dict, Dict]:
    """Parameters given without saying whose (`--param`, the API's plugin_params): each goes to the step rule
    and/or the guidance strategy that declares it; one neither declares is an error listing theirs."""
    to_rule, to_strategy = {}, {}
    for name, value in (plugin_params or {}).items():
        targets = [params for plugin, params in ((rule, to_rule), (strategy, to_strategy))
                   if any(p.name == name for p in plugin.params)]
        if not targets:
            known = sorted({p.name for plugin in (rule, strategy) for p in plugin.params})
            raise samplers.SamplerError(f"neither the step rule {rule.name!r} nor the guidance strategy "
                                        f"{strategy.name!r} has a parameter {name!r}; theirs: {known or 'none'}")
        for params in targets:
            params[name] = value
    return to_rule, to_strategy


def _reads_negative_prompt(strategy) -> bool:
    """Whether a guidance strategy reads the negative prompt (a plugin says so by `uses_negative_prompt`)."""
    return getattr(strategy, "uses_negative_prompt", True)


def ignored_negative_prompt(negative_prompt: Optional[str], guidance: Optional[str]) -> str:
    """Why the negative prompt given will not act with `guidance` (None: the default strategy), for the CLI,
    the API and the UI to say; empty when it acts or none is given. The settings then record none."""
    if not isinstance(negative_prompt, str) or not negative_prompt.strip():
        return ""
    strategy = samplers.get_registry().guidance_strategy(_given_or(guidance, DEFAULT_GUIDANCE))
    if _reads_negative_prompt(strategy):
        return ""
    return (f"the negative prompt is ignored with {strategy.name!r} guidance (only guidance that runs the model "
            "without the prompt, such as classifier-free, steers away from it); the images record none")


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class GenerationSettings:
    """One validated request: images i = 0..n-1 are prompts[i] with seeds[i] (see the module docstring).

    `mode` "upsample" uses only the upsample_* fields (the upsampler on given images). The fields are the
    settings of glide.declarations (their help says what each means); None means not given and is filled
    in on construction (the family's default, or the declared fallback); `limits` bounds what the request
    may ask for and travels with it, so a changed copy is checked the same way.
    """

    model: str
    prompts: Tuple[str, ...]
    seeds: Tuple[int, ...]
    mode: str = "generate"
    negative_prompt: Optional[str] = None
    sampler: Optional[str] = None
    sampler_params: Dict[str, Any] = field(default_factory=dict)
    steps: Union[int, str, None] = None
    guidance: Optional[str] = None
    guidance_params: Dict[str, Any] = field(default_factory=dict)
    upsample: bool = True
    upsample_sampler: Optional[str] = None
    upsample_steps: Union[int, str, None] = None
    upsample_temp: Optional[float] = None
    deep_cache: Optional[int] = None
    upsample_deep_cache: Optional[int] = None
    init_image: Optional[str] = None   # the starting image's digest (glide.images.image_digest); the image travels apart
    strength: Optional[float] = None
    limits: Limits = field(default=LIBRARY_LIMITS, compare=False, repr=False)

    def __post_init__(self):
        """The one validator: every field checked, normalised and completed, or a UserError naming it."""
        family = get_family(self.model)
        limits = self.limits
        if self.mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        registry = samplers.get_registry()
        rule = registry.step_rule(_given_or(self.sampler, family.default_sampler))
        strategy = registry.guidance_strategy(_given_or(self.guidance, DEFAULT_GUIDANCE))
        try:
            upsample_rule = registry.step_rule(_given_or(self.upsample_sampler, family.default_upsample_sampler))
        except samplers.SamplerError as exc:
            raise samplers.SamplerError(f"upsample_sampler: {exc}") from None
        if not isinstance(self.upsample, bool):
            raise InputError(f"upsample must be true or false, got {self.upsample!r}")
        prompts = _prompts(self.prompts, limits)
        checked = dict(
            model=family.name, prompts=prompts, seeds=_seeds(self.seeds, len(prompts)),
            # A negative prompt the strategy never reads is not recorded as if it had been used (the CLI,
            # the API and the UI say so: ignored_negative_prompt).
            negative_prompt=_text(self.negative_prompt, "negative prompt", required=False)
            if _reads_negative_prompt(strategy) else "",
            sampler=rule.name, sampler_params=_plugin_params(rule, self.sampler_params),
            steps=_steps(self.steps, "steps", min(family.default_base_steps, limits.max_steps), limits, family),
            guidance=strategy.name, guidance_params=_plugin_params(strategy, self.guidance_params),
            upsample=self.mode == "upsample" or self.upsample, upsample_sampler=upsample_rule.name,
            upsample_steps=_steps(self.upsample_steps, "upsample_steps", family.default_upsample_steps, limits, family),
            upsample_temp=_declared_number("upsample_temp", self.upsample_temp),
            init_image=self.init_image, strength=_strength(self.strength, self.mode, self.init_image),
            deep_cache=_deep_cache(self.deep_cache, "deep_cache"),
            upsample_deep_cache=_deep_cache(self.upsample_deep_cache, "upsample_deep_cache"))
        for name, value in checked.items():
            object.__setattr__(self, name, value)   # frozen: the constructor is the one place values are set

    @classmethod
    @takes_settings(None, after=("limits",))
    def create(cls, prompts: Union[str, Sequence[str]], *, mode: str = "generate", limits: Limits = LIBRARY_LIMITS,
               **given) -> "GenerationSettings":
        """Settings from raw values (from Python, a form or the command line), the model's defaults filled in.

        The keywords are the settings of glide.declarations. None (not given) means the default: the
        model family's step rule and steps for each stage, classifier-free guidance, GLIDE's upsampler
        temperature, random seeds. `seed` is the first image's seed (image i: seed + i), a list with one per
        image, or None / -1 for random ones; one prompt with a list of seeds makes an image per seed.
        `guidance_scale` sets the strategy's declared scale parameter (ignored by strategies without one; a
        value in `guidance_params` wins). `plugin_params` go to whichever of the step rule and strategy
        declares each, over what `sampler_params`/`guidance_params` say (they are the later word: a `--param`
        on a PNG's settings). `preset` (a name in PRESETS) fills what is not given before the family's
        defaults do. Raises a UserError (InputError, SamplerError) that names the field and what is allowed.
        """
        values = {s.name: given.get(s.name, s.default) for s in SETTINGS}
        bundle = preset_of(values["preset"]) if values["preset"] is not None else Preset("")
        for name, value in bundle.values().items():
            values[name] = _given_or(values[name], value)
        family = get_family(_given_or(values["model"], DEFAULT_MODEL))
        registry = samplers.get_registry()
        seed, batch_size = values["seed"], values["batch_size"]
        if isinstance(seed, (list, tuple)) and batch_size is None and (isinstance(prompts, str) or len(prompts) == 1):
            batch_size = len(seed)  # one prompt, several seeds: an image per seed
        prompts = _expand_prompts(prompts, batch_size, limits)
        rule = registry.step_rule(_given_or(values["sampler"], family.default_sampler))
        strategy = registry.guidance_strategy(_given_or(values["guidance"], DEFAULT_GUIDANCE))
        routed_rule, routed_strategy = _route(values["plugin_params"], rule, strategy)
        _check_mapping(strategy, values["guidance_params"])
        _check_mapping(rule, values["sampler_params"])
        preset_rule, preset_strategy = _declared(bundle.plugin_params, rule, strategy)
        guidance_params = {**preset_strategy, **dict(values["guidance_params"] or {}), **routed_strategy}
        sampler_params = {**preset_rule, **dict(values["sampler_params"] or {}), **routed_rule}
        scale = registry.scale_of(strategy)
        if values["guidance_scale"] is not None and scale is not None:
            guidance_params.setdefault(scale.name, number(values["guidance_scale"], "guidance_scale"))
        fields_given = {name: values[name] for name in _FIELD_SETTINGS}
        if fields_given["init_image"] is not None and not isinstance(fields_given["init_image"], str):
            fields_given["init_image"] = image_digest(fields_given["init_image"])   # the image travels apart
        return cls(**{**fields_given, "model": family.name, "prompts": prompts, "seeds": _expand_seed(seed, len(prompts)),
                      "mode": mode, "sampler": rule.name, "sampler_params": sampler_params, "guidance": strategy.name,
                      "guidance_params": guidance_params, "limits": limits})

    # ------------------------------------------------------------------ PNG round trip
    def per_image(self) -> List[Dict]:
        """For each image, the settings its PNG records: enough to make it again alone."""
        if self.mode == "upsample":
            common = {"mode": self.mode, **{name: getattr(self, name) for name in _FIELD_SETTINGS
                                            if "upsample" in BY_NAME[name].modes}}
        else:
            common = self._shared()
        return [dict(common, prompt=p, seed=s) for p, s in zip(self.prompts, self.seeds)]

    @classmethod
    def from_png(cls, saved: Dict, prompts=None, **overrides) -> "GenerationSettings":
        """The settings a PNG recorded (`pngmeta.read_settings`), with `overrides` (create's keywords) on top.

        A different step rule or strategy drops the recorded parameters of the old one, and an overriding
        `guidance_scale` replaces the recorded scale.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        kwargs = {k: saved[k] for k in ("mode", "seed", *_FIELD_SETTINGS) if k in saved}
        if given.get("sampler", kwargs.get("sampler")) != kwargs.get("sampler"):
            kwargs.pop("sampler_params", None)
        if given.get("guidance", kwargs.get("guidance")) != kwargs.get("guidance"):
            kwargs.pop("guidance_params", None)
        if given.get("preset"):   # the preset's values replace the recorded ones it sets (as flags would)
            bundle = preset_of(given["preset"])
            for name in bundle.values():
                if name not in given:
                    kwargs.pop(name, None)
            if "sampler" not in kwargs:
                kwargs.pop("sampler_params", None)
            for params in ("sampler_params", "guidance_params"):
                if params in kwargs:
                    kwargs[params] = {k: v for k, v in kwargs[params].items() if k not in bundle.plugin_params}
        if "guidance_scale" in given and kwargs.get("guidance_params"):
            strategy = samplers.get_registry().guidance_strategy(given.get("guidance", kwargs.get("guidance")))
            kwargs["guidance_params"] = {k: v for k, v in kwargs["guidance_params"].items()
                                         if k != getattr(strategy, "scale", None)}
        if prompts is None and "prompt" not in saved:
            raise InputError("the PNG's settings hold no prompt: give one")
        return cls.create(prompts if prompts is not None else saved["prompt"], **{**kwargs, **given})

    # ------------------------------------------------------------------ derived
    def __len__(self) -> int:
        return len(self.prompts)

    def components(self) -> List[str]:
        """The family components a run of these settings loads (what must be on disk)."""
        suffix = "-inpaint" if self.mode == "inpaint" else ""
        if self.mode == "upsample":
            return ["upsample"]
        strategy = samplers.get_registry().guidance_strategy(self.guidance)
        needed = ["base" + suffix] + (["upsample" + suffix] if self.upsample else [])
        return needed + [c for c in samplers.get_registry().requires_of(strategy) if c not in needed]

    def batch_key(self) -> str:
        """What a shared run must agree on: everything but the prompts and seeds (a hashable string)."""
        return json.dumps(self._shared(), sort_keys=True, default=str)

    def with_items(self, prompts: Sequence[str], seeds: Sequence[int]) -> "GenerationSettings":
        """The same settings for other images (checked like any): a batched run of several requests."""
        return replace(self, prompts=tuple(prompts), seeds=tuple(seeds))

    def _shared(self) -> Dict[str, Any]:
        """What every image of these settings has in common: all fields but prompts, seeds and limits."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("prompts", "seeds", "limits")}


# The settings that are fields (the rest are conveniences of `create`: batch_size, guidance_scale, ...);
# a PNG records each of them under its own name, with the image's prompt and seed.
_FIELD_SETTINGS = tuple(s.name for s in SETTINGS if s.name in {f.name for f in fields(GenerationSettings)}
                        and s.name != "seed")


@dataclass(frozen=True)
class ComparisonSettings:
    """One prompt under several guidance strategies over the same seeds, each strategy with its parameters,
    plus a scale sweep.

    `runs()` lists what is sampled, one batch over every seed each: every strategy, and each strategy with a
    declared scale at every sweep scale too (its rows in order of scale). `base` carries the shared settings
    (model, the prompt once per seed, the seeds, step rule, steps, upsample): the same seeds in every run, so
    that what differs between a run's images is the seed and what differs between runs is the guidance.
    """

    base: GenerationSettings
    strategies: Tuple[Tuple[str, Tuple[Tuple[str, Any], ...]], ...]
    sweep: Tuple[float, ...] = ()

    def __post_init__(self):
        """The one validator (as GenerationSettings'): one prompt, known strategies with valid parameters,
        a sweep within the base's limits that every swept strategy accepts."""
        registry = samplers.get_registry()
        if not isinstance(self.base, GenerationSettings):
            raise TypeError(f"base must be a GenerationSettings, got {type(self.base).__name__}")
        if len(set(self.base.prompts)) != 1:
            raise InputError("a comparison takes one prompt")
        chosen = []
        for name, params in self.strategies:
            strategy = registry.guidance_strategy(name)
            chosen.append((strategy.name, tuple(sorted(_plugin_params(strategy, dict(params)).items()))))
        if not chosen:
            raise InputError("choose at least one guidance strategy to compare")
        values = tuple(number(s, "sweep scale", float, 0.0, None) for s in self.sweep)
        if len(values) > self.base.limits.max_sweep:
            raise InputError(f"a sweep takes at most {self.base.limits.max_sweep} scales, got {len(values)}")
        for name, _ in chosen:  # every swept scale must be one the strategy accepts
            scale = registry.scale_of(registry.guidance_strategy(name))
            for value in values if scale is not None else ():
                scale.validate(value)
        object.__setattr__(self, "strategies", tuple(chosen))
        object.__setattr__(self, "sweep", values)

    @classmethod
    def create(cls, prompt: str, *, model: Optional[str] = None, seed: Union[int, Sequence[int], None] = None,
               seeds: Union[int, str, None] = None, sampler: Optional[str] = None,
               steps: Union[int, str, None] = None, strategies: Optional[Sequence] = None,
               scales: Optional[Dict[str, float]] = None, sweep: Union[str, Sequence, None] = (),
               upsample: bool = False, limits: Limits = LIBRARY_LIMITS) -> "ComparisonSettings":
        """`seed`: the first seed (None or -1: random), or a list of seeds; `seeds`: how many seeds each
        strategy runs over, seed, seed + 1, ... (default COMPARE_SEEDS, at most the limits' batch);
        `strategies`: names, "a, b" text, or (name, params) pairs (default COMPARE_STRATEGIES);
        `scales`: a guidance scale per strategy name; `sweep`: scales as numbers or "1, 3, 6" text."""
        registry = samplers.get_registry()
        if isinstance(prompt, (list, tuple)):
            raise InputError("a comparison takes one prompt")
        if isinstance(seed, (list, tuple)):
            count = len(seed)
        else:
            count = number(COMPARE_SEEDS if seeds is None else seeds, "seeds", int, 1, limits.max_batch)
        base = GenerationSettings.create(prompt, model=model, seed=seed, batch_size=count, sampler=sampler,
                                         steps=steps, upsample=upsample, limits=limits)
        if isinstance(strategies, str):
            strategies = [s for s in strategies.replace(";", ",").split(",") if s.strip()]
        chosen = []
        for item in strategies or COMPARE_STRATEGIES:
            name, params = (item.strip(), {}) if isinstance(item, str) else (item[0], dict(item[1] or {}))
            scale = registry.scale_of(registry.guidance_strategy(name))
            if scale is not None and scales and scales.get(name) is not None:
                params.setdefault(scale.name, number(scales[name], f"{name} scale"))
            chosen.append((name, tuple(params.items())))
        if isinstance(sweep, str):
            sweep = [s for s in sweep.replace(";", ",").replace(" ", ",").split(",") if s.strip()]
        return cls(base=base, strategies=tuple(chosen), sweep=tuple(sweep or ()))

    @property
    def prompt(self) -> str:
        return self.base.prompts[0]

    @property
    def seed(self) -> int:
        return self.base.seeds[0]

    @property
    def seeds(self) -> Tuple[int, ...]:
        """The seeds every run samples, one image each."""
        return self.base.seeds

    def runs(self) -> List[Tuple[str, Dict[str, Any]]]:
        """(strategy, params) for each run, one batch over every seed: each strategy in order; one with a scale
        and a sweep runs at its own scale and every sweep scale, in order of scale, each scale once."""
        registry = samplers.get_registry()
        runs = []
        for name, params in self.strategies:
            params = dict(params)
            scale = registry.scale_of(registry.guidance_strategy(name))
            if scale is None or not self.sweep:
                runs.append((name, params))
                continue
            for value in sorted({params[scale.name], *self.sweep}):
                runs.append((name, {**params, scale.name: value}))
        return runs

    def generation(self, strategy: str, params: Dict[str, Any]) -> GenerationSettings:
        """The GenerationSettings of one run."""
        return replace(self.base, guidance=strategy, guidance_params=dict(params))

    def components(self) -> List[str]:
        needed = list(self.base.components())
        for name, params in self.strategies:
            needed += [c for c in self.generation(name, dict(params)).components() if c not in needed]
        return needed

    def describe(self) -> Dict:
        """What a comparison's PNG records."""
        return {"mode": "compare", "model": self.base.model, "prompt": self.prompt, "seeds": list(self.seeds),
                "sampler": self.base.sampler, "steps": self.base.steps, "upsample": self.base.upsample,
                "strategies": [[n, dict(p)] for n, p in self.strategies], "sweep": list(self.sweep)}
