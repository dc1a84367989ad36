"""The demo in a real browser: headless Chromium (Debian's package) driven by Playwright.

Types a prompt and generates (with a live preview), restores settings from a generated PNG, sends
the image to the inpainting tab, paints a brush stroke and inpaints, and compares guidance. Each
step leaves a screenshot under artifacts/screenshots/ (look at them); with
GLIDE_UPDATE_SCREENSHOTS=1 one screenshot per tab also replaces those in docs/screenshots/ for the
README (opt-in, so that running the tests leaves the work tree clean). Chromium is installed with
apt-get when missing; the tests are skipped, saying why, when that is impossible.
"""
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
PROMPT = "a small red circle on the left on a blue background"
TIMEOUT_MS = 120_000

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (see requirements.txt)")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium; installed with apt-get if missing (we run as root), else the tests skip."""
    if not Path(CHROMIUM).exists():
        if shutil.which("apt-get") is None:
            pytest.skip(f"{CHROMIUM} is missing and there is no apt-get to install it")
        try:
            for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
                subprocess.run(cmd, check=True, capture_output=True, timeout=900,
                               env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        except (subprocess.SubprocessError, OSError) as exc:
            output = getattr(exc, "stderr", b"") or b""
            pytest.skip(f"could not install Chromium with apt-get ({exc}): {output.decode(errors='replace')[-500:]}")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"apt-get ran but {CHROMIUM} is still missing")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser_page(chromium):
    """One browser and page for the module; the `page` fixture reloads the app for every test."""
    from demo.testing import missing_weights, shared_server

    if missing_weights():
        pytest.skip(missing_weights())

    server = shared_server()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        yield page, server.url
        browser.close()


@pytest.fixture
def page(browser_page):
    """The app freshly loaded (a new gradio session), at desktop width: no test relies on another's state."""
    page, url = browser_page
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_selector("#prompt textarea")
    return page


