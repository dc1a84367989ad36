"""glide.settings: every default and bound in one place, per-image seeds, the PNG round trip."""
import dataclasses

import pytest

import samplers
from glide.errors import InputError
from glide.families import FAMILIES
from glide.settings import MAX_SEED, UPSAMPLE_TEMP, UPSAMPLE_TEMP_RANGE, ComparisonSettings, GenerationSettings, Limits
from samplers import Param, SamplerError
from samplers.builtin_guidance import SDXL_INTERVAL

PROMPT = "a small red circle on the left on a blue background"


@pytest.mark.parametrize("model", sorted(FAMILIES))
def test_defaults_come_from_the_family_registry(model):
    family = FAMILIES[model]
    settings = GenerationSettings.create(PROMPT, model=model, seed=0)
    assert settings.sampler == family.default_sampler and settings.steps == family.default_base_steps
    assert settings.upsample_sampler == family.default_upsample_sampler
    assert str(settings.upsample_steps) == str(family.default_upsample_steps)
    assert settings.upsample_temp == UPSAMPLE_TEMP and settings.guidance == "classifier-free"
    default_scale = samplers.get_registry().scale_of(samplers.get_registry().guidance_strategy("classifier-free"))
    assert settings.guidance_params == {default_scale.name: default_scale.default, "interval": ""}
    # A server's tighter step limit caps the default too.
    assert GenerationSettings.create(PROMPT, model=model, seed=0, limits=Limits(max_steps=30)).steps == min(
        30, family.default_base_steps)


def test_seeds_are_per_image():
    assert GenerationSettings.create([PROMPT] * 3, seed=7).seeds == (7, 8, 9)
    assert GenerationSettings.create([PROMPT, "a big green square"], seed=[4, 1]).seeds == (4, 1)
    one_prompt = GenerationSettings.create(PROMPT, seed=[10, 3, 99])     # one prompt, an image per seed
    assert one_prompt.prompts == (PROMPT,) * 3 and one_prompt.seeds == (10, 3, 99)
    for random_seed in (None, -1):
        seeds = GenerationSettings.create(PROMPT, seed=random_seed, batch_size=4).seeds
        assert len(seeds) == 4 and all(0 <= s <= MAX_SEED for s in seeds)
    with pytest.raises(InputError, match="seed is missing"):   # not given is None, nothing else
        GenerationSettings.create(PROMPT, seed="")
    with pytest.raises(InputError, match="seed must be between"):
        GenerationSettings.create(PROMPT, seed=MAX_SEED, batch_size=2)    # seed + 1 would not be exact in JSON
    with pytest.raises(InputError, match="one seed per image"):
        GenerationSettings.create([PROMPT, PROMPT], seed=[1, 2, 3])


@pytest.mark.parametrize("kwargs,message", [
    (dict(upsample_temp=UPSAMPLE_TEMP_RANGE[1] + 0.1), "upsample_temp must be between"),
    (dict(upsample_temp=float("nan")), "upsample_temp must be a finite number"),
    (dict(steps="banana"), "steps must be a number of steps from 1 to"),
    (dict(steps=2.5), "steps must be a whole number"),
    (dict(batch_size=9), "batch_size must be between 1 and 8"),
    (dict(negative_prompt="x" * 5000), "negative prompt is too long"),
    (dict(guidance="clip", guidance_scale="lots"), "guidance_scale must be a number"),
    (dict(model="nope"), "unknown model 'nope'"),
])
def test_every_bound_has_a_clear_message(kwargs, message):
    with pytest.raises(InputError, match=message):
        GenerationSettings.create(PROMPT, limits=Limits(max_batch=8), **kwargs)


def test_plugin_params_go_to_whichever_plugin_declares_them():
    settings = GenerationSettings.create(PROMPT, model="glide-filtered", seed=0,
                                         plugin_params={"eta": 0.5, "guidance_scale": 5})
    assert settings.sampler == "ddim" and settings.sampler_params == {"eta": 0.5}
    assert settings.guidance_params == {"guidance_scale": 5.0, "interval": ""}
    # The shapes family's default rule (DPM-Solver++) has no eta: the error names what there is.
    with pytest.raises(SamplerError, match="has a parameter 'eta'"):
        GenerationSettings.create(PROMPT, model="shapes", plugin_params={"eta": 0.5})
    # A scale given explicitly in guidance_params wins over guidance_scale; strategies without one ignore it.
    assert GenerationSettings.create(PROMPT, guidance_scale=2, guidance_params={"guidance_scale": 6}
                                     ).guidance_params == {"guidance_scale": 6.0, "interval": ""}
    assert GenerationSettings.create(PROMPT, guidance="none", guidance_scale=2).guidance_params == {}


