"""The docs' screenshots (docs/screenshots/): every tab of the demo, at desktop and phone width, after a real run.

    python scripts/screenshots.py [--url http://127.0.0.1:7860/] [--out docs/screenshots]

Starts the demo (embedded shapes family, CPU) unless --url is given, drives Debian's headless
Chromium with Playwright (as tests/test_browser.py does) and writes <tab>.png and <tab>-narrow.png.
`make screenshots` runs it; the tests never do, so running them leaves the work tree clean.
"""
import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from demo.testing import CHROMIUM, CHROMIUM_ARGS, set_slider  # noqa: E402

PROMPT = "a small red circle on the left on a blue background"
WIDTHS = {"": (1400, 1000), "-narrow": (420, 900)}



def fill_tabs(page):
    """One run on every tab, so that the screenshots show results rather than empty boxes."""
    page.fill("#prompt textarea", PROMPT)
    set_slider(page, "steps", 10)
    page.click("#generate-btn")
    page.wait_for_function("document.querySelector('#status').innerText.includes('image(s) in')")
    page.click("#to-inpaint-btn")
    page.wait_for_function("document.querySelector('#painter .painter')?.dataset.ready === 'true'")
    canvas = page.locator("#painter canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.35
    page.mouse.move(x, y)
    page.mouse.down()
    for k in range(1, 61):   # one continuous stroke, as a mouse makes it
        page.mouse.move(x + box["width"] * 0.4 * k / 60, y + box["height"] * 0.25 * k / 60)
    page.mouse.up()
    page.fill("#inpaint-prompt textarea", "a small red circle on the left on a blue background")
    page.click("#inpaint-btn")
    page.wait_for_function("(document.querySelector('#inpaint-status')?.innerText || '').includes('result(s) in')")
    page.get_by_role("tab", name="Compare").click()
    set_slider(page, "compare-steps", 10)
    page.fill("#compare-seed input", "0")
    page.fill("#compare-sweep textarea", "1, 6")
    page.click("#compare-btn")
    page.wait_for_selector("#compare-rows .cmp-row")
    upscale(page)


def upscale(page):
    """The Upscale tab on the first Text to image result brought down to the base model's 32 px."""
    page.get_by_role("tab", name="Text to image").click()
    made = page.request.get(page.locator("#gallery img").first.get_attribute("src")).body()
    with tempfile.TemporaryDirectory() as folder:
        small = Path(folder) / "small.png"
        Image.open(io.BytesIO(made)).convert("RGB").resize((32, 32), Image.LANCZOS).save(small)
        page.get_by_role("tab", name="Upscale").click()
        page.locator("#upscale-input input[type=file]").set_input_files(str(small))
        page.wait_for_selector("#upscale-input img")
    page.fill("#upscale-prompt textarea", PROMPT)
    page.click("#upscale-btn")
    page.wait_for_function("(document.querySelector('#upscale-status')?.innerText || '').includes('Upscaled')")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running demo (default: start one)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    server = None
    if not args.url:
        from demo.testing import start_server
        server = start_server()
    url = args.url or server.url
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(180_000)
            page.goto(url)
            page.wait_for_selector("#prompt textarea")
            fill_tabs(page)
            for suffix, (width, height) in WIDTHS.items():
                page.set_viewport_size({"width": width, "height": height})
                for tab, name in (("Text to image", "text-to-image"), ("Inpainting", "inpainting"),
                                  ("Compare", "guidance-comparison"), ("Upscale", "upscale")):
                    page.get_by_role("tab", name=tab).click()
                    time.sleep(1.5)
                    page.evaluate("window.scrollTo(0, 0)")
                    path = args.out / f"{name}{suffix}.png"
                    page.screenshot(path=str(path), full_page=not suffix)
                    print(path)
            browser.close()
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
