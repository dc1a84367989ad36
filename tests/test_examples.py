"""Every example prompt a person reads — in README.md, docs/, the CLI's, the API's and the code's docstrings and
the demo's examples — is one the embedded shapes model draws right: a sentence of its grammar that the checker
reads back from the model's own images."""
import re
from pathlib import Path

import pytest

from glide.data import shapes

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
           *sorted(p for folder in ("glide", "demo", "samplers") for p in (ROOT / folder).rglob("*.py"))]
# A quoted phrase that names one of the family's shapes and starts as a caption does is an example prompt.
QUOTED = re.compile(r'["“]((?:a|an|there is) [^"”\n]+)["”]')
SHAPE_WORDS = re.compile(r"\b(circle|square|triangle)s?\b")


def example_prompts():
    found = {}
    for path in SOURCES:
        for match in QUOTED.finditer(path.read_text()):
            text = match.group(1)
            if SHAPE_WORDS.search(text):
                found.setdefault(text, path.relative_to(ROOT).as_posix())
    return found


EXAMPLES = example_prompts()


def test_the_examples_are_found():
    assert "a small red circle on the left on a blue background" in EXAMPLES
    assert len(EXAMPLES) >= 8


@pytest.fixture(scope="module")
def pipe():
    from glide.pipeline import load_pipeline

    return load_pipeline("shapes", device="cpu", dtype="float32")


@pytest.mark.parametrize("prompt", sorted(EXAMPLES))
def test_every_example_prompt_is_drawn_right(pipe, prompt):
    where = EXAMPLES[prompt]
    scene = shapes.parse_caption(prompt)
    assert scene is not None, f"{where}: “{prompt}” is not a sentence of the shapes grammar"
    images = pipe.generate(prompt, seed=[0, 1, 2], upsample=False).images
    right = sum(bool(shapes.matches(image, scene)["all"]) for image in images)
    assert right >= 2, f"{where}: the shapes model draws “{prompt}” right in only {right} of 3 seeds"
