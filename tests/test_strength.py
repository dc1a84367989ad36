"""Editing from an intermediate start (SDEdit): `strength` with `init_image` (image to image) and with inpainting
(the image's own pixels, strokes included, inside the mask), through Python, the CLI and the demo's API."""
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from glide.errors import InputError, UserError
from glide.pngmeta import read_settings
from glide.settings import GenerationSettings

RED_LEFT = "a small red circle on the left on a blue background"
GREEN_LEFT = "a small green circle on the left on a blue background"
FAST = dict(upsample=False, steps=10)


@pytest.fixture(scope="module")
def pipe():
    from glide.pipeline import load_pipeline

    return load_pipeline("shapes", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def render(pipe):
    """A picture the model drew for RED_LEFT (its own picture: what image to image starts from)."""
    return pipe.generate(RED_LEFT, seed=3, **FAST).images[0]


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_strength_1_is_text_to_image_bit_for_bit(pipe, render):
    plain = pipe.generate(GREEN_LEFT, seed=[5, 6], **FAST)
    for same in (pipe.generate(GREEN_LEFT, seed=[5, 6], strength=1, **FAST),
                 pipe.generate(GREEN_LEFT, seed=[5, 6], strength=1.0, init_image=render, **FAST)):
        assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(plain.images, same.images))
    inpaint_args = (render, Image.new("L", render.size, 255), GREEN_LEFT)
    assert np.array_equal(pixels(pipe.inpaint(*inpaint_args, seed=1, **FAST).images[0]),
                          pixels(pipe.inpaint(*inpaint_args, seed=1, strength=1, **FAST).images[0]))


def test_image_to_image_keeps_the_layout_at_low_strength_and_counts_its_steps(pipe, render):
    steps = []
    low = pipe.generate(GREEN_LEFT, seed=list(range(4)), init_image=render, strength=0.7,
                        callback=lambda stage, i, n, x0: steps.append(n), **FAST)
    assert set(steps) == {7}, "strength 0.7 of 10 steps runs the last 7"
    for image in low.images:   # the caption's colour, the starting image's place and size
        verdict = pipe.check(image, GREEN_LEFT)
        assert verdict["all"], verdict
    assert low.settings[0]["strength"] == 0.7 and low.settings[0]["init_image"].startswith("sha256:")
    # Lower strength keeps more of the starting picture.
    distance = {s: np.abs(pixels(pipe.generate(RED_LEFT, seed=0, init_image=render, strength=s, **FAST).images[0])
                          - pixels(render)).mean() for s in (0.3, 1.0)}
    assert distance[0.3] < distance[1.0]


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++2m", "dpm++3m", "unipc", "trailing-ddim"])
def test_every_step_rule_runs_from_an_intermediate_start(pipe, render, sampler):
    """The built-in rules and the example plugin's (which picks its own timesteps) visit the tail of their process."""
    steps = []
    result = pipe.generate(RED_LEFT, seed=1, sampler=sampler, init_image=render, strength=0.4,
                           callback=lambda stage, i, n, x0: steps.append(n), **FAST)
    assert set(steps) == {4}
    assert pipe.check(result.images[0], RED_LEFT)["all"]


def test_sketch_inpainting_keeps_the_strokes_colour(pipe):
    """A rough yellow blob painted into the mask, strength 0.7: the result is a yellow shape where it was painted."""
    scene = Image.new("RGB", (32, 32), (30, 40, 200))
    stroke = Image.new("L", (32, 32), 0)
    ImageDraw.Draw(stroke).ellipse((5, 11, 15, 21), fill=255)
    scene.paste((240, 220, 20), mask=stroke)
    mask = Image.new("L", (32, 32), 0)
    ImageDraw.Draw(mask).rectangle((2, 8, 18, 24), fill=255)
    prompt = "a small yellow square on the left on a blue background"
    result = pipe.inpaint(scene, mask, prompt, seed=2, strength=0.7, **FAST)
    painted = pixels(result.images[0])[np.asarray(stroke) > 0]
    red, green, blue = painted.mean(axis=0)
    assert red > 150 and green > 150 and blue < 120, (red, green, blue)


@pytest.mark.parametrize("kwargs,message", [
    (dict(strength=0), "strength must be above 0"),
    (dict(strength=1.5), "strength must be between 0 and 1"),
    (dict(strength=math.nan), "strength must be a finite number"),
    (dict(strength="strong"), "strength must be a number"),
    (dict(strength=0.5), "give init_image"),
    (dict(init_image="not an image"), "init_image must be an image"),
])
def test_bad_strength_is_named(kwargs, message):
    with pytest.raises(InputError, match=message):
        GenerationSettings.create(RED_LEFT, **kwargs)


def test_a_starting_image_of_any_size_or_mode_is_taken_and_the_wrong_one_refused(pipe, render):
    odd = render.resize((90, 40)).convert("P")
    assert len(pipe.generate(RED_LEFT, seed=0, init_image=odd, strength=0.6, **FAST).images) == 1
    settings = GenerationSettings.create(RED_LEFT, seed=0, init_image=render, strength=0.6, **FAST)
    with pytest.raises(UserError, match="pass that image"):
        pipe.run(settings)
    with pytest.raises(UserError, match="the one given is another"):
        pipe.run(settings, init_image=odd)


def _glide(*args, cwd):
    return subprocess.run([sys.executable, "-m", "glide", *args, "--device", "cpu", "--dtype", "float32",
                           "--out", str(cwd / "out")], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_generate_from_an_image_and_inpaint_with_strength(tmp_path, render):
    render.save(tmp_path / "start.png")
    made = _glide("generate", GREEN_LEFT, "--init-image", str(tmp_path / "start.png"), "--strength", "0.6",
                  "--steps", "4", "--no-upsample", "--seed", "2", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    saved = read_settings(made.stdout.split()[-1])
    assert saved["strength"] == 0.6 and saved["init_image"].startswith("sha256:")
    Image.new("L", render.size, 255).save(tmp_path / "mask.png")
    edited = _glide("inpaint", str(tmp_path / "start.png"), str(tmp_path / "mask.png"), GREEN_LEFT, "--strength",
                    "0.7", "--steps", "4", "--no-upsample", cwd=tmp_path)
    assert edited.returncode == 0, edited.stderr
    assert read_settings(edited.stdout.split()[-1])["strength"] == 0.7
    refused = _glide("generate", GREEN_LEFT, "--strength", "0.5", cwd=tmp_path)
    assert refused.returncode == 2 and "give init_image" in refused.stderr


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    from demo.testing import missing_weights, shared_server

    if missing_weights():
        pytest.skip(missing_weights())
    return Client(shared_server().url, verbose=False)


def test_api_generate_from_an_image_and_inpaint_with_strength(client, render, tmp_path):
    from gradio_client import handle_file

    render.save(tmp_path / "start.png")
    Image.new("L", render.size, 255).save(tmp_path / "mask.png")
    images = client.predict(GREEN_LEFT, init_image=handle_file(str(tmp_path / "start.png")), strength=0.6, steps=4,
                            upsample=False, api_name="/generate")
    saved = read_settings(images[0]["image"])
    assert saved["strength"] == 0.6 and saved["init_image"].startswith("sha256:")
    images = client.predict(GREEN_LEFT, handle_file(str(tmp_path / "start.png")), handle_file(str(tmp_path / "mask.png")),
                            strength=0.7, steps=4, upsample=False, api_name="/inpaint")
    assert read_settings(images[0]["image"])["strength"] == 0.7
    with pytest.raises(Exception, match="give init_image"):
        client.predict(GREEN_LEFT, strength=0.5, api_name="/generate")
