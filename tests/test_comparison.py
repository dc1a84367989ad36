"""How a comparison is read (glide.comparison) and drawn: rows over the same seeds, the noise rule for "best",
the legend, the grid, the trade-off figure's labels, and the CLI's flags that build a comparison. No sampling:
entries are made by hand from rendered scenes, so each case is exact and fast."""
import numpy as np
import pytest

from glide import comparison
from glide.data import shapes
from glide.pipeline import Comparison

PROMPT = "a small red circle on the left on a blue background"
SCENE = shapes.parse_caption(PROMPT)
WRONG_SCENE = shapes.parse_caption("a small green square on the right on a white background")


def entry(guidance, scale, seed, right, clip=0.46, scene=SCENE, prompt=PROMPT, jitter=True):
    """A comparison entry whose image is a render of `scene` (jittered per seed, like the training data)."""
    image = shapes.render(scene, 32, np.random.default_rng(seed) if jitter else None)
    params = {} if scale is None else {"guidance_scale": scale}
    checker = None if right is None else {"all": right, "background": right, "count": True, "clean": True,
                                          "shapes": [{"color": right}]}
    return Comparison(guidance=guidance, guidance_params=params, image=image, base_image=image, seconds=0.25,
                      clip_score=clip, checker=checker, settings={"seed": seed, "prompt": prompt})


def row_of(guidance, scale, rights, **kwargs):
    return [entry(guidance, scale, seed, right, **kwargs) for seed, right in zip(range(10, 10 + len(rights)), rights)]


def test_rows_group_each_run_over_the_same_seeds_with_its_fidelity_and_spread():
    entries = (row_of("clip", 3.0, [True, False, True, True]) + row_of("classifier-free", 3.0, [True] * 4)
               + row_of("none", None, [True] * 4, jitter=False))
    made = comparison.rows(entries)
    assert [(r.guidance, r.scale) for r in made] == [("clip", 3.0), ("classifier-free", 3.0), ("none", None)]
    assert all(r.seeds == [10, 11, 12, 13] for r in made)
    assert made[0].title == "CLIP guidance · scale 3" and made[2].title == "Unguided"
    assert made[0].fidelity.text == "3/4 drawn right (95%: 30–95%)" and made[0].fidelity.value == 0.75
    assert made[1].seconds == pytest.approx(1.0)
    # Jittered renders spread like the training data (about 1); the same render on every seed does not at all.
    assert 0.5 < made[1].spread.value < 1.6 and made[2].spread.value == 0
    assert made[2].spread.text.startswith("layout spread 0.00")
    as_dict = made[0].as_dict()
    assert as_dict["seeds"] == [10, 11, 12, 13] and as_dict["images"][1]["verdict"] == "✗ wrong background, color"


def test_a_best_row_only_beyond_noise():
    """4 of 4 against 0 of 4: the Wilson intervals (51-100% and 0-49%) are apart, so the first row is best; 3 of 4
    against 1 of 4 overlap: no best, and the verdict says so."""
    apart = comparison.rows(row_of("classifier-free", 3.0, [True] * 4) + row_of("clip", 30.0, [False] * 4))
    assert [r.best for r in apart] == [True, False]
    assert comparison.verdict(apart).startswith("Most faithful: Classifier-free guidance · scale 3")
    close = comparison.rows(row_of("classifier-free", 3.0, [True, True, True, False])
                            + row_of("clip", 3.0, [True, False, False, False]))
    assert [r.best for r in close] == [False, False]
    assert "within noise" in comparison.verdict(close)
    equal = comparison.rows(row_of("clip", 3.0, [True] * 4, clip=0.465) + row_of("none", None, [True] * 4, clip=0.469))
    assert not any(r.best for r in equal)   # not the higher CLIP score among equal pass rates: that is noise


def test_without_a_verdict_the_clip_score_decides_only_beyond_its_interval():
    """A prompt outside the checker's grammar: fidelity is the mean CLIP score with its t interval."""
    other = dict(right=None, prompt="a cat")
    near = comparison.rows([entry("clip", 3.0, s, clip=c, **other) for s, c in zip(range(4), (.465, .469, .467, .466))]
                           + [entry("none", None, s, clip=c, **other) for s, c in zip(range(4), (.466, .468, .465, .467))])
    assert near[0].fidelity.text.startswith("CLIP 0.467 ± ") and not any(r.best for r in near)
    assert near[0].spread.text.startswith("image spread")
    far = comparison.rows([entry("clip", 3.0, s, clip=c, **other) for s, c in zip(range(4), (.30, .31, .29, .30))]
                          + [entry("none", None, s, clip=c, **other) for s, c in zip(range(4), (.01, .02, .00, .01))])
    assert [r.best for r in far] == [True, False]
    one_seed = comparison.rows([entry("clip", 3.0, 0, clip=.3, **other), entry("none", None, 0, clip=.0, **other)])
    assert one_seed[0].fidelity.low is None and not any(r.best for r in one_seed)   # one seed: no interval


