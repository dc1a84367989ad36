"""The end-to-end pipeline on the embedded shapes family (CPU): sizes, seeds, inpainting, comparison, PNGs."""
import numpy as np
import pytest
from PIL import Image

from glide.errors import InputError
from glide.families import FAMILIES, list_models
from glide.images import EditWindow
from glide.pipeline import load_pipeline
from glide.pngmeta import read_settings, save_png
from samplers import SamplerError

PROMPT = "a small red circle on the left on a blue background"
FAST = dict(steps=8, upsample_steps="6")


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("shapes", device="cpu", dtype="float32")  # bf16: tests/test_precision.py


def pixels(img):
    return np.asarray(img, dtype=np.int16)


def test_generate_sizes_settings_and_seeds(pipe):
    prompts = [PROMPT, "a big green square at the top on a white background"]
    res = pipe.generate(prompts, seed=5, **FAST)
    assert [im.size for im in res.images] == [(128, 128)] * 2
    assert [im.size for im in res.base_images] == [(32, 32)] * 2
    assert [s["seed"] for s in res.settings] == [5, 6]
    assert res.settings[0]["prompt"] == PROMPT and res.settings[0]["model"] == "shapes"
    # Item 1 of the batch regenerates alone from its own settings.
    s = res.settings[1]
    alone = pipe.generate([s["prompt"]], seed=s["seed"], steps=s["steps"], sampler=s["sampler"],
                          guidance=s["guidance"], guidance_params=s["guidance_params"],
                          upsample_steps=s["upsample_steps"])
    assert np.abs(pixels(alone.base_images[0]) - pixels(res.base_images[1])).max() <= 1
    again = pipe.generate(prompts, seed=5, **FAST)  # same call, same device: identical images
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(again.images, res.images))
    other = pipe.generate([PROMPT], seed=6, **FAST)
    assert not np.array_equal(pixels(other.base_images[0]), pixels(res.base_images[0]))


def test_batch_size_repeats_one_prompt(pipe):
    res = pipe.generate(PROMPT, batch_size=3, upsample=False, steps=4)   # no seed: random, one run of seeds
    assert len(res.images) == 3 and res.images[0].size == (32, 32)
    first = res.settings[0]["seed"]
    assert [s["seed"] for s in res.settings] == [first, first + 1, first + 2]


def test_inpaint_keeps_the_unmasked_region(pipe):
    source = pipe.generate([PROMPT], seed=1, upsample=False, steps=8).base_images[0].resize((200, 200))
    mask = Image.new("L", (200, 200), 0)
    mask.paste(255, (0, 0, 200, 90))   # white = edit: the top part
    res = pipe.inpaint(source, mask, ["a small green triangle at the top on a blue background"], seed=0, **FAST)
    assert res.base_images[0].size == (32, 32) and res.masked_inputs[0].size == (32, 32)
    keep = np.asarray(mask.resize((32, 32), Image.NEAREST)) <= 127
    expected = pixels(source.resize((32, 32), Image.BICUBIC))
    assert np.array_equal(pixels(res.base_images[0])[keep], expected[keep])
    # The result is the picture at its size: the upsampled edit where the mask is, the rest the picture's own.
    result = res.images[0]
    assert result.size == (200, 200)
    assert np.array_equal(pixels(result)[90:], pixels(source)[90:])
    assert not np.array_equal(pixels(result)[:90], pixels(source)[:90])


def test_a_wide_picture_is_edited_where_it_is_painted_and_comes_back_whole(pipe):
    """A 300x120 picture edited at its far right edge: the model works on the 120 px square there, the result
    is the whole picture with the edit in place; a mask of another size (here half) is resized to the picture."""
    scene = pipe.generate([PROMPT], seed=1, upsample=False, steps=8).base_images[0]
    picture = Image.new("RGB", (300, 120))
    for left in (0, 120, 180):
        picture.paste(scene.resize((120, 120)), (left, 0))
    mask = Image.new("L", (150, 60), 0)
    mask.paste(255, (125, 10, 150, 50))   # the picture's x 250-300, y 20-100
    res = pipe.inpaint(picture, mask, "a big green square at the top on a white background", seed=0,
                       upsample=False, steps=8)
    result, before = pixels(res.images[0]), pixels(picture)
    assert res.images[0].size == (300, 120)
    changed = np.abs(result - before).max(axis=2) > 0
    assert changed[20:100, 250:].mean() > 0.5, "the painted region at the far right was not edited"
    assert not changed[:, :250].any() and not changed[:20].any() and not changed[100:].any()
    # What the base model saw is the picture's rightmost square, the painted part greyed.
    square = picture.crop((180, 0, 300, 120)).resize((32, 32), Image.BICUBIC)
    seen = pixels(res.masked_inputs[0])
    assert np.array_equal(seen[:4], pixels(square)[:4]) and (seen[10:24, 28:] == 128).all()


