"""The Compare tab in a browser: a row per strategy over the same seeds, each with its fidelity and spread, no
"best" where the rows are within noise, a legend for every mark; rows, legend and trade-off plot fit a phone."""
from browser_support import shot, wait_for

from demo.context import EXAMPLES
from demo.testing import set_slider

ROWS = "#compare-rows .cmp-row"


def _rows(page):
    return page.evaluate(f"""() => Array.from(document.querySelectorAll('{ROWS}')).map(r => ({{
        guidance: r.dataset.guidance, best: r.dataset.best === 'true',
        head: r.querySelector('.cmp-head').innerText,
        seeds: Array.from(r.querySelectorAll('figure')).map(f => Number(f.dataset.seed))}}))""")


def _overflowing(page, selector: str):
    """The elements matching `selector` whose content is wider than they are, or that reach past the viewport."""
    return page.evaluate(f"""() => Array.from(document.querySelectorAll('{selector}')).filter(e =>
        e.scrollWidth > e.clientWidth + 1 || e.getBoundingClientRect().right > window.innerWidth + 1)
        .map(e => e.innerText.slice(0, 60) || e.tagName)""")


def test_compare_rows_share_the_seeds_and_fit_a_phone(page):
    page.get_by_role("tab", name="Compare").click()
    assert page.input_value("#compare-prompt textarea") == EXAMPLES[2]   # starts with the two-shape example
    page.fill("#compare-seed input", "7")
    set_slider(page, "compare-seeds", 3)
    set_slider(page, "compare-steps", 5)
    page.click("#compare-btn")
    wait_for(page, ROWS)
    rows = _rows(page)
    assert [r["guidance"] for r in rows] == ["clip", "classifier-free", "none"]
    assert all(r["seeds"] == [7, 8, 9] for r in rows), rows   # the same seeds in every row
    for row in rows:
        assert "fidelity" in row["head"] and "spread" in row["head"], row["head"]
    assert "CLIP guidance · scale 3" in rows[0]["head"] and "Classifier-free guidance · scale 3" in rows[1]["head"]
    # On three seeds no pass rate is ahead of another beyond its interval (1 of 3 right: 6-79%; 3 of 3: 44-100%):
    # no "best" is awarded, and the verdict says why.
    assert not any(r["best"] for r in rows), rows
    assert "within noise" in page.inner_text("#compare-rows .cmp-verdict")
    legend = page.inner_text("#compare-rows .cmp-legend")
    for mark in ("✓", "✗", "★", "layout spread"):
        assert mark in legend, legend
    assert page.locator("#compare-grid a, #compare-grid .file-preview").count() > 0   # the one-PNG download
    shot(page, "compare-rows")

    page.set_viewport_size({"width": 420, "height": 900})
    page.locator("#compare-rows").scroll_into_view_if_needed()
    # Rows, their headings, captions and the legend wrap within the page rather than running off it.
    for selector in ("#compare-rows", "#compare-rows .cmp-head", "#compare-rows figcaption",
                     "#compare-rows .cmp-legend li"):
        assert _overflowing(page, selector) == [], selector
    shot(page, "compare-rows-phone")


def test_the_tradeoff_plot_follows_the_scales_and_stays_legible_at_both_widths(page):
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_function("document.querySelector('#tradeoff img')?.naturalWidth > 0")
    assert "two-shape prompts" in page.inner_text("#tradeoff-note")
    before = page.get_attribute("#tradeoff img", "src")
    set_slider(page, "compare-cfg-scale", 6)   # the star moves: the plot is drawn again
    page.wait_for_function("src => document.querySelector('#tradeoff img')?.src !== src", arg=before)
    page.wait_for_function("document.querySelector('#tradeoff img')?.naturalWidth > 0")
    for width in (1400, 420):
        page.set_viewport_size({"width": width, "height": 900})
        page.locator("#tradeoff").scroll_into_view_if_needed()
        shown = page.evaluate("""() => { const i = document.querySelector('#tradeoff img'), r = i.getBoundingClientRect();
            return {width: r.width, right: r.right, natural: i.naturalWidth, viewport: window.innerWidth}; }""")
        assert shown["right"] <= shown["viewport"] + 1, shown   # the whole plot on screen
        # The figure's smallest text is 11 pt at 100 dpi (~15 px): shown at 60% or more it stays above 9 px.
        assert shown["width"] >= 0.6 * shown["natural"], shown
        shot(page, f"compare-tradeoff-{width}")
