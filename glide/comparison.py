"""How a guidance comparison is read and shown: rows, what each row measures, the noise rule, the legend, the grid.

A comparison samples each run (a strategy at a scale) over the same seeds. A row is one run's images, seed by
seed, with what was measured over them:

* fidelity: on a family with a checker and a prompt it can judge, the share of the row's images the checker
  finds fully right, with its Wilson 95% interval; otherwise the mean CLIP score, with its 95% interval
  (Student's t over the seeds);
* spread of layouts: on the shapes family, `glide.evaluation.measures.diversity` of the row's images (1 = as
  varied as the training renders of the prompt, 0 = the same layout every time; only images drawn right
  count); otherwise the mean difference between two of the row's images, in levels of 255.

A row is the most faithful only when its fidelity interval lies wholly above every other row's: with four
seeds the intervals are wide, and a "best" inside them would be noise that moves between runs.

The CLI's `glide compare`, the demo's Compare tab and its API all read a comparison with these, so it reads
the same wherever it is made. Entries are `glide.pipeline.Comparison`s, one per image.
"""
import functools
import math
import textwrap
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TILE = 256             # px: samples are scaled up (nearest) to this, so 32 px images stay legible
_FONT_SIZE = 14
_LINE = _FONT_SIZE + 5
_PAD = 10
BUILTIN_TITLES = {"clip": "CLIP guidance", "classifier-free": "Classifier-free guidance", "none": "Unguided"}
RIGHT, WRONG = (0, 150, 60), (210, 30, 30)    # the grid's corner marks: drawn right, something wrong
STAR = (230, 160, 0)

CLIP_SCORE_HELP = ("CLIP score: cosine similarity between the image and the prompt under the model's noised "
                   "CLIP at t = 0, from -1 to 1; higher = closer to the prompt. Compare scores of one prompt "
                   "only: their absolute level depends on the prompt.")

# Two-sided 95% quantiles of Student's t by degrees of freedom; beyond the table, the last (slightly wider
# than the true one: the interval errs on the side of "within noise").
_T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         15: 2.131, 20: 2.086, 30: 2.042}


def title(strategy: str) -> str:
    """A strategy's name as a heading ("CLIP guidance"); an installed plugin's own name otherwise."""
    return BUILTIN_TITLES.get(strategy, strategy)


def scale_of(entry) -> Optional[float]:
    """The scale the entry's strategy declares, or None (read from the registry, not guessed by name)."""
    import samplers

    registry = samplers.get_registry()
    scale = registry.scale_of(registry.guidance_strategy(entry.guidance))
    return None if scale is None else entry.guidance_params.get(scale.name)


def checker_verdict(checker: Optional[Dict]) -> str:
    """The shapes checker's verdict in a few words: "✓ matches the prompt" or "✗ wrong colour, position"."""
    if not checker:
        return ""
    if checker.get("all") is None:
        return "n/a (prompt outside the shapes grammar)"
    if checker["all"]:
        return "✓ matches the prompt"
    wrong = [k for k in ("background", "count") if not checker.get(k)]
    for shape in checker.get("shapes", []):
        wrong += [k for k, ok in shape.items() if not ok and k not in wrong]
    if wrong:
        return "✗ wrong " + ", ".join(wrong)
    # Every attribute right but the picture not clean: stray blobs or colours no scene has.
    return "✗ not clean (stray marks or off-palette colours)" if checker.get("clean") is False else "✗ no match"


def judged(entry) -> Optional[bool]:
    """Whether the checker finds the image right; None where there is no verdict (no checker, or a prompt
    outside its grammar)."""
    return None if not entry.checker or entry.checker.get("all") is None else bool(entry.checker["all"])


# ------------------------------------------------------------------ rows and their measures
@dataclass
class Measure:
    """One measure of a row: its value, its 95% interval where it has one, and how it reads."""

    value: Optional[float]
    text: str
    low: Optional[float] = None
    high: Optional[float] = None

    def as_dict(self) -> Dict:
        return {"value": self.value, "low": self.low, "high": self.high, "text": self.text}


