"""The caption grammar: a scene in words (several phrasings each) and, back, words to a scene."""
from __future__ import annotations

import re

import numpy as np

from .scene import PALETTE, SHAPES, Scene, Shape, is_valid

#: Words for each size; the first is the canonical one.
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
#: Phrases for each position; the first is the canonical one.
POSITION_PHRASES = {
    "left": ("on the left", "to the left", "at the left", "on the left side"),
    "right": ("on the right", "to the right", "at the right", "on the right side"),
    "top": ("at the top", "on top", "near the top"),
    "bottom": ("at the bottom", "on the bottom", "near the bottom"),
    "center": ("in the middle", "in the center", "in the centre", "at the center"),
}
#: Sentence templates by number of shapes; ``{s1}``/``{s2}`` are "a <size> <colour> <shape>
#: <position>" phrases and ``{bg}`` the background colour. The first one is canonical.
TEMPLATES = {
    1: (
        "{s1} on a {bg} background",
        "{s1} against a {bg} background",
        "{bg} background with {s1}",
        "a {bg} background with {s1}",
        "{s1}, {bg} background",
        "there is {s1} on a {bg} background",
        "on a {bg} background, {s1}",
        "a picture of {s1} on a {bg} background",
    ),
    2: (
        "{s1} and {s2} on a {bg} background",
        "{s1} and {s2} against a {bg} background",
        "{bg} background with {s1} and {s2}",
        "a {bg} background with {s1} and {s2}",
        "{s1}, {s2}, {bg} background",
        "there is {s1} and {s2} on a {bg} background",
        "on a {bg} background, {s1} and {s2}",
        "{s1} with {s2} on a {bg} background",
    ),
}


def _pick(options, rng):
    return options[0] if rng is None else options[rng.integers(len(options))]


def _shape_phrase(s: Shape, rng) -> str:
    return f"a {_pick(SIZE_WORDS[s.size], rng)} {s.color} {s.shape} {_pick(POSITION_PHRASES[s.position], rng)}"


def caption(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """Describe ``scene`` in English, naming every attribute of every shape and the background.

    With ``rng`` the template, the synonyms and the order the shapes are mentioned in are
    random; without it the canonical template and words are used, in the scene's order.
    """
    shapes = list(scene.shapes)
    if rng is not None and len(shapes) == 2 and rng.integers(2):
        shapes.reverse()
    template = _pick(TEMPLATES[len(shapes)], rng)
    phrases = {f"s{i + 1}": _shape_phrase(s, rng) for i, s in enumerate(shapes)}
    return template.format(bg=scene.background, **phrases)


def _alternation(words) -> str:
    # Longest first, so that e.g. "on the left side" is preferred over "on the left".
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[,.;:!]", " ", text.lower()).split())


def _compile_templates():
    size = _alternation(w for ws in SIZE_WORDS.values() for w in ws)
    color = _alternation(PALETTE)
    shape = _alternation(SHAPES)
    position = _alternation(p for ps in POSITION_PHRASES.values() for p in ps)
    compiled = []
    for templates in TEMPLATES.values():
        for template in templates:
            pattern = re.escape(_normalise(template))
            pattern = pattern.replace(re.escape("{bg}"), f"(?P<bg>{color})")
            for i in (1, 2):
                pattern = pattern.replace(
                    re.escape(f"{{s{i}}}"),
                    f"a (?P<size{i}>{size}) (?P<color{i}>{color}) (?P<shape{i}>{shape}) "
                    f"(?P<position{i}>{position})")
            compiled.append(re.compile(pattern))
    return compiled


_TEMPLATE_PATTERNS = _compile_templates()
_SIZE_OF_WORD = {w: size for size, ws in SIZE_WORDS.items() for w in ws}
_POSITION_OF_PHRASE = {p: pos for pos, ps in POSITION_PHRASES.items() for p in ps}


def parse_caption(text: str) -> Scene | None:
    """Read a caption of the grammar back into a Scene (case and punctuation are ignored).

    Returns None when ``text`` is not a sentence of the grammar or describes an invalid scene.
    """
    text = _normalise(text)
    for pattern in _TEMPLATE_PATTERNS:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        groups = match.groupdict()
        shapes = tuple(
            Shape(shape=groups[f"shape{i}"], color=groups[f"color{i}"],
                  position=_POSITION_OF_PHRASE[groups[f"position{i}"]],
                  size=_SIZE_OF_WORD[groups[f"size{i}"]])
            for i in (1, 2) if f"shape{i}" in groups)
        scene = Scene(background=groups["bg"], shapes=shapes)
        return scene if is_valid(scene) else None
    return None
