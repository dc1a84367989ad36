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


def tradeoff_figure(report: Dict, marks: Sequence[tuple] = ()):
    """The trade-off report drawn the way the paper draws it: one curve per strategy, each point a
    scale, fidelity (with its 95% interval) against diversity and against realism error.

    `marks` are (strategy, scale, label) to mark on the curves (interpolated between measured scales).
    Returns a matplotlib Figure, made without pyplot: no display or global backend involved.
    """
    from matplotlib.figure import Figure  # imported here: only plotting needs matplotlib

    figure = Figure(figsize=(10, 4.2), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    for axis, measure, label in ((axes[0], "diversity", "diversity (1 = as varied as the training data)"),
                                 (axes[1], "realism_error", "realism error (levels of 255 from a clean render)")):
        for strategy, points in points_by_strategy(report).items():
            color, marker = STRATEGY_STYLE.get(strategy, ("tab:green", "^"))
            xs = [p[measure] for p in points]
            ys = [100 * p["fidelity"]["rate"] for p in points]
            errors = [[100 * (p["fidelity"]["rate"] - p["fidelity"]["low"]) for p in points],
                      [100 * (p["fidelity"]["high"] - p["fidelity"]["rate"]) for p in points]]
            axis.errorbar(xs, ys, yerr=errors, color=color, marker=marker, capsize=2, label=strategy)
            for p, x, y in zip(points, xs, ys):
                axis.annotate(f"{p['scale']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8,
                              color=color)
            for mark_strategy, scale, text in marks:
                if mark_strategy == strategy and len(points) > 1:
                    x, y = interpolate(points, scale, measure), 100 * interpolate(points, scale, "fidelity")
                    axis.plot([x], [y], marker="*", markersize=16, color=color, markeredgecolor="black")
                    axis.annotate(text, (x, y), textcoords="offset points", xytext=(6, -14), fontsize=9)
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].axvline(1.0, color="gray", linestyle="--", linewidth=1)
    axes[0].annotate("training data", (1.0, 0.02), xycoords=("data", "axes fraction"), rotation=90, fontsize=8,
                     color="gray", xytext=(3, 0), textcoords="offset points")
    axes[0].set_ylabel("fidelity: % of scenes fully right")
    axes[0].legend(title="guidance (labels: scale)")
    settings = report["settings"]
    figure.suptitle(f"shapes family: {settings['sampler']} {settings['steps']}, {report['prompts']} two-shape prompts "
                    f"x {report['seeds']} seeds per point", fontsize=10)
    return figure


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