@dataclass
class Row:
    """One run of a comparison (a strategy at a scale) over the comparison's seeds, and what it measured."""

    guidance: str
    scale: Optional[float]
    entries: List                   # one per seed, in the comparison's seed order
    fidelity: Measure
    spread: Measure
    best: bool = False
    seconds: float = field(init=False)

    def __post_init__(self):
        self.seconds = sum(e.seconds for e in self.entries)

    @property
    def title(self) -> str:
        """"Classifier-free guidance · scale 3"."""
        return title(self.guidance) + (f" · scale {self.scale:g}" if self.scale is not None else "")

    @property
    def seeds(self) -> List[int]:
        return [e.seed for e in self.entries]

    def as_dict(self) -> Dict:
        """The row as the API's scores give it."""
        return {"guidance": self.guidance, "title": self.title, "scale": self.scale, "seeds": self.seeds,
                "fidelity": self.fidelity.as_dict(), "spread": self.spread.as_dict(), "best": self.best,
                "seconds": round(self.seconds, 2),
                "images": [{"seed": e.seed, "clip_score": None if e.clip_score is None else round(e.clip_score, 3),
                            "checker": e.checker, "verdict": checker_verdict(e.checker)} for e in self.entries]}


def rows(entries: Sequence) -> List[Row]:
    """The comparison's entries as rows, one per run (strategy and parameters) in order of first appearance,
    each with its fidelity and spread; the most faithful row marked `best` where the noise rule allows."""
    groups: Dict[Tuple, List] = {}
    for entry in entries:
        groups.setdefault((entry.guidance, tuple(sorted(entry.guidance_params.items()))), []).append(entry)
    by_checker = all(judged(e) is not None for e in entries)
    made = [Row(row[0].guidance, scale_of(row[0]), row, _fidelity(row, by_checker), _spread(row, by_checker))
            for row in groups.values()]
    best = best_index(made)
    if best is not None:
        made[best].best = True
    return made


def _fidelity(entries: Sequence, by_checker: bool) -> Measure:
    if by_checker:
        from .evaluation.measures import wilson

        right = sum(bool(judged(e)) for e in entries)
        rate = wilson(right, len(entries))
        return Measure(rate["rate"], f"{right}/{len(entries)} drawn right (95%: {100 * rate['low']:.0f}–"
                                     f"{100 * rate['high']:.0f}%)", rate["low"], rate["high"])
    scores = [e.clip_score for e in entries if e.clip_score is not None]
    if not scores:
        return Measure(None, "no score (the model's CLIP is not on disk)")
    mean = float(np.mean(scores))
    if len(scores) < 2:
        return Measure(mean, f"CLIP {mean:.3f} (one seed: no interval)")
    half = _T_95[max(k for k in _T_95 if k <= len(scores) - 1)] * float(np.std(scores, ddof=1)) / math.sqrt(len(scores))
    return Measure(mean, f"CLIP {mean:.3f} ± {half:.3f} (95%)", mean - half, mean + half)


def _spread(entries: Sequence, by_checker: bool) -> Measure:
    if by_checker:
        from .data import shapes
        from .evaluation import measures

        scene = shapes.parse_caption(entries[0].settings["prompt"])
        size = entries[0].base_image.width
        value = measures.diversity(measures.layout_variances([[e.base_image for e in entries]], [scene]),
                                   _data_variances(entries[0].settings["prompt"], size))
        if math.isnan(value):
            return Measure(None, "layout spread n/a (fewer than two seeds drawn right)")
        return Measure(round(value, 2), f"layout spread {value:.2f} (training renders: 1)")
    if len(entries) < 2:
        return Measure(None, "spread n/a (one seed)")
    pixels = [np.asarray(e.base_image.convert("RGB"), dtype=np.float64) for e in entries]
    value = float(np.mean([np.abs(a - b).mean() for i, a in enumerate(pixels) for b in pixels[i + 1:]]))
    return Measure(round(value, 1), f"image spread {value:.0f} (mean difference of two images, of 255)")