def test_the_legend_explains_every_mark_and_measure_shown():
    made = comparison.rows(row_of("clip", 3.0, [True, False]) + row_of("none", None, [True, True]))
    marks = dict(comparison.legend(made))
    assert {"✓", "✗", "★", "layout spread"} <= set(marks)
    outside = comparison.rows([entry("clip", 3.0, s, right=None, prompt="a cat") for s in range(2)])
    assert {"★", "CLIP", "image spread"} <= set(dict(comparison.legend(outside)))
    assert "✓" not in dict(comparison.legend(outside))   # no checker marks where nothing was judged


def test_the_grid_has_a_row_per_run_and_the_legend():
    made = comparison.rows(row_of("classifier-free", 3.0, [True] * 4) + row_of("clip", 30.0, [False] * 4))
    sheet = comparison.grid(made, PROMPT, tile=64)
    assert sheet.width == 10 + 4 * (64 + 10)
    assert sheet.height > 2 * 64 + 6 * comparison._LINE   # two rows of tiles under their headings, then the legend
    pixels = np.asarray(sheet)
    for colour in (comparison.RIGHT, comparison.WRONG, comparison.STAR):   # the marks the legend explains
        assert (pixels == colour).all(-1).any(), colour


def test_the_tradeoff_labels_never_overlap_and_stay_legible():
    from matplotlib.text import Text

    from glide.evaluation import measures
    from glide.families import FAMILIES

    report = measures.load_tradeoff(FAMILIES["shapes"])
    figure = measures.tradeoff_figure(report, [("classifier-free", 3.0, "your CFG 3"), ("clip", 3.0, "your CLIP 3")])
    renderer = figure.canvas.get_renderer()
    for axis in figure.axes:
        texts = [t for t in axis.texts if t.get_text()]
        assert [t.get_text() for t in texts].count("your CFG 3") == 1
        assert [t.get_text() for t in texts].count("your CLIP 3") == 1
        boxes = []
        for text in texts:
            if hasattr(text, "update_positions"):
                text.update_positions(renderer)
            boxes.append((text.get_text(), Text.get_window_extent(text, renderer)))
        overlapping = [(a, b) for i, (a, box) in enumerate(boxes) for b, other in boxes[i + 1:] if box.overlaps(other)]
        assert overlapping == []
    sizes = [t.get_fontsize() for t in figure.findobj(Text) if t.get_text()]
    assert min(sizes) >= measures.SMALL_FONT_SIZE >= 10   # at 100 dpi, 14 px; shown on a phone, ~9-10 px
    assert figure.get_figwidth() <= 6   # the plots are stacked: a phone shows it at 60% or more


@pytest.mark.parametrize("flags,clip,cfg", [
    ([], 3.0, 3.0),
    (["--guidance-scale", "5"], 5.0, 5.0),
    (["--guidance-scale", "5", "--cfg-scale", "2"], 5.0, 2.0),
    (["--clip-scale", "10", "--cfg-scale", "4"], 10.0, 4.0),
])
def test_the_cli_sets_each_guidance_scale_and_the_seeds(monkeypatch, flags, clip, cfg):
    from glide import cli

    made = {}

    def fake_run_job(args, payload):
        made["compared"] = payload.compared
        raise SystemExit(0)

    monkeypatch.setattr(cli, "_run_job", fake_run_job)
    args = cli.build_parser().parse_args(["compare", PROMPT, "--seed", "5", "--seeds", "3", *flags])
    with pytest.raises(SystemExit):
        args.run(args)
    compared = made["compared"]
    assert compared.seeds == (5, 6, 7)
    params = {name: dict(p) for name, p in compared.strategies}
    assert params["clip"]["guidance_scale"] == clip and params["classifier-free"]["guidance_scale"] == cfg


def test_a_comparison_runs_every_strategy_over_the_same_seeds_within_the_limits():
    from glide.errors import InputError
    from glide.settings import ComparisonSettings, Limits

    compared = ComparisonSettings.create(PROMPT, seed=3, seeds=2, scales={"clip": 10}, sweep="1, 10")
    assert compared.seeds == (3, 4) and compared.base.prompts == (PROMPT, PROMPT)
    assert [(n, p.get("guidance_scale")) for n, p in compared.runs()] == [
        ("clip", 1.0), ("clip", 10.0), ("classifier-free", 1.0), ("classifier-free", 3.0),
        ("classifier-free", 10.0), ("none", None)]   # a sweep scale equal to the strategy's own runs once
    with pytest.raises(InputError, match="seeds must be between 1 and 8"):
        ComparisonSettings.create(PROMPT, seeds=9, limits=Limits(max_batch=8))