@pytest.mark.parametrize("text,expected", [("false", False), ("False", False), ("0", False), ("no", False),
                                           ("off", False), ("true", True), ("1", True), ("yes", True), (True, True)])
def test_boolean_parameters_are_parsed_not_cast(text, expected):
    # bool("false") is True: the old Param.validate turned `--param flag=false` on.
    assert Param("flag", bool, False).validate(text) is expected


def test_a_boolean_parameter_rejects_other_words():
    with pytest.raises(SamplerError, match="true or false"):
        Param("flag", bool, False).validate("maybe")
    with pytest.raises(SamplerError, match="must be a float"):
        Param("scale", float, 1.0).validate(True)


def test_png_round_trip_and_overrides():
    settings = GenerationSettings.create([PROMPT, "a big green square at the top on a black background"], seed=[5, 8],
                                         guidance_scale=4, steps="ddim25", upsample=False)
    saved = settings.per_image()
    assert [s["seed"] for s in saved] == [5, 8] and saved[1]["prompt"].startswith("a big green square")
    again = GenerationSettings.from_png(saved[1])
    assert again == settings.with_items([saved[1]["prompt"]], [8])
    changed = GenerationSettings.from_png(saved[0], steps=12, guidance_scale=7, sampler="ddim")
    assert changed.steps == 12 and changed.sampler == "ddim"
    assert changed.guidance_params == {"guidance_scale": 7.0, "interval": ""}
    assert changed.sampler_params == {"eta": 0.0} and changed.seeds == (5,)
    # A parameter given on top of the PNG's (`--param eta=0.5`) wins over the recorded one.
    assert GenerationSettings.from_png(changed.per_image()[0], plugin_params={"eta": 0.5}).sampler_params == {
        "eta": 0.5}
    # Another strategy drops the recorded one's parameters instead of failing on them.
    assert GenerationSettings.from_png(saved[0], guidance="none").guidance_params == {}


def test_batch_key_ignores_only_prompts_and_seeds():
    a = GenerationSettings.create(PROMPT, seed=1)
    assert a.batch_key() == GenerationSettings.create("a big green square", seed=99).batch_key()
    assert a.batch_key() != GenerationSettings.create(PROMPT, seed=1, steps=11).batch_key()
    assert a.components() == ["base", "upsample"]
    assert GenerationSettings.create(PROMPT, guidance="clip", upsample=False, mode="inpaint").components() == [
        "base-inpaint", "clip"]


def test_comparison_settings_from_the_registry():
    compared = ComparisonSettings.create(PROMPT, seed=3, scales={"clip": 10, "classifier-free": 2}, sweep="1, 4")
    assert [n for n, _ in compared.strategies] == ["clip", "classifier-free", "none"]
    every = {"interval": ""}   # (guidance at every step: the default)
    # Each strategy with a scale at its own scale and the sweep's, in order of scale: a row each.
    assert compared.runs() == [("clip", {"guidance_scale": 1.0, **every}), ("clip", {"guidance_scale": 4.0, **every}),
                               ("clip", {"guidance_scale": 10.0, **every}),
                               ("classifier-free", {"guidance_scale": 1.0, **every}),
                               ("classifier-free", {"guidance_scale": 2.0, **every}),
                               ("classifier-free", {"guidance_scale": 4.0, **every}), ("none", {})]
    assert compared.seeds == (3, 4, 5, 6)   # four seeds by default, the same in every run
    assert compared.components() == ["base", "clip"]
    only = ComparisonSettings.create(PROMPT, strategies="none, classifier-free")
    assert [n for n, _ in only.strategies] == ["none", "classifier-free"]
    with pytest.raises(SamplerError, match="unknown guidance strategy 'magic'"):
        ComparisonSettings.create(PROMPT, strategies=["magic"])
    with pytest.raises(SamplerError, match="out of range"):       # classifier-free's scale stops at 50
        ComparisonSettings.create(PROMPT, sweep=[80])
    with pytest.raises(InputError, match="at most 2 scales"):
        ComparisonSettings.create(PROMPT, sweep=[1, 2, 3], limits=Limits(max_sweep=2))


# ---------------------------------------------------------------------------------------------- enforced
def test_every_way_to_a_settings_object_validates():
    """create, a direct call and dataclasses.replace are checked by the same validator."""
    settings = GenerationSettings.create(PROMPT, seed=1)
    with pytest.raises(InputError, match="steps must be"):
        dataclasses.replace(settings, steps=5000)
    with pytest.raises(InputError, match="prompt is empty"):
        dataclasses.replace(settings, prompts=("",))
    with pytest.raises(InputError, match="2 seeds for 1 images"):
        dataclasses.replace(settings, seeds=(1, 2))
    with pytest.raises(samplers.SamplerError, match="unknown step rule"):
        dataclasses.replace(settings, sampler="euler")
    with pytest.raises(samplers.SamplerError, match="eta"):
        dataclasses.replace(settings, sampler="ddim", sampler_params={"eta": 7})
    direct = GenerationSettings(model="shapes", prompts=(PROMPT,), seeds=(3,))
    assert direct == GenerationSettings.create(PROMPT, seed=3)     # the family's defaults filled in alike


