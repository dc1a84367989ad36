"""The Inpainting tab in a browser: a picture of any shape edited where it is painted and given back whole, the
painter's keys, the grown mask shown (hatched) before inpainting, and Text to image's controls (a batch, a
negative prompt, DeepCache) reaching the job, with the results' labels clear of their buttons at phone width."""
import io

import numpy as np
from browser_support import PAINTER, PROMPT, drag, fetch_image, inpaint, paint_stroke, painter_state, shot
from PIL import Image

from demo.imaging import grow_mask
from demo.testing import set_slider
from glide.data import shapes
from glide.pngmeta import read_settings


def upload(page, tmp_path, picture: Image.Image):
    """Put `picture` into the painter through its Upload button and wait until it can be painted on."""
    page.get_by_role("tab", name="Inpainting").click()
    path = tmp_path / "upload.png"
    picture.save(path)
    page.set_input_files(f"{PAINTER} input.painter-file", str(path))
    page.wait_for_function(f"document.querySelector('{PAINTER}').dataset.ready === 'true'")


def scene(side: int) -> Image.Image:
    return shapes.render(shapes.parse_caption(PROMPT), 32).resize((side, side), Image.BICUBIC)


def painter_data(page) -> dict:
    return page.evaluate(f"({{...document.querySelector('{PAINTER}').dataset}})")


def test_a_wide_picture_edited_at_its_far_edge_comes_back_whole(page, tmp_path):
    """A 300x120 picture with a rectangle painted at its right edge: the painter outlines the square the model
    works on there, and the result is the whole 300x120 picture, changed only where it was painted."""
    picture = Image.new("RGB", (300, 120))
    for left in (0, 120, 180):
        picture.paste(scene(120), (left, 0))
    upload(page, tmp_path, picture)
    page.locator(f'{PAINTER} button[data-tool="rect"]').click()
    drag(page, (0.86, 0.2), (0.995, 0.8), moves=10)
    assert painter_data(page)["window"] == "180,0,120", painter_data(page)
    page.fill("#inpaint-prompt textarea", "a big green square at the top on a white background")
    inpaint(page)
    result = fetch_image(page, "#inpaint-result img")
    assert result.size == (300, 120)
    changed = np.abs(np.asarray(result, dtype=int) - np.asarray(picture, dtype=int)).max(axis=2) > 0
    assert changed[30:90, 265:].mean() > 0.5, "the region painted at the far right was not edited"
    assert not changed[:, :250].any(), "the picture changed outside the painted region"


def test_ctrl_z_undoes_and_brackets_size_the_brush(page, tmp_path):
    upload(page, tmp_path, scene(64))
    size = page.locator(f"{PAINTER} input.painter-size")
    assert size.input_value() == "3"
    paint_stroke(page)
    page.keyboard.press("Control+z")
    assert painter_state(page)["painted"] == 0 and painter_state(page)["status"] == "Undone."
    page.keyboard.press("]")
    page.keyboard.press("]")
    page.keyboard.press("[")
    assert size.input_value() == "4" and "4 model px" in page.inner_text(f"{PAINTER} .painter-size-text")
    page.click("#inpaint-prompt textarea")   # in a text field the keys are the field's
    page.keyboard.press("[")
    assert size.input_value() == "4" and page.input_value("#inpaint-prompt textarea") == "["


def test_the_grown_mask_shows_hatched_in_the_painter_before_inpainting(page, tmp_path):
    """A rectangle on a purple picture (the colour a magenta tint vanished on) shows black and white hatching;
    Grow the mask 2 shows what it adds, exactly the pixels the server adds (demo.imaging.grow_mask)."""
    upload(page, tmp_path, Image.new("RGB", (64, 64), shapes.PALETTE["purple"]))
    page.locator(f'{PAINTER} button[data-tool="rect"]').click()
    drag(page, (0.3, 0.3), (0.6, 0.6), moves=10)
    shown = page.evaluate(f"""() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => {{
        const c = document.querySelector('{PAINTER} canvas'), s = Math.round(c.width * 0.1);
        done(Array.from(c.getContext('2d').getImageData(Math.round(c.width * 0.4), Math.round(c.height * 0.4),
                                                        s, s).data)); }})))""")
    pixels = np.asarray(shown).reshape(-1, 4)[:, :3]
    assert (pixels.max(axis=1) < 40).any() and (pixels.min(axis=1) > 215).any(), "no black and white hatching"
    x0, y0, x1, y1 = map(int, painter_data(page)["box"].split(","))
    page.locator("#inpaint-settings").scroll_into_view_if_needed()
    set_slider(page, "grow-mask", 2)
    page.wait_for_function(f"Number(document.querySelector('{PAINTER}').dataset.grown) > 0")
    painted = Image.new("L", (64, 64), 0)
    painted.paste(255, (x0, y0, x1, y1))
    added = (np.asarray(grow_mask(painted, 2, 32)) > 0).sum() - (x1 - x0) * (y1 - y0)
    assert int(painter_data(page)["grown"]) == added


def test_a_batch_with_a_negative_prompt_and_deep_cache_comes_back_whole_and_reads_at_phone_width(page, tmp_path):
    upload(page, tmp_path, scene(64))
    paint_stroke(page)
    page.fill("#inpaint-prompt textarea", PROMPT)
    page.locator("#inpaint-settings").get_by_text("Settings").first.click()
    page.fill("#inpaint-negative textarea", "a big green square at the top on a white background")
    set_slider(page, "inpaint-batch", 2)
    set_slider(page, "inpaint-deep-cache", 2)
    inpaint(page, steps=4)
    page.wait_for_function("document.querySelector('#inpaint-status').innerText.includes('2 result(s)')")
    sources = [img.get_attribute("src") for img in page.locator("#inpaint-result img").all()]
    settings = [read_settings(io.BytesIO(page.request.get(src).body())) for src in dict.fromkeys(sources)]
    assert len(settings) == 2 and settings[1]["seed"] == settings[0]["seed"] + 1
    assert all(s["negative_prompt"].startswith("a big green square") and s["deep_cache"] == 2 for s in settings)
    page.set_viewport_size({"width": 420, "height": 900})
    for view in ("#masked-input", "#inpaint-result"):
        label = page.locator(f"{view} [data-testid=block-label]").bounding_box()
        for button in page.locator(f"{view} .icon-button-wrapper button").all():   # its toolbar
            box = button.bounding_box()
            if box and box["width"] and box["y"] < label["y"] + label["height"]:
                overlap = box["x"] < label["x"] + label["width"] and label["x"] < box["x"] + box["width"]
                if overlap:
                    shot(page, "inpaint-phone-label")
                assert not overlap, f"{view}'s label covers one of its buttons at phone width"
