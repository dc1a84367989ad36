"""glide.eval's scoring: perfect on renders of the prompts, and it notices wrong images."""
import numpy as np

from glide import eval as shapes_eval
from glide.data import shapes


def test_score_is_perfect_on_renders_and_low_on_shuffled_images():
    scenes, captions = shapes_eval.fresh_scenes(24, 2)
    assert all(shapes.parse_caption(c) == s for c, s in zip(captions, scenes))
    rng = np.random.default_rng(0)
    images = [shapes.render(s, 32, rng) for s in scenes]
    assert shapes_eval.score(images, scenes)["all"] == 1.0
    shuffled = shapes_eval.score(images[1:] + images[:1], scenes)
    assert shuffled["all"] < 0.2 and shuffled["background"] < 0.5


def test_markdown_table_lists_every_row():
    rows = [{"shapes": 1, "condition": "x", "all": 0.5, "background": 1.0, "shape": 1.0, "color": 1.0,
             "position": 1.0, "size": 1.0, "seconds": 1.0}]
    table = shapes_eval.markdown(rows)
    assert table.count("\n") == 2 and "| 1 | x | 0.5 |" in table
