"""How a guidance comparison is shown: verdicts, captions, a score table and the grid image.

The CLI's `glide compare` and the demo's comparison tab both render with these, so a comparison
reads the same wherever it is made. Entries are `glide.pipeline.Comparison`s.
"""
from typing import Dict, List, Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

TILE = 256             # px: samples are scaled up (nearest) to this, so 32 px images stay legible
_FONT_SIZE = 13
_LINE = _FONT_SIZE + 4
_PAD = 8
_CAPTION_LINES = 3
BUILTIN_TITLES = {"clip": "CLIP guidance", "classifier-free": "Classifier-free guidance", "none": "Unguided"}

CLIP_SCORE_HELP = ("CLIP score: cosine similarity between the image and the prompt under the model's noised "
                   "CLIP at t = 0, from -1 to 1; higher = closer to the prompt. Compare scores of one prompt "
                   "only: their absolute level depends on the prompt.")


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


def caption_lines(entry) -> List[str]:
    """A tile's caption: strategy and scale; seconds and CLIP score; the checker's verdict (if any)."""
    scale = scale_of(entry)
    lines = [title(entry.guidance) + (f" · scale {scale:g}" if scale is not None else ""),
             f"{entry.seconds:.1f} s" + (f" · CLIP {entry.clip_score:.3f}" if entry.clip_score is not None else "")]
    verdict = checker_verdict(entry.checker)
    return lines + [verdict] if verdict else lines


def best_index(entries: Sequence) -> Optional[int]:
    """Which entry did best: the checker's full match first (where there is a checker), then the CLIP
    score; None when nothing tells them apart (no scores, or all equal)."""
    def key(e):
        return (bool(e.checker and e.checker.get("all")), e.clip_score if e.clip_score is not None else float("-inf"))

    keys = [key(e) for e in entries]
    if len(keys) < 2 or len(set(keys)) == 1 or all(k[1] == float("-inf") and not k[0] for k in keys):
        return None
    return max(range(len(keys)), key=lambda i: keys[i])


def score_rows(entries: Sequence) -> List[Dict]:
    """One row per entry with fixed decimals, and `best` marking the entry `best_index` chose."""
    best = best_index(entries)
    rows = []
    for i, e in enumerate(entries):
        scale = scale_of(e)
        rows.append({"guidance": e.guidance, "title": title(e.guidance), "scale": scale,
                     "seconds": round(e.seconds, 2),
                     "clip_score": None if e.clip_score is None else round(e.clip_score, 3),
                     "checker": e.checker, "verdict": checker_verdict(e.checker), "best": i == best,
                     "caption": " · ".join(caption_lines(e))})
    return rows


def _font():
    try:
        return ImageFont.load_default(size=_FONT_SIZE)
    except TypeError:  # Pillow without FreeType's scalable default font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """`text`, cut short with "..." to fit `width` pixels (tables elsewhere have it in full)."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def grid(rows: Sequence[Sequence], heading: str, tile: int = TILE) -> Image.Image:
    """The comparison as one image: a heading, then a row of tiles per strategy, each captioned with its
    scale, time, CLIP score and checker verdict; the best tile of each row is outlined in green."""
    font = _font()
    caption_h = _CAPTION_LINES * _LINE + 4
    cell_w, cell_h = tile + _PAD, tile + caption_h + _PAD
    columns = max(len(r) for r in rows)
    sheet = Image.new("RGB", (_PAD + columns * cell_w, _PAD + _LINE + len(rows) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((_PAD, _PAD), _fit(draw, heading, font, sheet.width - 2 * _PAD), fill="black", font=font)
    for r, row in enumerate(rows):
        best = best_index(row)
        for c, entry in enumerate(row):
            x, y = _PAD + c * cell_w, _PAD + _LINE + r * cell_h
            sheet.paste(entry.image.resize((tile, tile), Image.NEAREST), (x, y))
            if c == best:
                draw.rectangle((x - 3, y - 3, x + tile + 2, y + tile + 2), outline=(0, 160, 0), width=3)
            for i, text in enumerate(caption_lines(entry)):
                text = text.replace("✓ ", "").replace("✗ ", "")   # the default font has no check marks
                draw.text((x, y + tile + 2 + i * _LINE), _fit(draw, text, font, tile), fill="black", font=font)
    return sheet


def rows_by_strategy(entries: Sequence) -> List[List]:
    """Entries grouped into grid rows, one per strategy, in order of first appearance."""
    rows: Dict[str, List] = {}
    for entry in entries:
        rows.setdefault(entry.guidance, []).append(entry)
    return list(rows.values())