def shot(page, name: str, docs: str = None):
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if docs and os.environ.get("GLIDE_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(path, DOCS / docs)


def wait_for(page, selector: str):
    """Wait for `selector`, failing at once with the message if the app shows an error instead."""
    page.wait_for_selector(f"{selector}, .toast-body")
    toasts = page.locator(".toast-body")
    if toasts.count():
        pytest.fail(f"the app showed an error: {toasts.first.inner_text()}")


def set_slider(page, elem_id: str, value: int):
    """Type into the number box of a gr.Slider."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_generate_shows_progress_preview_and_images(page):
    page.fill("#prompt textarea", PROMPT)
    set_slider(page, "steps", 12)
    page.click("#generate-btn")
    page.wait_for_selector("#preview img")            # the live x0 preview arrives during sampling
    shot(page, "1-generate-running")
    wait_for(page, "#gallery img")
    page.wait_for_function("document.querySelector('#status').innerText.includes('image(s) in')")
    assert page.locator("#gallery img").count() >= 2  # the final image and the base image
    shot(page, "2-generate-done", docs="text-to-image.png")


def test_stop_cancels_a_running_generation(page):
    set_slider(page, "steps", 250)
    page.click("#generate-btn")
    page.wait_for_function("document.querySelector('#status').innerText.includes('step')")
    page.click("#stop-btn")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Stopped')")
    shot(page, "2b-generate-stopped")
    set_slider(page, "steps", 12)


def test_dropping_a_generated_png_restores_its_settings(page, tmp_path):
    src = page.locator("#gallery img").first.get_attribute("src")
    png = tmp_path / "generated.png"
    png.write_bytes(page.request.get(src).body())
    page.fill("#prompt textarea", "something else")
    page.get_by_text("Restore settings from an image").click()
    page.locator("#settings-drop input[type=file]").set_input_files(str(png))
    page.wait_for_function(f"document.querySelector('#prompt textarea').value === {PROMPT!r}")
    assert "Restored the settings" in page.inner_text("#status")
    shot(page, "3-settings-restored")


def test_inpaint_a_brush_stroke(page):
    page.get_by_text("Edit the selected image in Inpainting").click()
    # The editor shows its zoom level once the sent image is on the canvas.
    page.wait_for_function("document.querySelector('#editor')?.innerText.includes('%')")
    undo = page.locator("#editor button[aria-label='Undo']").first
    for attempt in range(5):
        # The canvas takes a moment to set up its drawing layer; a stroke before that is lost, which
        # the still-disabled Undo button tells.
        time.sleep(3)
        box = page.locator("#editor canvas").first.bounding_box()
        x, y = box["x"] + box["width"] / 2 - 70, box["y"] + box["height"] / 2 - 30
        page.mouse.move(x, y)
        page.mouse.down()
        for k in range(1, 5):  # few pointer events: each one re-renders the (software-WebGL) canvas
            page.mouse.move(x + 35 * k, y + 15 * k)
        page.mouse.up()
        if undo.is_enabled():
            break
        print(f"brush stroke {attempt + 1} did not reach the canvas; trying again")
    assert undo.is_enabled(), "the brush stroke never reached the canvas"
    shot(page, "4-inpaint-stroke")
    page.click("#inpaint-btn")
    wait_for(page, "#inpaint-result img")
    page.wait_for_selector("#masked-input img")
    shot(page, "5-inpaint-done", docs="inpainting.png")


def upsampler_settings(page):
    return page.locator("#upsample-rule input").input_value(), page.locator("#upsample-steps input").input_value()


def test_choosing_a_model_offers_the_download_and_applies_its_sampling_defaults(page):
    """Only the offer is checked: the tests never start a real multi-gigabyte download."""
    page.get_by_role("tab", name="Text to image").click()
    page.locator("#model input").click()
    page.get_by_role("option", name=re.compile("glide-filtered")).click()
    page.locator("#download-btn").wait_for()
    assert "≈5.4 GB" in page.locator("#model input").input_value()
    # GLIDE's upsampler defaults to the notebook's DDPM fast27, not the shapes family's DDIM 8.
    page.wait_for_function("document.querySelector('#upsample-steps input').value === 'fast27'")
    assert upsampler_settings(page) == ("ddpm", "fast27")
    shot(page, "5b-model-download-offered")
    page.locator("#model input").click()
    page.get_by_role("option", name=re.compile("shapes")).click()
    page.locator("#download-btn").wait_for(state="hidden")
    page.wait_for_function("document.querySelector('#upsample-steps input').value === '8'")
    assert upsampler_settings(page) == ("ddim", "8")


def test_compare_shows_three_guidance_kinds(page):
    page.get_by_role("tab", name="Guidance comparison").click()
    page.fill("#compare-prompt textarea", PROMPT)
    set_slider(page, "compare-steps", 10)
    page.click("#compare-btn")
    page.wait_for_function("document.querySelectorAll('#compare-gallery img').length >= 3")
    captions = page.inner_text("#compare-gallery")
    for kind in ("CLIP guidance", "Classifier-free", "Unguided"):
        assert kind in captions
    shot(page, "6-compare-done", docs="guidance-comparison.png")


def test_no_handler_failed_on_the_server(page):
    from demo.testing import shared_server

    assert shared_server().alive()
    assert "unexpected error in" not in shared_server().log()


# ---------------------------------------------------------------------------------------------- helpers
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


def click_and_wait_for_editor_image(page, button_text: str, timeout_s: float = 30):
    """Click the button that sends an image to the editor; wait until the editor shows it: its zoom
    level, no more loading (no timer like "2.1s"), and either a canvas that was not there before the
    click (the demo mounts a fresh editor) or, should the editor keep its canvas, 3 s after the click."""
    page.evaluate("document.querySelectorAll('#editor canvas').forEach(c => c.dataset.stale = '1')")
    page.get_by_text(button_text).click()
    try:
        page.wait_for_function(
            "(since) => { const t = document.querySelector('#editor')?.innerText || '';"
            " const fresh = document.querySelector('#editor canvas:not([data-stale])') || Date.now() - since > 3000;"
            " return fresh && t.includes('%') && !/^\\d+(\\.\\d+)?s$/m.test(t); }",
            arg=int(time.time() * 1000), timeout=timeout_s * 1000)
    except sync_api.TimeoutError:
        shot(page, "editor-still-loading")
        pytest.fail(f"the editor still loads after {timeout_s:.0f} s: {page.inner_text('#editor')!r}")


def paint_stroke(page, dx: float = -70, dy: float = -30):
    """A brush stroke over the editor's canvas, retried until Undo says the canvas took it."""
    undo = page.locator("#editor button[aria-label='Undo']").first
    for attempt in range(5):
        # The canvas takes a moment to set up its drawing layer; a stroke before that is lost, which
        # the still-disabled Undo button tells.
        time.sleep(1.5)
        canvas = page.locator("#editor canvas").first
        canvas.scroll_into_view_if_needed()  # the mouse acts at viewport coordinates
        box = canvas.bounding_box()
        x, y = box["x"] + box["width"] / 2 + dx, box["y"] + box["height"] / 2 + dy
        page.mouse.move(x, y)
        page.mouse.down()
        for k in range(1, 5):  # few pointer events: each one re-renders the (software-WebGL) canvas
            page.mouse.move(x + 35 * k, y + 15 * k)
        page.mouse.up()
        if undo.is_enabled():
            return
        print(f"brush stroke {attempt + 1} did not reach the canvas; trying again")
    shot(page, "brush-stroke-lost")
    pytest.fail("the brush stroke never reached the canvas")


def inpaint(page, steps: int = 5) -> str:
    """Inpaint with few steps and no upsampler; the result image's src."""
    if not page.locator("#inpaint-steps").is_visible():
        page.locator("#inpaint-settings").get_by_text("Settings").first.click()
    set_slider(page, "inpaint-steps", steps)
    upsample = page.locator("#inpaint-upsample input[type=checkbox]")
    if upsample.is_checked():
        upsample.uncheck()
    before = page.locator("#inpaint-result img").get_attribute("src") if page.locator("#inpaint-result img").count() else None
    page.click("#inpaint-btn")
    page.wait_for_function(
        "(before) => { const i = document.querySelector('#inpaint-result img');"
        " return (i && i.getAttribute('src') !== before) || document.querySelector('.toast-body'); }",
        arg=before)
    toasts = page.locator(".toast-body")
    if toasts.count():
        pytest.fail(f"the app showed an error: {toasts.first.inner_text()}")
    return page.locator("#inpaint-result img").get_attribute("src")


def test_two_successive_edits(page):
    """Inpaint, use the result as the next input, paint on it, inpaint again: the second result shows."""
    generate(page)
    click_and_wait_for_editor_image(page, "Edit the selected image in Inpainting")
    paint_stroke(page)
    first = inpaint(page)
    shot(page, "edit-1-done")
    click_and_wait_for_editor_image(page, "Use the result as the next input")
    paint_stroke(page, dx=10, dy=10)
    second = inpaint(page)
    assert second != first
    shot(page, "edit-2-done")


def test_sending_a_second_image_into_an_editor_that_holds_one(page):
    """An edit of one generated image, then a second generated image sent over it, painted and inpainted."""
    generate(page)
    click_and_wait_for_editor_image(page, "Edit the selected image in Inpainting")
    paint_stroke(page)
    first = inpaint(page)
    page.get_by_role("tab", name="Text to image").click()
    generate(page, "a large yellow square at the top on a black background")
    click_and_wait_for_editor_image(page, "Edit the selected image in Inpainting")
    paint_stroke(page, dx=10, dy=10)
    assert inpaint(page) != first
    shot(page, "edit-second-image-done")
