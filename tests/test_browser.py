"""The demo in a real browser: headless Chromium (Debian's package) driven by Playwright.

Every test loads the page afresh and sets up what it needs (fast settings: few steps, no upsampler
unless the point is the upsampler). Generating with one progress bar for both stages, Stop, Enter
and an empty prompt, restoring settings from a PNG, warnings, the out-of-grammar notice (the Compare tab's
own tests are in test_browser_compare.py), the narrow layout, and inpainting: the mask painted as a person paints (one
continuous drag per stroke, never retried: a lost stroke fails the test) over successive edits. Each test leaves a
screenshot under artifacts/screenshots/ (look at them); the README's screenshots come from
`make screenshots` (scripts/screenshots.py), never from the tests. Chromium is installed with
`make` (the tests are skipped, saying why, when it is missing).
"""
import re
import time

from browser_support import (
    PAINTER,
    PROMPT,
    canvas_pixel,
    drag,
    fetch_image,
    generate,
    greyed,
    inpaint,
    paint_stroke,
    painter_state,
    send_to_painter,
    shot,
    start_a_long_generation,
    wait_for,
)

from demo.testing import set_slider

# A recorder of the progress bar and the status line, polled every 25 ms while a job runs.
RECORD_PROGRESS = """() => { window.progressSamples = []; window.progressTimer = setInterval(() => {
    const bar = document.querySelector('#gallery')?.closest('.block')?.querySelector('.progress-bar')
             || document.querySelector('.progress-bar');
    const words = document.querySelector('.progress-level-inner');
    window.progressSamples.push({width: bar ? parseFloat(bar.style.width) : null,
                                 words: words ? words.innerText : '',
                                 status: document.querySelector('#status').innerText}); }, 25); }"""


def test_generate_shows_one_progress_bar_for_both_stages_and_the_images(page):
    """One bar from 0 to 100% across the base model and the upsampler, with elapsed time; the status line
    says the same; the live preview arrives; the gallery shows the final image (the base one apart)."""
    page.fill("#prompt textarea", PROMPT)
    set_slider(page, "steps", 30)
    page.evaluate(RECORD_PROGRESS)
    page.click("#generate-btn")
    page.wait_for_selector("#preview img")            # the live x0 preview arrives during sampling
    wait_for(page, "#gallery img")
    page.wait_for_function("document.querySelector('#status').innerText.includes('image(s) in')")
    samples = page.evaluate("clearInterval(window.progressTimer) || window.progressSamples")
    bars = [(x["width"], x["words"]) for x in samples if x["width"] is not None]
    assert any("Base model" in w for _, w in bars) and any("Upsampler" in w for _, w in bars), bars
    widths = [w for w, _ in bars]
    assert widths == sorted(widths), f"the bar went back: {widths}"   # no restart at 0 for the upsampler
    first_upsampler = next(w for w, words in bars if "Upsampler" in words)
    assert first_upsampler > 70, "the upsampler's steps start where the base model's end (30 of 38 steps)"
    assert all("elapsed" in words for _, words in bars)
    statuses = [x["status"] for x in samples]
    assert any(st.startswith("Upsampler: step 8 of 8 · 100.0%") for st in statuses), statuses[-5:]
    # The status line and the bar say the same thing (the bar adds its percentage).
    assert any(words.startswith(st) for st in statuses for _, words in bars if "step" in st)
    assert page.locator("#gallery .thumbnail-lg img").count() == 1   # the final image; the base one in its accordion
    page.get_by_text("Base images (before upsampling)").click()
    page.wait_for_selector("#base-gallery img")
    shot(page, "generate-done")


def test_stop_cancels_a_running_generation(page):
    start_a_long_generation(page)
    page.click("#stop-btn")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Stopped')")
    shot(page, "generate-stopped")