@functools.lru_cache(maxsize=64)
def _data_variances(prompt: str, size: int) -> np.ndarray:
    """The layout variances of the prompt's training renders: what a spread of 1 means (enough renders that
    the reference itself barely varies)."""
    from .data import shapes
    from .evaluation import measures

    return measures.data_variances([shapes.parse_caption(prompt)], size, renders=64)


def best_index(made: Sequence[Row]) -> Optional[int]:
    """The row whose fidelity interval lies wholly above every other row's, or None: with fewer than two rows,
    rows without intervals, or intervals that overlap (the difference is within noise)."""
    if len(made) < 2 or any(r.fidelity.low is None for r in made):
        return None
    from .evaluation.measures import compare_rates

    top = max(range(len(made)), key=lambda i: made[i].fidelity.low)
    ahead = all(compare_rates(made[top].fidelity.as_dict(), r.fidelity.as_dict()) == "higher"
                for i, r in enumerate(made) if i != top)
    return top if ahead else None


def verdict(made: Sequence[Row]) -> str:
    """One sentence on which row is the most faithful, or that none is beyond noise."""
    if len(made) < 2:
        return ""
    best = next((r for r in made if r.best), None)
    if best is not None:
        return f"Most faithful: {best.title}, ahead of every other row beyond noise (95% intervals apart)."
    return ("Fidelity within noise: no row is ahead of every other beyond its 95% interval, so none is marked "
            "best (more seeds narrow the intervals).")


def legend(made: Sequence[Row]) -> List[Tuple[str, str]]:
    """(mark, meaning) for every mark and measure the rows show."""
    marks = []
    if any(judged(e) is not None for r in made for e in r.entries):
        marks += [("✓", "the checker finds the scene drawn right: colours, shapes, sizes, positions, nothing "
                        "stray"),
                  ("✗", "something is wrong (the image's caption says what)")]
    marks.append(("★", "the most faithful row, only when its fidelity is ahead of every other row's beyond "
                       "noise (95% intervals apart)"))
    if any(r.fidelity.text.startswith("CLIP") for r in made):
        marks.append(("CLIP", "mean CLIP score over the row's seeds (CLIP guidance steers by this very score, "
                              "which flatters it). " + CLIP_SCORE_HELP))
    if any(r.spread.text.startswith("layout") for r in made):
        marks.append(("layout spread", "how differently the row's images place and size the shapes that "
                                       "the caption leaves free: 1 = as varied as the training renders, 0 = "
                                       "the same layout on every seed"))
    if any(r.spread.text.startswith("image") for r in made):
        marks.append(("image spread", "mean difference between two of the row's images: 0 = the same "
                                      "picture on every seed"))
    return marks


def caption(entry) -> str:
    """An image's caption: its seed, the checker's verdict (if any) and its CLIP score."""
    parts = [f"seed {entry.seed}", checker_verdict(entry.checker)]
    if entry.clip_score is not None:
        parts.append(f"CLIP {entry.clip_score:.3f}")
    return " · ".join(p for p in parts if p)


def table(made: Sequence[Row]) -> List[Tuple[str, ...]]:
    """A row per run for a text table: strategy, scale, fidelity, spread, seconds, best."""
    return [(r.guidance, "-" if r.scale is None else f"{r.scale:g}", r.fidelity.text, r.spread.text,
             f"{r.seconds:.2f}", "best" if r.best else "") for r in made]


