"""What the shapes family's evaluations measure, and the trade-off plot.

GLIDE compares guidance strategies by how each trades diversity for fidelity as its scale grows.
On the shapes domain all three sides can be measured by a program:

* fidelity: the share of images the checker finds fully right (every attribute, and clean),
  with a Wilson 95% interval;
* diversity: the caption names shape, colour, position and size, but leaves each shape's exact
  centre and half-width free (the training renders jitter them within their cell). Across the
  seeds of one prompt, the spread of that geometry as the checker reads it, relative to the
  spread of the training renders of the same prompts read the same way: 1 = as varied as the
  data, 0 = the same layout every time;
* realism: how far an image is from a clean render of exactly what the checker read in it
  (artifacts, over-saturation, stray marks), in levels of 255.
"""
from __future__ import annotations

import json
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..data import shapes

Z_95 = 1.959964  # the normal quantile of a two-sided 95% interval


def wilson(successes: int, n: int) -> Dict:
    """A rate with its Wilson score 95% interval: {"rate", "low", "high", "n"}."""
    if n == 0:
        return {"rate": None, "low": None, "high": None, "n": 0}
    p = successes / n
    centre = (p + Z_95 ** 2 / (2 * n)) / (1 + Z_95 ** 2 / n)
    half = Z_95 * math.sqrt(p * (1 - p) / n + Z_95 ** 2 / (4 * n * n)) / (1 + Z_95 ** 2 / n)
    return {"rate": round(p, 4), "low": round(max(0.0, centre - half), 4), "high": round(min(1.0, centre + half), 4),
            "n": n}


def compare_rates(a: Dict, b: Dict) -> str:
    """"higher", "lower" or "within noise": whether a's interval lies wholly above or below b's."""
    if a["low"] > b["high"]:
        return "higher"
    if a["high"] < b["low"]:
        return "lower"
    return "within noise"


def realism_error(image) -> float:
    """Mean absolute difference (of 255) between an image and a clean render of what the checker read in it.

    Pixels within one pixel of a shape's edge in that render are left out: there the read geometry
    is off by a fraction of a pixel even for a perfect render, so a render scores exactly 0 and what
    counts is colour in flat regions (grain, over-saturated or washed-out colour, stray marks).
    """
    pixels = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.float64)
    reading = shapes.read(pixels)
    clean = np.asarray(reading.render(pixels.shape[0]), dtype=np.float64)
    flat = _flat_pixels(clean)
    return float(np.abs(pixels - clean)[flat].mean())