def test_enter_generates_and_an_empty_prompt_leaves_the_results_in_place(page):
    page.fill("#prompt textarea", PROMPT)
    set_slider(page, "steps", 5)
    page.locator("#upsample input[type=checkbox]").uncheck()
    page.press("#prompt textarea", "Enter")           # Enter starts; Shift+Enter would add a line
    wait_for(page, "#gallery img")
    page.wait_for_function("document.querySelector('#status').innerText.includes('image(s) in')")
    status, image = page.inner_text("#status"), page.locator("#gallery img").first.get_attribute("src")
    page.fill("#prompt textarea", "")
    page.click("#generate-btn")
    page.wait_for_selector(".toast-body")
    assert "prompt is empty" in page.inner_text(".toast-body")
    time.sleep(1)
    assert page.inner_text("#status") == status
    assert page.locator("#gallery img").first.get_attribute("src") == image
    assert not page.locator("#preview").is_visible()   # the live preview went when the images came
    assert "Error" not in page.inner_text("#gallery").split("\n")[0:3]
    shot(page, "empty-prompt")


def test_shift_enter_adds_a_line(page):
    page.fill("#prompt textarea", "a small red circle")
    page.press("#prompt textarea", "Shift+Enter")
    page.keyboard.type("on the left")
    assert page.input_value("#prompt textarea") == "a small red circle\non the left"
    assert page.inner_text("#status") == ""


def test_dropping_a_generated_png_restores_its_settings_and_clearing_it_is_harmless(page, tmp_path):
    generate(page)
    src = page.locator("#gallery img").first.get_attribute("src")
    png = tmp_path / "generated.png"
    png.write_bytes(page.request.get(src).body())
    page.fill("#prompt textarea", "something else")
    page.get_by_text("Restore settings from an image").click()
    page.locator("#settings-drop input[type=file]").set_input_files(str(png))
    page.wait_for_function(f"document.querySelector('#prompt textarea').value === {PROMPT!r}")
    assert "Restored the settings" in page.inner_text("#status")
    shot(page, "settings-restored")
    log_before = len(shared_log())
    page.locator("#settings-drop button[aria-label='Remove Image']").click()
    page.wait_for_function("!document.querySelector('#settings-drop img')")
    time.sleep(1.5)
    assert page.locator(".toast-body").count() == 0, page.inner_text(".toast-body")
    assert "Traceback" not in shared_log()[log_before:] and "Error" not in shared_log()[log_before:]
    assert "Restored the settings" in page.inner_text("#status")


def test_a_png_without_settings_gets_a_warning_and_nothing_else(page, tmp_path):
    from PIL import Image

    plain = tmp_path / "plain.png"
    Image.new("RGB", (32, 32), (30, 60, 220)).save(plain)
    page.fill("#prompt textarea", PROMPT)
    page.get_by_text("Restore settings from an image").click()
    log_before = len(shared_log())
    page.locator("#settings-drop input[type=file]").set_input_files(str(plain))
    page.wait_for_selector(".toast-body")
    time.sleep(1)
    toasts = page.locator(".toast-body").all_inner_texts()
    assert len(toasts) == 1 and "carries no GLIDE settings" in toasts[0], toasts
    assert "Traceback" not in shared_log()[log_before:]
    assert page.input_value("#prompt textarea") == PROMPT


def test_edit_before_generating_says_so(page):
    page.click("#to-inpaint-btn")
    page.wait_for_selector(".toast-body")
    assert "Generate an image first" in page.inner_text(".toast-body")
    assert page.get_by_role("tab", name="Text to image").get_attribute("aria-selected") == "true"
    page.locator(".toast-body").first.click()   # dismissed, so that the next toast is the only one
    page.get_by_role("tab", name="Inpainting").click()
    page.click("#again-btn")
    page.wait_for_function("Array.from(document.querySelectorAll('.toast-body'))"
                           ".some(t => t.innerText.includes('Run an inpainting first'))")


