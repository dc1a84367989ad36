"""A throwaway third-party plugin, written only from what samplers/hookspecs.py documents, installed
through the `glide.samplers` entry point, and used everywhere a built-in strategy is: the registry,
generate and compare from Python, the CLI, and the demo's API (a server started with the plugin on
its path, /generate and /compare with `strategies`).

The strategy pulls the image towards a colour held by a component the plugin provides itself
(`glide_components`), declares its scale ("pull") and has a boolean parameter, so the test also
shows `--param enabled=false` switching it off (bool("false") is True: it used to switch it on).
"""
import ast
import json
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import samplers
from glide.pngmeta import read_settings

PROMPT = "a small red circle on the left on a blue background"
FAST = dict(steps=4, upsample=False)
PLUGIN_SOURCE = '''
import torch
from samplers import Guided, Param, SamplerError, hookimpl

YELLOW = (1.0, 1.0, -1.0)


class PullToColour:
    name = "pull-colour"
    description = "Pulls every pixel towards the colour of the 'target-colour' component (a test plugin)"
    params = [Param("pull", float, 2.0, 0.0, 100.0, "how hard"), Param("enabled", bool, True, help="off: unguided")]
    scale = "pull"
    requires = ("target-colour",)

    def prepare(self, ctx, pull=2.0, enabled=True):
        target = ctx.component("target-colour")

        def model_fn(x, t, **kwargs):
            return ctx.model(x, t, **ctx.cond_kwargs)

        def cond_fn(x, t, **kwargs):
            return pull * (target.view(1, -1, 1, 1).to(x) - x)

        return Guided(model_fn, cond_fn if enabled and pull else None)


@hookimpl
def glide_guidance_strategies():
    return [PullToColour()]


@hookimpl
def glide_components():
    def load(request):
        if request.family not in ("shapes", "glide-filtered"):
            raise SamplerError(f"no target colour for {request.family}")
        return torch.tensor(YELLOW, device=request.device)

    return {"target-colour": load}
'''
DOCUMENTED = {"torch", "samplers", "Guided", "Param", "SamplerError", "hookimpl", "ctx.component", "ctx.model",
              "ctx.cond_kwargs"}


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """The plugin as an installed distribution (a dist-info with its entry point) on sys.path."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "glide_colour_plugin").mkdir()
    (root / "glide_colour_plugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    dist = root / "glide_colour_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: glide-colour-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[glide.samplers]\ncolour = glide_colour_plugin\n")
    sys.path.insert(0, str(root))
    samplers.get_registry.cache_clear()
    yield root
    sys.path.remove(str(root))
    sys.modules.pop("glide_colour_plugin", None)
    samplers.get_registry.cache_clear()


def test_the_plugin_uses_only_documented_names():
    from samplers import hookspecs

    tree = ast.parse(PLUGIN_SOURCE)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert imported <= set(samplers.__all__)
    for name in imported | {"component", "cond_kwargs", "model", "requires", "scale", "glide_components"}:
        assert name in hookspecs.__doc__ + "".join(f.__doc__ or "" for f in (hookspecs.glide_components,)), name


def mean_rgb(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=float).reshape(-1, 3).mean(0)


def test_registry_python_generate_and_compare(plugin_dir):
    from glide.pipeline import load_pipeline

    registry = samplers.get_registry()
    assert registry.guidance["pull-colour"].scale == "pull" and "target-colour" in registry.components
    described = {g["name"]: g for g in registry.describe()["guidance"]}["pull-colour"]
    assert described["requires"] == ["target-colour"] and described["scale"] == "pull"

    pipe = load_pipeline("shapes")
    plain = pipe.generate(PROMPT, guidance="none", seed=3, **FAST).images[0]
    pulled = pipe.generate(PROMPT, guidance="pull-colour", guidance_scale=30, seed=3, **FAST)
    assert pulled.settings[0]["guidance_params"] == {"pull": 30.0, "enabled": True}
    towards_yellow = mean_rgb(pulled.images[0]) - mean_rgb(plain)
    assert towards_yellow[0] > 10 and towards_yellow[1] > 10 and towards_yellow[2] < -10, towards_yellow
    off = pipe.generate(PROMPT, guidance="pull-colour", guidance_params={"enabled": "false"}, seed=3, **FAST)
    assert np.array_equal(np.asarray(off.images[0]), np.asarray(plain))

    entries = pipe.compare(PROMPT, ["none", "pull-colour"], seed=3, steps=4, sweep=[0, 30])
    assert [(e.guidance, e.guidance_params.get("pull")) for e in entries] == [
        ("none", None), ("pull-colour", 2.0), ("pull-colour", 0.0), ("pull-colour", 30.0)]


def test_cli(plugin_dir, tmp_path):
    from test_cli import glide, ok

    described = json.loads(glide("samplers", "--json", cwd=tmp_path).stdout)
    assert "pull-colour" in [g["name"] for g in described["guidance"]]
    args = [PROMPT, "--steps", 4, "--no-upsample", "--seed", 3]
    (plain,) = ok(glide("generate", *args, "--guidance", "none", cwd=tmp_path))
    (off,) = ok(glide("generate", *args, "--guidance", "pull-colour", "--param", "enabled=false", cwd=tmp_path))
    (on,) = ok(glide("generate", *args, "--guidance", "pull-colour", "--guidance-scale", 30, cwd=tmp_path))
    assert read_settings(tmp_path / off)["guidance_params"] == {"pull": 2.0, "enabled": False}
    assert np.array_equal(np.asarray(Image.open(tmp_path / off)), np.asarray(Image.open(tmp_path / plain)))
    assert mean_rgb(Image.open(tmp_path / on))[2] < mean_rgb(Image.open(tmp_path / plain))[2] - 10
    lines = ok(glide("compare", PROMPT, "--steps", 3, "--strategies", "none,pull-colour", "--scales", "0,30",
                     cwd=tmp_path))
    assert [line.split()[:2] for line in lines[1:4]] == [["none", "-"], ["pull-colour", "0"], ["pull-colour", "30"]]


def test_demo_api(plugin_dir, monkeypatch):
    from gradio_client import Client

    from demo.testing import missing_weights, start_server

    if missing_weights():
        pytest.skip(missing_weights())
    monkeypatch.setenv("PYTHONPATH", str(plugin_dir))
    server = start_server()
    try:
        client = Client(server.url, verbose=False)
        images = client.predict(PROMPT, seed=3, steps=3, upsample=False, guidance="pull-colour", guidance_scale=30,
                                api_name="/generate")
        settings = read_settings(Image.open(images[0]["image"]))
        assert settings["guidance"] == "pull-colour" and settings["guidance_params"]["pull"] == 30.0
        _, scores, grid = client.predict(PROMPT, seed=3, steps=3, sweep="0, 30", strategies="none, pull-colour",
                                         api_name="/compare")
        assert [e["guidance"] for e in scores["entries"]] == ["none", "pull-colour"]
        assert grid is not None  # the plugin's declared scale was swept
    finally:
        server.stop()