def _flat_pixels(render: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood in the render has one colour (i.e. not on an edge)."""
    padded = np.pad(render, ((1, 1), (1, 1), (0, 0)), mode="edge")
    height, width = render.shape[:2]
    same = np.ones((height, width), dtype=bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            same &= (padded[dy:dy + height, dx:dx + width] == render).all(-1)
    return same


def layout_variances(images_per_prompt: Sequence[Sequence], scenes: Sequence[shapes.Scene]) -> np.ndarray:
    """Per prompt and shape, the unbiased variance across seeds of each read (cx, cy, h): [prompts, 2, 3].

    Only seeds where the checker read that very shape (kind, colour, position and size all right)
    count: a shape in the wrong cell is a fidelity error, and its distance from the right cell
    would swamp the spread within the cell that the caption leaves free. A shape read right fewer
    than twice gives NaN; so do the unused second-shape rows of one-shape scenes.
    """
    out = np.full((len(scenes), 2, 3), np.nan)
    for p, (images, scene) in enumerate(zip(images_per_prompt, scenes)):
        readings = [shapes.read(image) for image in images]
        for j, wanted in enumerate(scene.shapes):
            found = [g for r in readings for s, g in zip(r.shapes, r.geometry) if s == wanted]
            if len(found) >= 2:
                out[p, j] = np.var(np.array(found), axis=0, ddof=1)
    return out


def diversity(variances: np.ndarray, reference: np.ndarray) -> float:
    """How varied the layouts are against the training data: sqrt of the mean over (cx, cy, h) of the
    pooled variance ratio, over the (prompt, shape) cells both measured. 1 = like the data, 0 = fixed."""
    both = ~np.isnan(variances).any(-1) & ~np.isnan(reference).any(-1)
    if not both.any():
        return float("nan")
    ratios = variances[both].sum(0) / reference[both].sum(0)
    return float(np.sqrt(ratios.mean()))


def data_variances(scenes: Sequence[shapes.Scene], size: int, renders: int = 16, seed: int = 0) -> np.ndarray:
    """layout_variances of `renders` training-style (jittered) renders of each scene: the reference spread."""
    rng = np.random.default_rng(seed)
    return layout_variances([[shapes.render(scene, size, rng) for _ in range(renders)] for scene in scenes], scenes)


# ------------------------------------------------------------------ the trade-off plot

def load_tradeoff(family) -> Optional[Dict]:
    """A family's measured trade-off report (glide.eval --tradeoff), or None when it has none."""
    path = family.tradeoff_report
    return json.loads(path.read_text()) if path is not None and path.exists() else None


STRATEGY_STYLE = {"classifier-free": ("tab:blue", "o"), "clip": ("tab:orange", "s"), "cfg-rescale": ("tab:purple", "D"),
                  "classifier-free, interval": ("tab:cyan", "v"), "clip, interval": ("tab:red", "P")}
FONT_SIZE = 12        # pt: the figure is 5.6 in wide; shown 360 px wide (a phone) its smallest text is ~10 px
SMALL_FONT_SIZE = 11
# Where a label may go around its point, in points from it (the first that is free wins): a scale's label next to
# its point; a star's label further out if need be, then with a line to its star.
_AROUND = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
_LABEL_OFFSETS = [(dx * r, dy * r) for r in (5, 11, 18) for dx, dy in _AROUND]
_TICKS = (0.5, 0.6, 0.8, 1, 1.5, 2, 3, 4, 6, 8, 10, 15, 20, 30, 40, 60, 100)   # the log axes' labelled values
_MARK_OFFSETS = _LABEL_OFFSETS + [(dx * r, dy * r) for r in (28, 40, 55, 75) for dx, dy in _AROUND]


def tradeoff_figure(report: Dict, marks: Sequence[tuple] = ()):
    """The trade-off report drawn the way the paper draws it: one curve per strategy, each point a
    scale, fidelity (with its 95% interval) against diversity (upper plot) and against realism error
    (lower plot); the plots are stacked so that the figure stays legible on a phone.

    `marks` are (strategy, scale, label) to mark with a star on the curves (interpolated between
    measured scales). Labels never overlap: each goes to the first free place around its point, the
    marks' labels first; a point's scale label that finds no free place is left out.
    Returns a matplotlib Figure, made without pyplot: no display or global backend involved.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported here: only plotting needs matplotlib
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.6, 8.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)   # a renderer to measure the labels with
    axes = figure.subplots(2, 1, sharey=True)
    labels = {0: [], 1: []}   # per axis: (priority, text, (x, y), colour, font size)
    for index, (axis, measure, label) in enumerate((
            (axes[0], "diversity", "diversity (1 = as varied as the training data)"),
            (axes[1], "realism_error", "realism error (levels of 255 from a clean render)"))):
        for strategy, points in points_by_strategy(report).items():
            color, marker = STRATEGY_STYLE.get(strategy, ("tab:green", "^"))
            xs = [p[measure] for p in points]
            ys = [100 * p["fidelity"]["rate"] for p in points]
            errors = [[100 * (p["fidelity"]["rate"] - p["fidelity"]["low"]) for p in points],
                      [100 * (p["fidelity"]["high"] - p["fidelity"]["rate"]) for p in points]]
            axis.errorbar(xs, ys, yerr=errors, color=color, marker=marker, markersize=5, capsize=2,
                          label=strategy if index == 0 else None)
            labels[index] += [(1, f"{p['scale']:g}", (x, y), color, SMALL_FONT_SIZE) for p, x, y in zip(points, xs, ys)]
            for mark_strategy, scale, text in marks:
                if mark_strategy == strategy and len(points) > 1:
                    x, y = interpolate(points, scale, measure), 100 * interpolate(points, scale, "fidelity")
                    axis.plot([x], [y], marker="*", markersize=16, color=color, markeredgecolor="black")
                    labels[index].append((0, text, (x, y), "black", FONT_SIZE))
        _ratio_scale(axis, [p[measure] for points in points_by_strategy(report).values() for p in points])
        axis.set_xlabel(label, fontsize=FONT_SIZE)
        axis.set_ylabel("fidelity: % of scenes fully right", fontsize=FONT_SIZE)
        axis.tick_params(labelsize=SMALL_FONT_SIZE)
        axis.grid(alpha=0.3)
    axes[0].axvline(1.0, color="gray", linestyle="--", linewidth=1)
    axes[0].annotate("training data", (1.0, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                     fontsize=SMALL_FONT_SIZE, color="gray", xytext=(3, 0), textcoords="offset points")
    figure.legend(loc="outside lower center", ncols=2, fontsize=SMALL_FONT_SIZE, title_fontsize=SMALL_FONT_SIZE,
                  title="guidance (point labels: scale; ★ your scales)")
    settings = report["settings"]
    figure.suptitle(f"shapes family: {settings['sampler']} {settings['steps']} steps,\n{report['prompts']} two-shape "
                    f"prompts x {report['seeds']} seeds per point", fontsize=FONT_SIZE)
    # Labels go in once the layout is final (they stay inside their plot, so it need not change again).
    figure.draw_without_rendering()
    figure.set_layout_engine("none")
    for index, axis in enumerate(axes):
        _place_labels(axis, sorted(labels[index], key=lambda item: item[0]))
    return figure


def _ratio_scale(axis, values: Sequence[float]) -> None:
    """A log x axis labelled at round values, where the values allow one (all positive, spanning two round
    values): the curves crowd at small values, and a ratio scale spreads them."""
    low, high = min(values), max(values)
    ticks = [t for t in _TICKS if low <= t <= high]
    if low <= 0 or len(ticks) < 2:
        return
    from matplotlib.ticker import NullFormatter

    axis.set_xscale("log")
    low, high = axis.get_xlim()
    ticks = [t for t in _TICKS if low <= t <= high]
    axis.set_xticks(ticks, [f"{t:g}" for t in ticks])
    axis.xaxis.set_minor_formatter(NullFormatter())


def _place_labels(axis, labels: Sequence[tuple]) -> None:
    """Each (priority, text, point, colour, size) annotated at the first offset around its point where it
    overlaps no label placed before, no point and nothing else written on the plot, and stays inside it."""
    from matplotlib.text import Text

    renderer = axis.figure.canvas.get_renderer()
    inside = axis.get_window_extent(renderer)
    taken = [text.get_window_extent(renderer) for text in axis.texts]
    # Points kept clear: each measured point, and each star (drawn larger) with more room around it.
    points = [(*axis.transData.transform(point), 9 if priority == 0 else 4) for priority, _, point, _, _ in labels]
    for priority, text, point, color, size in labels:
        for dx, dy in _MARK_OFFSETS if priority == 0 else _LABEL_OFFSETS:
            far = abs(dx) > 18 or abs(dy) > 18
            note = axis.annotate(text, point, xytext=(dx, dy), textcoords="offset points", fontsize=size, color=color,
                                 ha="left" if dx > 0 else "right" if dx < 0 else "center",
                                 va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                                 arrowprops=dict(arrowstyle="-", color="black", linewidth=0.8) if far else None)
            note.update_positions(renderer)
            box = Text.get_window_extent(note, renderer)   # the words alone, not the line to the star
            clear = (box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0 and box.y1 <= inside.y1
                     and not any(box.overlaps(other) for other in taken)
                     and not any(box.x0 - r < px < box.x1 + r and box.y0 - r < py < box.y1 + r for px, py, r in points))
            if clear:
                taken.append(box)
                break
            note.remove()


def points_by_strategy(report: Dict) -> Dict[str, List[Dict]]:
    """The report's points grouped by curve (a strategy, or a strategy with other parameters such as a guidance
    interval: the point's "curve"), each in increasing scale and starting with the unguided point at the
    curve's neutral scale (classifier-free 1, CLIP 0: the same sampling)."""
    unguided = next(p for p in report["points"] if p["strategy"] == "none")
    groups = {curve: [{**unguided, "strategy": curve, "scale": scale}]
              for curve, scale in report["unguided_is_scale"].items()}
    for point in report["points"]:
        if point["strategy"] != "none":
            groups[point.get("curve", point["strategy"])].append(point)
    return {strategy: sorted(points, key=lambda p: p["scale"]) for strategy, points in groups.items()}


def interpolate(points: List[Dict], scale: float, measure: str) -> float:
    """A measure at `scale`, linear between the measured scales around it (clamped to the measured range)."""
    scales = [p["scale"] for p in points]
    values = [p[measure]["rate"] if isinstance(p[measure], dict) else p[measure] for p in points]
    return float(np.interp(scale, scales, values))