def test_a_prompt_outside_the_shapes_grammar_gets_a_notice_on_every_tab(page):
    for tab, box, notice in (("Text to image", "#prompt", "#prompt-notice"),
                             ("Inpainting", "#inpaint-prompt", "#inpaint-notice"),
                             ("Compare", "#compare-prompt", "#compare-notice")):
        page.get_by_role("tab", name=tab).click()
        page.fill(f"{box} textarea", "a corgi wearing a bow tie")
        page.wait_for_function(f"document.querySelector('{notice}')?.innerText.includes('cannot draw')")
        page.fill(f"{box} textarea", PROMPT)
        page.wait_for_function(f"!document.querySelector('{notice}')?.innerText.includes('cannot draw')")
    page.get_by_role("tab", name="Text to image").click()
    page.get_by_text("Words this model understands").first.click()
    words = page.inner_text("#prompt-words")
    for word in ("purple", "triangle", "tiny", "at the top", "background"):
        assert word in words
    page.fill("#prompt textarea", "a corgi wearing a bow tie")
    page.wait_for_function("document.querySelector('#prompt-notice')?.innerText.includes('cannot draw')")
    shot(page, "out-of-grammar")


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


def test_narrow_screen_shows_all_tabs_and_the_results_right_after_the_button(page):
    page.set_viewport_size({"width": 420, "height": 900})
    time.sleep(0.5)
    tabs = page.evaluate("Array.from(document.querySelectorAll('[role=tab]')).map(t => t.innerText)")
    assert tabs == ["Text to image", "Inpainting", "Compare", "Upscale"], tabs   # none behind an overflow menu
    assert all(t.is_visible() for t in page.get_by_role("tab").all())
    model = page.locator("#model input")
    assert model.evaluate("e => e.scrollWidth <= e.clientWidth"), "the model's name is clipped"
    # The results' first line (the live preview is shown only while a job runs).
    button, results = page.locator("#generate-btn").bounding_box(), page.locator("#status").bounding_box()
    negative = page.get_by_label("Negative prompt").bounding_box()
    assert button["y"] < results["y"] < negative["y"], (button, results, negative)
    # The results start within the first screenful, right under the button: pressing it shows a change.
    assert results["y"] < 900 and results["y"] - (button["y"] + button["height"]) < 150, (button, results)
    generate(page)
    offscreen = page.evaluate("""() => [...document.querySelectorAll('body *')].filter(e => e.getClientRects().length
        && !e.closest('.visually-hidden') && e.getBoundingClientRect().right > window.innerWidth + 1)
        .map(e => `${e.tagName}#${e.id}.${e.className}`)""")
    assert not offscreen, f"cut off at the right edge: {offscreen}"
    shot(page, "narrow")


def shared_log() -> str:
    from demo.testing import shared_server

    return shared_server().log()


def test_generate_then_inpaint_then_three_successive_edits(page):
    """As a person edits: every stroke (a continuous drag of 60 pointer events) shows at once, also right after
    "Use the result as the next input", and every inpaint gives a new result from the mask as painted.
    scripts/repeat_browser_test.py runs this 10 times (README, Demo)."""
    generate(page)
    send_to_painter(page, "Edit the selected image in Inpainting")
    strokes = [((0.2, 0.2), (0.75, 0.5)), ((0.2, 0.8), (0.8, 0.7)), ((0.6, 0.15), (0.85, 0.85)),
               ((0.15, 0.5), (0.5, 0.9))]
    results = []
    for edit, (start, end) in enumerate(strokes):
        if edit:
            send_to_painter(page, "Use the result as the next input")
            assert painter_state(page)["painted"] == 0   # a new image starts with an empty mask
        paint_stroke(page, start, end)
        results.append(inpaint(page))
        masked = fetch_image(page, "#masked-input img")
        middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        assert greyed(masked, *middle), f"edit {edit + 1}: the painted stroke did not reach the inpainting"
        assert not greyed(masked, 0.97, 0.03), f"edit {edit + 1}: an unpainted corner was replaced"
        shot(page, f"edit-{edit + 1}-done")
    assert len(set(results)) == len(results), results


