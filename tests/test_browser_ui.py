"""The demo's first hour in a real browser: what the status line, the PNGs and "Reuse last seed" say about a random
batch agree; a number typed beyond a slider's bounds is said; the preset's label follows the controls; the session's
history restores settings; Esc stops; the selected image goes to the Upscale tab, which makes it 4x larger. One
short test each (the fixtures are in conftest.py, the helpers in browser_support.py)."""
import io
import re

from browser_support import PROMPT, fetch_image, generate, shot, start_a_long_generation, wait_for
from PIL import Image

from demo.testing import set_slider
from glide.families import FAMILIES
from glide.pngmeta import read_settings


def gallery_pngs(page, selector: str = "#gallery .thumbnail-lg img") -> list:
    """The PNG files behind a gallery's grid of thumbnails (rendered in its preview mode too), as bytes, in order."""
    images = page.locator(selector)
    return [page.request.get(images.nth(i).get_attribute("src")).body() for i in range(images.count())]


def seed_of(png: bytes) -> int:
    return read_settings(io.BytesIO(png))["seed"]


def pixels(png: bytes) -> bytes:
    return Image.open(io.BytesIO(png)).convert("RGB").tobytes()


def test_a_random_batch_is_made_again_from_its_last_seed(page):
    """Seed -1, batch 3: the status line's range, the PNGs' seeds and "Reuse last seed" then Generate agree (the
    same three images); the selected thumbnail's settings are shown; the live preview goes once the images are in."""
    page.fill("#seed input", "-1")
    set_slider(page, "batch", 3)
    generate(page)
    first, last = map(int, re.search(r"seed (\d+)–(\d+)", page.inner_text("#status")).groups())
    made = gallery_pngs(page)
    assert [seed_of(png) for png in made] == [first, first + 1, first + 2] and last == first + 2
    assert not page.locator("#preview").is_visible(), "the live preview stays beside the final images"
    page.locator("#gallery .thumbnail-small").nth(1).click()   # the batch's strip under the first image
    page.get_by_text("Settings of the selected image").click()
    page.wait_for_function(f"(document.querySelector('#settings-view')?.innerText || '').includes('{first + 1}')")
    page.click("text=Reuse last seed")
    page.wait_for_function(f"document.querySelector('#seed input').value === '{first}'")
    before = page.locator("#gallery .thumbnail-lg img").first.get_attribute("src")
    page.click("#generate-btn")
    page.wait_for_function("(before) => document.querySelector('#gallery .thumbnail-lg img')?.getAttribute('src')"
                           " !== before"
                           " && document.querySelector('#status').innerText.includes('image(s) in')", arg=before)
    assert f"seed {first}–{first + 2}" in page.inner_text("#status")
    again = gallery_pngs(page)
    assert [seed_of(png) for png in again] == [first, first + 1, first + 2]
    assert [pixels(png) for png in again] == [pixels(png) for png in made]
    shot(page, "random-batch-made-again")


def test_a_number_typed_beyond_a_slider_says_what_it_was_set_to(page):
    """DeepCache 25 (its bound is 10) and classifier-free guidance 80 (bound 50): the slider shows its bound and
    says so beside it, naming the setting and its range."""
    page.get_by_text("Speed: DeepCache").click()
    set_slider(page, "deep-cache", 25)
    note = page.locator("#deep-cache .range-note")
    assert note.inner_text() == "DeepCache interval takes 0 to 10: 25 was set to 10."
    assert page.locator("#deep-cache input[type=number]").input_value() == "10"
    scale = page.get_by_label("number input for Guidance scale").locator("visible=true")
    scale.fill("80")
    scale.press("Enter")
    assert page.get_by_text("Guidance scale takes 0 to 50: 80 was set to 50.").is_visible()
    set_slider(page, "deep-cache", 4)    # a value within the bounds clears what was said
    assert not note.count()
    shot(page, "range-note")


def test_the_preset_label_turns_custom_when_a_control_it_set_changes(page):
    preset = page.locator("#preset")
    preset.locator("input").click()
    page.get_by_role("option", name="fast").click()
    page.wait_for_function("document.querySelector('#steps input[type=number]').value === '6'")
    assert "DPM-Solver++(3M)" in preset.inner_text()          # the help describes the preset chosen
    set_slider(page, "steps", 30)
    page.wait_for_function("document.querySelector('#preset input').value === 'custom'")
    assert "Your own settings" in preset.inner_text()
    preset.locator("input").click()
    page.get_by_role("option", name="the model's defaults").click()
    page.wait_for_function("document.querySelector('#steps input[type=number]').value === '10'")
    assert "DPM-Solver++(3M)" not in preset.inner_text() and "model's own defaults" in preset.inner_text()


def test_clicking_a_history_image_restores_its_settings(page):
    page.fill("#seed input", "123")
    generate(page, steps=4)
    page.fill("#seed input", "456")
    page.fill("#negative textarea", "a green square")
    generate(page, steps=5)
    page.wait_for_function("document.querySelectorAll('#history img').length === 2")   # newest first
    history = page.locator("#history img")
    history.nth(1).click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('Restored the settings of seed 123')")
    assert page.locator("#seed input").input_value() == "123"
    assert page.locator("#steps input[type=number]").input_value() == "4"
    assert page.locator("#negative textarea").input_value() == ""
    shot(page, "history-restored")


def test_esc_stops_the_running_job(page):
    start_a_long_generation(page)
    page.locator("body").press("Escape")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Stopped')", timeout=15_000)


def test_the_selected_image_goes_to_the_upscale_tab_which_makes_it_4x_larger(page):
    """Generated without the upsampler, sent to Upscale with its prompt and seed, upscaled to the family's 4x."""
    family = FAMILIES["shapes"]
    page.fill("#seed input", "21")
    generate(page)
    page.click("#to-upscale-btn")
    page.wait_for_selector("#upscale-input img")
    assert page.locator("#upscale-prompt textarea").input_value() == PROMPT
    page.click("#upscale-btn")
    page.wait_for_function("(document.querySelector('#upscale-status')?.innerText || '').includes('Upscaled')"
                           " || document.querySelector('.toast-body')")
    wait_for(page, "#upscale-result img")
    assert "seed 21" in page.inner_text("#upscale-status")
    result = fetch_image(page, "#upscale-result img")
    assert result.size == (family.upsample_size, family.upsample_size) == (4 * family.base_size,) * 2
    shot(page, "upscaled")
