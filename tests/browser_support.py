"""What the browser tests (tests/test_browser*.py) share: screenshots, waiting for a result or an error, and
driving the demo's tabs and its painter as a person does. The fixtures (`chromium`, `browser_page`, `page`) are
in conftest.py."""
import io
import math
from pathlib import Path

import pytest

from demo.testing import set_slider

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
PROMPT = "a small red circle on the left on a blue background"
TIMEOUT_MS = 120_000


def shot(page, name: str):
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_for(page, selector: str):
    """Wait for `selector`, failing at once with the message if the app shows an error instead."""
    page.wait_for_selector(f"{selector}, .toast-body")
    toasts = page.locator(".toast-body")
    if toasts.count():
        pytest.fail(f"the app showed an error: {toasts.first.inner_text()}")


def generate(page, prompt: str = PROMPT, steps: int = 5):
    """Generate one image, fast (few steps, no upsampler), and wait for it in the gallery."""
    page.fill("#prompt textarea", prompt)
    set_slider(page, "steps", steps)
    upsample = page.locator("#upsample input[type=checkbox]")
    if upsample.is_checked():
        upsample.uncheck()
    page.click("#generate-btn")
    wait_for(page, "#gallery img")
    page.wait_for_function("document.querySelector('#status').innerText.includes('image(s) in')")



def start_a_long_generation(page):
    """Start a generation of 250 steps and wait for its first step: a job still running, for the tests that stop it."""
    page.fill("#prompt textarea", PROMPT)
    set_slider(page, "steps", 250)
    page.click("#generate-btn")
    page.wait_for_function("document.querySelector('#status').innerText.includes('step')")


PAINTER = "#painter .painter"


def painter_state(page) -> dict:
    """What the painter says about itself: ready, the image's id, strokes applied, pixels painted, status
    (all empty while its tab has never been shown: gradio mounts a tab's components when it is first opened)."""
    return page.evaluate(f"""() => {{ const p = document.querySelector('{PAINTER}');
        if (!p) return {{ready: false, image: '', operations: 0, painted: 0, status: ''}};
        return {{ready: p.dataset.ready === 'true', image: p.dataset.imageId || '',
                 operations: Number(p.dataset.operations || 0), painted: Number(p.dataset.painted || 0),
                 status: p.querySelector('.painter-status').innerText}}; }}""")


def send_to_painter(page, button_text: str, timeout_s: float = 10):
    """Click the button that sends an image to the painter and wait until the painter is ready for it (a new
    image id): it is as soon as the browser has decoded the picture, so no sleep follows."""
    before = painter_state(page)["image"]
    page.get_by_text(button_text).click()
    try:
        page.wait_for_function(
            f"(before) => {{ const p = document.querySelector('{PAINTER}');"
            " return p && p.dataset.ready === 'true' && p.dataset.imageId !== before; }",
            arg=before, timeout=timeout_s * 1000)
    except sync_api.TimeoutError:
        shot(page, "painter-not-ready")
        pytest.fail(f"the painter is not ready {timeout_s:.0f} s after the click: {painter_state(page)}")


def canvas_pixel(page, fx: float, fy: float) -> list:
    """The RGBA shown at a fraction (fx, fy) of the painter's canvas, after the next frame is drawn."""
    return page.evaluate(
        f"""([fx, fy]) => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => {{
            const c = document.querySelector('{PAINTER} canvas');
            done(Array.from(c.getContext('2d').getImageData(Math.floor(fx * c.width), Math.floor(fy * c.height),
                                                            1, 1).data)); }})))""", [fx, fy])


def drag(page, start, end, moves: int = 60):
    """One continuous drag as a mouse makes it: press, `moves` pointer moves along a slightly wavy line from
    `start` to `end` (fractions of the painter's canvas), release."""
    canvas = page.locator(f"{PAINTER} canvas")
    canvas.scroll_into_view_if_needed()   # the mouse acts at viewport coordinates
    box = canvas.bounding_box()

    def at(fx, fy):
        return box["x"] + fx * box["width"], box["y"] + fy * box["height"]

    page.mouse.move(*at(*start))
    page.mouse.down()
    for k in range(1, moves + 1):
        t = k / moves
        wobble = 0.01 * math.sin(6 * math.pi * t)   # a hand does not draw a ruler-straight line
        page.mouse.move(*at(start[0] + t * (end[0] - start[0]) + wobble, start[1] + t * (end[1] - start[1])))
    page.mouse.up()


def paint_stroke(page, start=(0.25, 0.25), end=(0.7, 0.55), moves: int = 60):
    """A brush stroke, painted once: it must show at once (one more stroke applied, more pixels marked, the
    canvas changed under its middle), or the test fails. No retry: a lost stroke is the defect."""
    before = painter_state(page)
    middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    shown_before = canvas_pixel(page, *middle)
    drag(page, start, end, moves)
    after = painter_state(page)
    if after["operations"] != before["operations"] + 1 or after["painted"] <= before["painted"]:
        shot(page, "brush-stroke-lost")
        pytest.fail(f"the brush stroke was lost: before {before}, after {after}")
    assert canvas_pixel(page, *middle) != shown_before, "the stroke does not show on the canvas"
    assert after["status"].startswith("Stroke painted"), after


def inpaint(page, steps: int = 5) -> str:
    """Inpaint with few steps and no upsampler; the (first) result image's src."""
    if not page.locator("#inpaint-steps").is_visible():
        page.locator("#inpaint-settings").get_by_text("Settings").first.click()
    set_slider(page, "inpaint-steps", steps)
    upsample = page.locator("#inpaint-upsample input[type=checkbox]")
    if upsample.is_checked():
        upsample.uncheck()
    result = page.locator("#inpaint-result img").first
    before = result.get_attribute("src") if result.count() else None
    page.click("#inpaint-btn")
    page.wait_for_function(
        "(before) => { const i = document.querySelector('#inpaint-result img');"
        " return (i && i.getAttribute('src') !== before) || document.querySelector('.toast-body'); }",
        arg=before)
    toasts = page.locator(".toast-body")
    if toasts.count():
        pytest.fail(f"the app showed an error: {toasts.first.inner_text()}")
    return result.get_attribute("src")


def fetch_image(page, selector: str):
    from PIL import Image

    return Image.open(io.BytesIO(page.request.get(page.get_attribute(selector, "src")).body())).convert("RGB")


def greyed(image, fx: float, fy: float) -> bool:
    """Is the masked input greyed (the region to replace: 0 in [-1, 1], 128) at a fraction of its size?"""
    return image.getpixel((int(fx * image.width), int(fy * image.height))) == (128, 128, 128)