def test_a_short_stroke_right_after_a_new_image_takes(page):
    """Four pointer events at once after the result is sent back: painted, not lost (the old editor lost it)."""
    generate(page)
    send_to_painter(page, "Edit the selected image in Inpainting")
    paint_stroke(page, moves=4)
    inpaint(page)
    send_to_painter(page, "Use the result as the next input")
    paint_stroke(page, (0.3, 0.6), (0.6, 0.7), moves=4)


def test_sending_a_second_image_into_a_painter_that_holds_one(page):
    """An edit of one generated image, then a second generated image sent over it, painted and inpainted."""
    generate(page)
    send_to_painter(page, "Edit the selected image in Inpainting")
    paint_stroke(page)
    first = inpaint(page)
    page.get_by_role("tab", name="Text to image").click()
    generate(page, "a large yellow square at the top on a black background")
    send_to_painter(page, "Edit the selected image in Inpainting")
    assert painter_state(page)["painted"] == 0
    paint_stroke(page, (0.3, 0.3), (0.6, 0.6))
    assert inpaint(page) != first
    shot(page, "edit-second-image-done")


def test_the_mask_stays_while_another_tab_is_shown(page):
    generate(page)
    send_to_painter(page, "Edit the selected image in Inpainting")
    paint_stroke(page)
    painted = painter_state(page)["painted"]
    page.get_by_role("tab", name="Compare").click()
    page.get_by_role("tab", name="Inpainting").click()
    page.wait_for_function(f"document.querySelector('{PAINTER}')?.dataset.ready === 'true'")
    assert painter_state(page)["painted"] == painted
    inpaint(page)
    assert greyed(fetch_image(page, "#masked-input img"), 0.475, 0.4)


def test_the_brush_follows_the_chosen_models_pixels_and_the_mask_stays(page):
    generate(page)   # 32 px: the shapes model's own size, so one of its pixels is one image pixel
    send_to_painter(page, "Edit the selected image in Inpainting")
    paint_stroke(page)
    painted = painter_state(page)["painted"]
    size = page.locator(f"{PAINTER} .painter-size-text")
    assert size.inner_text() == "3 model px (3 image px)"
    page.locator("#model input").click()
    page.get_by_role("option", name=re.compile("glide-filtered")).click()   # 64 px: half an image pixel each
    page.wait_for_function(f"document.querySelector('{PAINTER} .painter-size-text').innerText.includes('(2 image')")
    assert painter_state(page)["painted"] == painted


def test_rectangle_fill_undo_and_clear(page):
    """A region marked without scribbling: a dragged rectangle covers its box; Fill marks the clicked shape;
    Undo takes back one step, Clear all; with nothing marked, Inpaint says the mask is empty."""
    generate(page)
    send_to_painter(page, "Edit the selected image in Inpainting")
    page.locator(f"{PAINTER} button[data-tool=rect]").click()
    drag(page, (0.5, 0.5), (0.75, 1.0), moves=20)
    state = painter_state(page)
    assert state["operations"] == 1 and state["status"].startswith("Rectangle marked"), state
    assert 0.10 < state["painted"] / 32 ** 2 < 0.15, state   # a quarter of the width, half of the height
    assert canvas_pixel(page, 0.6, 0.8) != canvas_pixel(page, 0.4, 0.8)
    page.locator(f"{PAINTER} button[data-tool=fill]").click()
    drag(page, (0.05, 0.05), (0.05, 0.05), moves=1)            # one click on the background
    filled = painter_state(page)
    assert filled["status"].startswith("Filled") and filled["painted"] > 0.5 * 32 ** 2, filled
    page.locator(f"{PAINTER} button.painter-undo").click()
    assert painter_state(page)["painted"] == state["painted"]
    page.locator(f"{PAINTER} button.painter-clear").click()
    assert painter_state(page)["painted"] == 0
    page.click("#inpaint-btn")
    page.wait_for_selector(".toast-body")
    assert "mask is empty" in page.inner_text(".toast-body")