# ------------------------------------------------------------------ the grid image
def _font():
    try:
        return ImageFont.load_default(size=_FONT_SIZE)
    except TypeError:  # Pillow without FreeType's scalable default font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> List[str]:
    """`text` broken into lines that fit `width` pixels."""
    chars = max(8, int(width / max(1.0, draw.textlength("n", font=font))))
    while chars > 8:
        lines = textwrap.wrap(text, chars)
        if all(draw.textlength(line, font=font) <= width for line in lines):
            return lines
        chars -= 2
    return textwrap.wrap(text, chars)


def _star(draw: ImageDraw.ImageDraw, x: float, y: float, r: float) -> None:
    """A five-pointed star centred on (x, y) (the default font has no ★)."""
    points = [(x + (r if k % 2 == 0 else r / 2.5) * math.sin(k * math.pi / 5),
               y - (r if k % 2 == 0 else r / 2.5) * math.cos(k * math.pi / 5)) for k in range(10)]
    draw.polygon(points, fill=STAR, outline="black")


def _corner(draw: ImageDraw.ImageDraw, x: int, y: int, ok: bool) -> None:
    """The grid's verdict mark: a green (drawn right) or red (something wrong) square in a tile's corner."""
    draw.rectangle((x, y, x + 13, y + 13), fill=RIGHT if ok else WRONG, outline="white")


def grid(made: Sequence[Row], heading: str, tile: int = TILE) -> Image.Image:
    """The comparison as one image: the heading, the seeds over the columns, then per row its title and
    measures over its images (a corner mark per image where the checker judged it, a star on the most
    faithful row), and the legend of every mark at the bottom."""
    font = _font()
    columns = max(len(r.entries) for r in made)
    width = _PAD + columns * (tile + _PAD)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = width - 2 * _PAD
    blocks = [(r, _wrap(probe, r.title + (": most faithful" if r.best else ""), font, text_w - 24)
               + _wrap(probe, f"fidelity {r.fidelity.text} · {r.spread.text}", font, text_w)) for r in made]
    notes = [(mark, _wrap(probe, f"{'' if mark in ('✓', '✗', '★') else mark + ': '}{meaning}", font, text_w - 24))
             for mark, meaning in legend(made)]
    summary = _wrap(probe, verdict(made), font, text_w)
    head = _wrap(probe, heading, font, text_w)
    height = (_PAD + len(head) * _LINE + _LINE + sum(len(lines) * _LINE + tile + _PAD for _, lines in blocks)
              + len(summary) * _LINE + sum(len(lines) * _LINE for _, lines in notes) + 2 * _PAD)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = _PAD
    for line in head:
        draw.text((_PAD, y), line, fill="black", font=font)
        y += _LINE
    for c, seed in enumerate(made[0].seeds):
        draw.text((_PAD + c * (tile + _PAD), y), f"seed {seed}", fill=(90, 90, 90), font=font)
    y += _LINE
    for row, lines in blocks:
        x = _PAD
        if row.best:
            _star(draw, _PAD + 8, y + _LINE / 2 - 1, 8)
        for i, line in enumerate(lines):
            draw.text((x + (24 if i == 0 and row.best else 0), y), line, fill="black", font=font)
            y += _LINE
        for c, entry in enumerate(row.entries):
            tx = _PAD + c * (tile + _PAD)
            sheet.paste(entry.image.resize((tile, tile), Image.NEAREST), (tx, y))
            ok = judged(entry)
            if ok is not None:
                _corner(draw, tx + 3, y + 3, ok)
        y += tile + _PAD
    for line in summary:
        draw.text((_PAD, y), line, fill="black", font=font)
        y += _LINE
    y += _PAD // 2
    for mark, lines in notes:
        if mark in ("✓", "✗"):
            _corner(draw, _PAD, y + 2, mark == "✓")
        elif mark == "★":
            _star(draw, _PAD + 7, y + _LINE / 2 - 1, 7)
        for line in lines:
            draw.text((_PAD + (24 if mark in ("✓", "✗", "★") else 0), y), line, fill=(60, 60, 60), font=font)
            y += _LINE
    return sheet
