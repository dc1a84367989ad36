"""Third-party plugins written only from what samplers/hookspecs.py documents, used everywhere a built-in is:
the registry, generate and compare from Python, the CLI, and the demo (its API and its controls).

Two plugins: the example package in tests/plugins/glide_example_plugin (installed by `make`'s venv step,
as any outside package would be), with a rule that picks its own timesteps (`trailing-ddim`) and an
x0-space strategy (`apg`); and a throwaway one installed for these tests only, whose strategy pulls the
image towards a colour held by a component the plugin provides itself (`glide_components`), declares
its scale ("pull") and has a boolean parameter, so the tests also show `--param enabled=false`
switching it off (bool("false") is True: it used to switch it on).
"""
import ast
import inspect
import json
import sys
import textwrap
from pathlib import Path

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


EXAMPLE_PLUGIN = Path(__file__).parent / "plugins" / "glide_example_plugin" / "glide_example_plugin" / "__init__.py"
# The objects a plugin is handed, by the names the contract gives them.
HANDED = ("ctx", "run", "trained", "request")


def undocumented(source: str) -> set:
    """What a plugin's source uses that samplers/hookspecs.py does not document: names imported from samplers
    (they must be exported and documented), members of the objects it is handed (`ctx.x`, `run.x`,
    `trained.x`, `request.x`, `run.diffusion.x`), hook functions, and the members its plugins define."""
    from samplers import hookspecs

    doc = hookspecs.__doc__ + "".join(getattr(hookspecs, name).__doc__ for name in dir(hookspecs)
                                      if name.startswith("glide_"))
    tree = ast.parse(source)
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "samplers":
            used |= {alias.name for alias in node.names if alias.name not in samplers.__all__} | {
                f"samplers.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("samplers.", "glide")):
            used.add(f"from {node.module} import")   # the project's insides: nothing documents them
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in HANDED:
            used.add(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Attribute) and ast.unparse(node.value) == "run.diffusion":
            used.add(f"run.diffusion {node.attr}")
        elif isinstance(node, ast.FunctionDef) and any(ast.unparse(d) == "hookimpl" for d in node.decorator_list):
            used.add(f"hook {node.name}")
        elif isinstance(node, ast.ClassDef):
            used |= {f"member {item.name}" for item in node.body if isinstance(item, ast.FunctionDef)
                     and not item.name.startswith("_")}
            used |= {f"member {target.id}" for item in node.body if isinstance(item, ast.Assign)
                     for target in item.targets if isinstance(target, ast.Name)}
    diffusion_doc = doc[doc.index("run.diffusion  "):doc.index("**Guidance strategy**")]

    def documented(use: str) -> bool:
        kind, _, name = use.rpartition(" ")
        if kind == "run.diffusion":
            return name in diffusion_doc
        if kind in ("hook", "member"):
            return (f"def {name}()" in inspect.getsource(hookspecs)) if kind == "hook" else (
                f"    {name}:" in doc or f"    {name}(" in doc or f"`{name}`" in doc)
        if use.startswith("from "):
            return False
        return use.removeprefix("samplers.") in doc if use.startswith("samplers.") else use in doc

    return {use for use in used if not documented(use)}


@pytest.mark.parametrize("source", [PLUGIN_SOURCE, EXAMPLE_PLUGIN.read_text()], ids=["colour", "example"])
def test_the_plugins_use_only_documented_names(source):
    assert undocumented(source) == set()


def test_the_documentation_check_catches_what_is_not_documented():
    source = PLUGIN_SOURCE + textwrap.dedent('''
        from samplers.base import validate_params
        from samplers import Registry

        class Sneaky:
            shortcut = 1

            def prepare(self, ctx):
                return ctx.secret_cache, run.diffusion.training_losses, request.model

        @hookimpl
        def glide_schedulers():
            return []
    ''')
    assert undocumented(source) == {"from samplers.base import", "samplers.Registry", "ctx.secret_cache",
                                    "run.diffusion training_losses", "request.model", "hook glide_schedulers",
                                    "member shortcut"}


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

    entries = pipe.compare(PROMPT, ["none", "pull-colour"], seed=3, seeds=1, steps=4, sweep=[0, 30])
    assert [(e.guidance, e.guidance_params.get("pull")) for e in entries] == [
        ("none", None), ("pull-colour", 0.0), ("pull-colour", 2.0), ("pull-colour", 30.0)]


@pytest.fixture(scope="module")
def example_registry():
    """The registry with the example package, which `make`'s venv step installs (an outside package's way in)."""
    registry = samplers.get_registry()
    if "trailing-ddim" not in registry.step_rules or "apg" not in registry.guidance:
        pytest.fail("the example plugin is not installed: run `make .venv/.installed` (it installs "
                    "tests/plugins/glide_example_plugin with pip install -e)")
    return registry


def test_example_plugin_from_python(example_registry):
    from glide.pipeline import load_pipeline

    pipe = load_pipeline("shapes", device="cpu", dtype="float32")
    visited = []
    result = pipe.generate([PROMPT] * 2, sampler="trailing-ddim", steps=5, guidance="apg", seed=3, upsample=False,
                           callback=lambda stage, i, n, x0: visited.append((i, n)))
    assert visited == [(i, 5) for i in range(5)]
    assert result.settings[0]["sampler"] == "trailing-ddim"
    assert result.settings[0]["guidance_params"] == {"guidance_scale": 3.0, "eta": 0.0, "norm_limit": 0.0}
    assert all(pipe.check(image, PROMPT)["all"] for image in result.base_images)
    # Its timesteps, as the model sees them: trailing, from 999 down, never t = 0.
    rule = example_registry.step_rule("trailing-ddim")
    assert rule.timesteps(pipe.component("base")[1], 5) == [999, 799, 599, 399, 199]
    # APG with all of the parallel part kept is classifier-free guidance (the same x0, mixed in x0 space).
    kept = pipe.generate(PROMPT, sampler="dpm++2m", steps=6, guidance="apg", guidance_params={"eta": 1.0}, seed=3,
                         upsample=False).base_images[0]
    cfg = pipe.generate(PROMPT, sampler="dpm++2m", steps=6, guidance="classifier-free", seed=3,
                        upsample=False).base_images[0]
    projected = pipe.generate(PROMPT, sampler="dpm++2m", steps=6, guidance="apg", seed=3, upsample=False).base_images[0]
    assert np.abs(np.asarray(kept, float) - np.asarray(cfg, float)).max() <= 2
    assert np.abs(np.asarray(projected, float) - np.asarray(cfg, float)).max() > 10


def test_example_plugin_and_new_built_ins_from_the_cli(example_registry, tmp_path):
    from test_cli import glide, ok

    described = json.loads(glide("samplers", "--json", cwd=tmp_path).stdout)
    rules = {r["name"]: r for r in described["step_rules"]}
    assert {"trailing-ddim", "unipc", "dpm++3m"} <= set(rules)
    assert {"apg", "cfg-rescale"} <= {g["name"] for g in described["guidance"]}
    assert {q["name"]: q["choices"] for q in rules["unipc"]["params"]}["spacing"] == ["time", "logsnr", "karras"]
    args = [PROMPT, "--steps", 5, "--no-upsample", "--seed", 3]
    (trailing,) = ok(glide("generate", *args, "--sampler", "trailing-ddim", "--guidance", "apg", "--param", "eta=0.5",
                           cwd=tmp_path))
    assert read_settings(tmp_path / trailing)["guidance_params"] == {"guidance_scale": 3.0, "eta": 0.5, "norm_limit": 0.0}
    (unipc,) = ok(glide("generate", *args, "--sampler", "unipc", "--param", "spacing=karras", "--guidance",
                        "cfg-rescale", "--param", "phi=0.5", "--param", "interval=0.28,5.42", cwd=tmp_path))
    settings = read_settings(tmp_path / unipc)
    assert settings["sampler_params"] == {"order": 2, "spacing": "karras"}
    assert settings["guidance_params"] == {"guidance_scale": 3.0, "phi": 0.5, "interval": "0.28,5.42"}
    bad = glide("generate", *args, "--sampler", "unipc", "--param", "spacing=cosine", cwd=tmp_path)
    assert bad.returncode == 2 and "spacing must be one of time, logsnr, karras" in bad.stderr


def test_demo_controls_of_the_new_plugins(example_registry):
    """The demo builds a control per parameter from the registry: a menu for a parameter with choices."""
    import gradio as gr

    from demo.widgets import param_control

    rules = {r["name"]: r for r in example_registry.describe()["step_rules"]}
    spacing = next(q for q in rules["unipc"]["params"] if q["name"] == "spacing")
    control = param_control(spacing, visible=True, plugin="unipc")
    assert isinstance(control, gr.Dropdown) and [c[0] for c in control.choices] == ["time", "logsnr", "karras"]
    strategies = {g["name"]: g for g in example_registry.describe()["guidance"]}
    interval = next(q for q in strategies["classifier-free"]["params"] if q["name"] == "interval")
    assert isinstance(param_control(interval, visible=True, plugin="classifier-free"), gr.Textbox)


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
    lines = ok(glide("compare", PROMPT, "--steps", 3, "--seeds", 1, "--strategies", "none,pull-colour",
                     "--scales", "0,30", cwd=tmp_path))
    assert [line.split()[:2] for line in lines[1:5]] == [["none", "-"], ["pull-colour", "0"], ["pull-colour", "2"],
                                                         ["pull-colour", "30"]]


@pytest.mark.slow
def test_demo_api(plugin_dir, example_registry, monkeypatch):
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
                                         seeds=1, api_name="/compare")
        # The plugin's declared scale was swept: a row per scale.
        assert [(r["guidance"], r["scale"]) for r in scores["rows"]] == [
            ("none", None), ("pull-colour", 0.0), ("pull-colour", 2.0), ("pull-colour", 30.0)]
        # The example plugin (installed) and the new built-ins, through the same API.
        images = client.predict(PROMPT, seed=3, steps=4, upsample=False, sampler="trailing-ddim", guidance="apg",
                                plugin_params='{"eta": 0.25}', api_name="/generate")
        settings = read_settings(Image.open(images[0]["image"]))
        assert settings["sampler"] == "trailing-ddim" and settings["guidance_params"]["eta"] == 0.25
        images = client.predict(PROMPT, seed=3, steps=4, upsample=False, sampler="dpm++3m", guidance="cfg-rescale",
                                plugin_params='{"spacing": "logsnr", "interval": "0.28,5.42"}', api_name="/generate")
        settings = read_settings(Image.open(images[0]["image"]))
        assert settings["sampler_params"] == {"spacing": "logsnr"}
        assert settings["guidance_params"] == {"guidance_scale": 3.0, "phi": 0.7, "interval": "0.28,5.42"}
    finally:
        server.stop()