def test_the_painter_says_when_it_has_nothing_to_paint_on_and_takes_an_upload(page, tmp_path):
    from PIL import Image

    page.get_by_role("tab", name="Inpainting").click()
    assert not painter_state(page)["ready"]
    page.locator(f"{PAINTER} .painter-stage").scroll_into_view_if_needed()
    stage = page.locator(f"{PAINTER} .painter-stage").bounding_box()
    page.mouse.click(stage["x"] + stage["width"] / 2, stage["y"] + stage["height"] / 2)
    assert "Nothing to paint on yet" in painter_state(page)["status"]
    upload = tmp_path / "upload.png"
    Image.new("RGB", (64, 48), (30, 60, 220)).save(upload)
    page.locator(f"{PAINTER} input[type=file]").set_input_files(str(upload))
    page.wait_for_function(f"document.querySelector('{PAINTER}').dataset.ready === 'true'")
    paint_stroke(page, (0.3, 0.3), (0.7, 0.7))
    page.fill("#inpaint-prompt textarea", PROMPT)
    inpaint(page)
    assert greyed(fetch_image(page, "#masked-input img"), 0.5, 0.5)


def test_the_fast_preset_sets_the_controls_and_generate_runs_it(page, tmp_path):
    from glide.pngmeta import read_settings

    page.get_by_role("tab", name="Text to image").click()
    page.locator("#preset input").click()
    page.get_by_role("option", name="fast").click()
    page.wait_for_function("document.querySelector('#upsample-steps input').value === '4'")
    assert upsampler_settings(page) == ("ddim", "4")
    assert page.locator("#steps input[type=number]").input_value() == "6"
    page.fill("#prompt textarea", PROMPT)
    page.locator("#upsample input[type=checkbox]").uncheck()
    page.click("#generate-btn")
    wait_for(page, "#gallery img")
    png = tmp_path / "fast.png"
    png.write_bytes(page.request.get(page.locator("#gallery img").first.get_attribute("src")).body())
    settings = read_settings(png)
    assert (settings["sampler"], settings["steps"], settings["guidance_params"]["interval"]) == (
        "dpm++3m", 6, "0.28,5.42")
    page.locator("#preset input").click()
    page.get_by_role("option", name="the model's defaults").click()
    page.wait_for_function("document.querySelector('#upsample-steps input').value === '8'")
    assert page.locator("#steps input[type=number]").input_value() == "10"


def test_a_colour_sketch_is_kept_where_it_was_painted(page, tmp_path):
    """Sketch editing: a yellow blob painted with the Colour brush (a swatch picks colour and tool) on a plain blue
    picture, inpainted at the default strength, comes back yellow where it was painted."""
    from PIL import Image

    Image.new("RGB", (32, 32), (40, 50, 200)).save(tmp_path / "blue.png")
    page.get_by_role("tab", name="Inpainting").click()
    page.set_input_files(f"{PAINTER} input.painter-file", str(tmp_path / "blue.png"))
    page.wait_for_function(f"document.querySelector('{PAINTER}').dataset.ready === 'true'")
    page.locator(f"{PAINTER} .painter-swatches button[title=yellow]").click()
    assert page.locator(f'{PAINTER} button[data-tool="colour"]').get_attribute("aria-pressed") == "true"
    page.locator(f"{PAINTER} input.painter-size").fill("5")
    for y in (0.4, 0.5, 0.6):   # a rough blob of three strokes on the left
        drag(page, (0.18, y), (0.38, y), moves=20)
    sketched = page.evaluate(f"Number(document.querySelector('{PAINTER}').dataset.sketched)")
    assert sketched > 30, f"the colour strokes did not reach the sketch ({sketched} pixels)"
    page.fill("#inpaint-prompt textarea", "a small yellow circle on the left on a blue background")
    inpaint(page)
    result = fetch_image(page, "#inpaint-result img")
    red, green, blue = result.resize((32, 32)).getpixel((9, 16))
    assert red > 150 and green > 150 and blue < 120, f"the sketched spot is {(red, green, blue)}, not yellow"