@pytest.mark.parametrize("size,mask_box,window", [
    ((64, 64), (10, 10, 20, 20), (0, 0, 64)),          # a square picture: all of it, as before
    ((300, 120), (0, 0, 10, 10), (0, 0, 120)),         # the short side's square, at the mask, inside the picture
    ((300, 120), (290, 110, 300, 120), (180, 0, 120)),
    ((300, 120), (140, 50, 160, 70), (90, 0, 120)),    # centred on the mask
    ((120, 300), (50, 140, 70, 160), (0, 90, 120)),
    ((300, 120), (20, 40, 220, 60), (20, -40, 200)),   # a mask longer than the short side: the square grows
    ((300, 120), (0, 50, 300, 60), (0, -90, 300)),     # up to the whole picture, centred, its edges repeated
])
def test_the_edit_window(size, mask_box, window):
    mask = Image.new("L", size, 0)
    mask.paste(255, mask_box)
    edit = EditWindow.of(Image.new("RGB", size, (10, 20, 30)), mask)
    assert (edit.left, edit.top, edit.side) == window
    image, square_mask = edit.square()
    assert image.size == square_mask.size == (window[2], window[2])
    assert np.asarray(image).reshape(-1, 3).tolist() == [[10, 20, 30]] * window[2] ** 2   # padded with the edge
    assert np.asarray(square_mask).sum() == np.asarray(mask).sum()   # all of the mask is in the window
    put_back = pixels(edit.put_back(Image.new("RGB", (32, 32), (200, 200, 200))))
    assert put_back.shape == (size[1], size[0], 3)
    assert (put_back[np.asarray(mask) > 0] == 200).all() and (put_back[np.asarray(mask) == 0] < 200).all()


def test_an_upsampled_edit_of_a_small_picture_keeps_the_upsamplers_pixels():
    """A 32 px picture inpainted with the upsampler on: its 128 px output is the result's, the picture around
    it enlarged 4x (resizing the output down to 32 px would throw the upsampling away)."""
    picture = Image.new("RGB", (48, 32), (10, 20, 30))
    mask = Image.new("L", (48, 32), 0)
    mask.paste(255, (40, 8, 48, 16))
    edit = EditWindow.of(picture, mask)
    assert (edit.left, edit.top, edit.side) == (16, 0, 32)
    result = pixels(edit.put_back(Image.new("RGB", (128, 128), (200, 200, 200))))
    assert result.shape == (128, 192, 3)
    edited = np.zeros((128, 192), bool)
    edited[32:64, 160:192] = True
    assert (result[edited] == 200).all() and (result[~edited] == [10, 20, 30]).all()


@pytest.mark.parametrize("mask,message", [
    (Image.new("L", (64, 64), 0), "mask is empty"),
    (Image.new("RGBA", (64, 64), (0, 0, 0, 0)), "mask is empty"),
    ("not an image", "must be a PIL image"),
])
def test_inpaint_bad_masks(pipe, mask, message):
    with pytest.raises(InputError, match=message):
        pipe.inpaint(Image.new("RGB", (64, 64)), mask, [PROMPT], **FAST)


def test_compare(pipe):
    entries = pipe.compare(PROMPT, seed=2, seeds=2, steps=6)
    assert [(e.guidance, e.seed) for e in entries] == [("clip", 2), ("clip", 3), ("classifier-free", 2),
                                                       ("classifier-free", 3), ("none", 2), ("none", 3)]
    for e in entries:
        assert e.image.size == (32, 32) and e.seconds > 0
        assert isinstance(e.clip_score, float) and -1 <= e.clip_score <= 1
        assert set(e.checker) >= {"all", "background", "shapes"}


def test_upsample_reproduces_generate_from_its_base_images(pipe):
    prompts = [PROMPT, "a big green square at the top on a white background"]
    full = pipe.generate(prompts, seed=11, steps=4, upsample_steps="3")
    again = pipe.upsample(full.base_images, prompts, steps="3", seed=11)
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(again.images, full.images))