def test_limits_travel_with_the_settings():
    """A server's limits still hold for a changed copy (what a batched run or an inpaint makes of it)."""
    tight = Limits(max_batch=2, max_steps=20)
    settings = GenerationSettings.create(PROMPT, seed=0, limits=tight)
    with pytest.raises(InputError, match="between 1 and 20"):
        dataclasses.replace(settings, steps=50)
    with pytest.raises(InputError, match="at most 2 images"):
        settings.with_items([PROMPT] * 3, [0, 1, 2])
    assert "limits" not in settings.per_image()[0] and "limits" not in settings.batch_key()


def test_a_comparison_built_directly_is_checked_too():
    compared = ComparisonSettings.create(PROMPT, seed=0, sweep=[1, 3])
    with pytest.raises(InputError, match="at most"):
        dataclasses.replace(compared, sweep=tuple(range(1, 20)))
    with pytest.raises(samplers.SamplerError, match="unknown guidance strategy"):
        dataclasses.replace(compared, strategies=(("nope", ()),))


def test_an_unknown_model_is_one_error_with_one_message_everywhere():
    from demo.models import Downloads
    from demo.service import DemoService
    from glide.errors import UnknownModel
    from glide.pipeline import load_pipeline

    messages = set()
    for attempt in (lambda: GenerationSettings.create(PROMPT, model="nope"),
                    lambda: GenerationSettings(model="nope", prompts=(PROMPT,), seeds=(0,)),
                    lambda: load_pipeline("nope"), lambda: DemoService(default_model="nope"),
                    lambda: Downloads().start("nope")):
        with pytest.raises(UnknownModel) as caught:
            attempt()
        messages.add(str(caught.value))
    assert messages == {"unknown model 'nope'; choose one of: shapes, glide-filtered"}


def test_a_preset_fills_only_what_is_left_empty():
    fast = GenerationSettings.create("a red circle", preset="fast", seed=0)
    assert (fast.sampler, fast.steps, fast.upsample_sampler, fast.upsample_steps) == ("dpm++3m", 6, "ddim", 4)
    assert (fast.deep_cache, fast.upsample_deep_cache) == (3, 2)
    assert GenerationSettings.create("a red circle", preset="fast", seed=0, deep_cache=1).deep_cache == 0   # off
    assert fast.guidance_params["interval"] == SDXL_INTERVAL
    # An explicit value wins over the preset's, whether given as a keyword or as a plugin parameter.
    mine = GenerationSettings.create("a red circle", preset="fast", seed=0, steps=9, upsample_steps="ddim6",
                                     guidance_params={"interval": "0.5,3"})
    assert (mine.sampler, mine.steps, mine.upsample_steps, mine.guidance_params["interval"]) == (
        "dpm++3m", 9, "ddim6", "0.5,3")
    assert GenerationSettings.create("a red circle", preset="fast", seed=0,
                                     plugin_params={"interval": ""}).guidance_params["interval"] == ""
    # A strategy without an interval simply does not get one; the settings record values, not the name.
    unguided = GenerationSettings.create("a red circle", preset="fast", seed=0, guidance="none")
    assert unguided.guidance_params == {} and unguided.steps == 6
    assert "preset" not in unguided.per_image()[0]
    assert fast == GenerationSettings.create("a red circle", seed=0, sampler="dpm++3m", steps=6, upsample_sampler="ddim",
                                             upsample_steps=4, guidance_params={"interval": SDXL_INTERVAL},
                                             deep_cache=3, upsample_deep_cache=2)


def test_an_unknown_preset_names_the_choices():
    with pytest.raises(InputError, match=r"unknown preset 'quick'; choose one of: fast"):
        GenerationSettings.create("a red circle", preset="quick")


def test_a_preset_replaces_what_a_png_recorded_and_keeps_its_prompt_and_seed():
    saved = GenerationSettings.create("a red circle", seed=7, steps=20, guidance_scale=4.0).per_image()[0]
    fast = GenerationSettings.from_png(saved, preset="fast")
    assert (fast.prompts, fast.seeds, fast.sampler, fast.steps) == (("a red circle",), (7,), "dpm++3m", 6)
    assert fast.guidance_params == {"guidance_scale": 4.0, "interval": SDXL_INTERVAL}
    assert GenerationSettings.from_png(saved, preset="fast", steps=8).steps == 8
