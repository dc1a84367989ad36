"""Each generation setting is declared once (glide.declarations) and every door is derived from it: the CLI's
flags, the demo API's parameters and their defaults, the Python keywords, the PNG round trip."""
import inspect

import pytest
from PIL import Image

from glide.cli import build_parser
from glide.declarations import SETTINGS, for_mode
from glide.pngmeta import read_settings, save_png
from glide.settings import GenerationSettings

PROMPT = "a small red circle on the left on a blue background"
DOORS = [s for s in SETTINGS if not s.python_only]


def _help(command: str) -> str:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)]
    return " ".join(commands.choices[command].format_help().split())   # argparse wraps lines: undo it


@pytest.mark.parametrize("command", ["generate", "inpaint", "upsample", "compare"])
def test_every_setting_of_a_command_is_a_flag_with_its_help(command):
    text = _help(command)
    for setting in for_mode(command):
        assert setting.flag in text, f"glide {command} --help lacks {setting.flag}"
        assert " ".join(setting.describe().split()) in text, f"{setting.flag}'s help is not its declaration's"


def test_the_python_keywords_are_the_settings():
    from glide.pipeline import Pipeline

    names = [s.name for s in SETTINGS]
    for fn, mode in ((GenerationSettings.create, None), (Pipeline.generate, "generate"), (Pipeline.inpaint, "inpaint")):
        parameters = inspect.signature(fn).parameters
        for setting in for_mode(mode, python=True):
            assert parameters[setting.name].default == setting.default, (fn.__qualname__, setting.name)
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['stepz'\\]"):
        GenerationSettings.create(PROMPT, stepz=3)
    assert len(names) == len(set(names))


@pytest.fixture(scope="module")
def api_parameters(tmp_path_factory):
    """The demo API's parameters per endpoint, read from the Blocks as gradio_client sees them (no server)."""
    from demo.app import build_demo
    from demo.service import DemoService

    service = DemoService(device="cpu", dtype="float32", out_dir=tmp_path_factory.mktemp("out"))
    try:
        info = build_demo(service).get_api_info()
        yield {name.lstrip("/"): {p["parameter_name"]: p for p in endpoint["parameters"]}
               for name, endpoint in info["named_endpoints"].items()}
    finally:
        service.backend.close()


@pytest.mark.parametrize("endpoint", ["generate", "inpaint"])
def test_every_setting_is_an_api_parameter_with_its_default(api_parameters, endpoint):
    parameters = api_parameters[endpoint]
    for setting in for_mode(endpoint):
        assert setting.name in parameters, f"/{endpoint} lacks {setting.name}"
        parameter = parameters[setting.name]
        assert parameter["parameter_has_default"], f"/{endpoint}'s {setting.name} must be optional"
        assert parameter["parameter_default"] == setting.default, (endpoint, setting.name)
    # Positional clients rely on the order: the prompt (image, mask), then the settings as declared.
    leading = ["prompt"] if endpoint == "generate" else ["prompt", "image", "mask"]
    assert list(parameters) == leading + [s.name for s in for_mode(endpoint)]


def test_every_recorded_setting_round_trips_through_a_png(tmp_path):
    """Each setting given a value other than its default lands in the PNG's settings chunk under its key, and the
    PNG's settings make the same settings again."""
    given = dict(negative_prompt="a green square", seed=11, steps=7, sampler="ddim", guidance="classifier-free",
                 guidance_scale=4.5, upsample=False, upsample_steps=5, upsample_temp=0.9, plugin_params={"eta": 0.5},
                 model="shapes", upsample_sampler="ddpm", deep_cache=3, upsample_deep_cache=2,
                 init_image=Image.new("RGB", (40, 30), "red"), strength=0.5)
    recorded = [s for s in DOORS if s.png_key is not None]
    assert {s.name for s in recorded} <= set(given), "give the new setting a value here"
    settings = GenerationSettings.create(PROMPT, **given)
    path = save_png(Image.new("RGB", (8, 8)), tmp_path / "one.png", settings.per_image()[0])
    saved = read_settings(path)
    for setting in recorded:
        assert setting.png_key in saved, f"the PNG does not record {setting.name}"
    assert saved["guidance_params"]["guidance_scale"] == 4.5 and saved["sampler_params"]["eta"] == 0.5
    assert saved["init_image"].startswith("sha256:") and saved["strength"] == 0.5
    assert GenerationSettings.from_png(saved) == settings


def test_not_given_is_none_and_zero_is_a_value():
    """Under a preset, 0 is a value like any other: DeepCache 0 is off, not 'the preset's'."""
    fast = GenerationSettings.create(PROMPT, preset="fast", seed=0)
    assert fast.deep_cache == 3 and fast.upsample_deep_cache == 2
    off = GenerationSettings.create(PROMPT, preset="fast", seed=0, deep_cache=0, upsample_deep_cache=0)
    assert off.deep_cache == 0 and off.upsample_deep_cache == 0 and off.steps == fast.steps
    from glide.errors import InputError

    with pytest.raises(InputError, match="steps must be between 1 and"):
        GenerationSettings.create(PROMPT, steps=0)


def test_the_cli_turns_the_presets_deep_cache_off_with_0():
    from glide.cli import _settings

    args = build_parser().parse_args(["generate", PROMPT, "--preset", "fast", "--deep-cache", "0", "--seed", "1"])
    assert _settings(args, "generate", args.prompts).deep_cache == 0


def test_the_demo_docs_list_every_api_input():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "demo.md").read_text()
    for setting in for_mode("generate"):
        assert f"| `{setting.name}` |" in text, f"docs/demo.md's API table lacks {setting.name}"