def test_upsample_given_images(pipe):
    small = [pipe.generate([PROMPT], seed=s, steps=4, upsample=False).base_images[0] for s in (1, 2)]
    res = pipe.upsample(small, PROMPT, steps="4", seed=9)
    assert [im.size for im in res.images] == [(128, 128)] * 2
    assert [s["seed"] for s in res.settings] == [9, 10] and res.settings[0]["mode"] == "upsample"
    assert res.settings[0]["upsample_sampler"] == pipe.family.default_upsample_sampler
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(res.base_images, small))
    # Any input size is centre-cropped and resized to the base size first.
    big = small[0].resize((80, 64))
    assert pipe.upsample(big, PROMPT, steps="2").base_images[0].size == (32, 32)
    with pytest.raises(InputError, match="one prompt per image"):
        pipe.upsample(small, [PROMPT] * 3)
    for nothing in ([None], []):
        with pytest.raises(InputError, match="image to upsample"):
            pipe.upsample(nothing, PROMPT)


@pytest.mark.parametrize("kw,error,message", [
    (dict(prompts=[""]), InputError, "prompt is empty"),
    (dict(prompts=["x" * 2000]), InputError, "too long"),
    (dict(prompts=[PROMPT], seed=-5), InputError, "seed"),
    (dict(prompts=[PROMPT, PROMPT], seed=[1, 2, 3]), InputError, "one seed per image"),
    (dict(prompts=[PROMPT], guidance_scale=float("nan")), InputError, "finite"),
    (dict(prompts=[PROMPT], guidance_params={"guidance_scale": float("nan")}), SamplerError, "finite"),
    (dict(prompts=[PROMPT], sampler="nope"), SamplerError, "available"),
    (dict(prompts=[PROMPT], steps=5000), InputError, "between 1 and 1000"),
    (dict(prompts=[PROMPT], batch_size=0), InputError, "batch_size"),
])
def test_bad_inputs(pipe, kw, error, message):
    prompts = kw.pop("prompts")
    with pytest.raises(error, match=message):
        pipe.generate(prompts, upsample=False, **kw)


def test_png_settings_round_trip(pipe, tmp_path):
    res = pipe.generate([PROMPT], seed=3, upsample=False, steps=4)
    path = save_png(res.images[0], tmp_path / "out.png", res.settings[0])
    assert read_settings(path) == res.settings[0]
    assert read_settings(Image.new("RGB", (4, 4))) is None
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


def test_list_models():
    rows = {r["name"]: r for r in list_models()}
    assert rows["shapes"]["ready"] and rows["shapes"]["components"]["base"]["bytes"] > 0
    assert set(rows) == {"shapes", "glide-filtered"}


def test_a_clip_score_never_downloads_and_never_hides_an_error(tmp_path, monkeypatch, vocab_dir):
    """No CLIP on disk: no score, and no download started (a worker must never fetch gigabytes for a score);
    a CLIP file that is on disk but broken is an error, not a silent None."""
    import shutil

    from glide import download

    for filename in download.VOCAB_FILES:   # the tokenizers' files in place, as after `glide download`
        shutil.copy(vocab_dir / filename, tmp_path / filename)
    monkeypatch.setenv("GLIDE_CACHE_DIR", str(tmp_path))
    from glide.errors import CheckpointError
    from glide.pipeline import Pipeline

    def no_downloads(*args, **kwargs):
        raise AssertionError("clip_score started a download")

    monkeypatch.setattr(download, "_download", no_downloads)
    image = Image.new("RGB", (64, 64), "white")
    pipe = Pipeline(FAMILIES["glide-filtered"], "cpu", "float32", checkpoint_dir=tmp_path)
    assert pipe.clip_score(image, "a corgi") is None
    for name in ("clip/image-enc", "clip/text-enc"):
        path = tmp_path / download.CHECKPOINT_FILENAMES[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        Pipeline(FAMILIES["glide-filtered"], "cpu", "float32", checkpoint_dir=tmp_path).clip_score(image, "a corgi")


def test_a_comparison_verdict_always_names_what_failed():
    from glide.comparison import checker_verdict

    right = {"shape": True, "color": True, "position": True, "size": True}
    unclean = {"all": False, "background": True, "count": True, "clean": False, "shapes": [right]}
    assert checker_verdict(unclean) == "✗ not clean (stray marks or off-palette colours)"
    assert checker_verdict({**unclean, "clean": True, "shapes": [{**right, "color": False}]}) == "✗ wrong color"
