"""glide.evaluation.measures: Wilson intervals, diversity and realism, judged on renders with known answers."""
import numpy as np
import pytest

from glide.data import shapes
from glide.evaluation import measures


def test_wilson_interval_matches_known_values():
    rate = measures.wilson(8, 10)
    assert rate["rate"] == 0.8 and rate["low"] == pytest.approx(0.4902, abs=1e-4)
    assert rate["high"] == pytest.approx(0.9433, abs=1e-4)
    assert measures.wilson(0, 10)["low"] == 0 and measures.wilson(10, 10)["high"] == 1
    # 254 of 256 against 251 of 256 (the README's former "beats"): within noise.
    assert measures.compare_rates(measures.wilson(254, 256), measures.wilson(251, 256)) == "within noise"
    assert measures.compare_rates(measures.wilson(250, 256), measures.wilson(150, 256)) == "higher"
    assert measures.compare_rates(measures.wilson(150, 256), measures.wilson(250, 256)) == "lower"


def two_shape_scenes(n, seed=31):
    rng = np.random.default_rng(seed)
    return [shapes.random_scene(rng, 2) for _ in range(n)]


def test_diversity_is_zero_for_one_layout_and_about_one_like_the_data():
    scenes = two_shape_scenes(24)
    reference = measures.data_variances(scenes, 32)
    canonical = [[shapes.render(scene, 32) for _ in range(6)] for scene in scenes]
    assert measures.diversity(measures.layout_variances(canonical, scenes), reference) < 1e-6
    rng = np.random.default_rng(32)  # other jitters than the reference's
    like_data = [[shapes.render(scene, 32, rng) for _ in range(6)] for scene in scenes]
    assert 0.8 < measures.diversity(measures.layout_variances(like_data, scenes), reference) < 1.2


def test_realism_error_is_zero_on_renders_and_grows_with_noise():
    rng = np.random.default_rng(33)
    for scene in two_shape_scenes(10):
        image = shapes.render(scene, 32, rng)
        assert measures.realism_error(image) == 0
        noisy = np.clip(np.asarray(image, float) + rng.normal(0, 12, (32, 32, 3)), 0, 255).astype(np.uint8)
        assert measures.realism_error(noisy) > 5
        washed = (np.asarray(image, float) * 0.7 + 60).astype(np.uint8)  # faded colours, same layout
        assert measures.realism_error(washed) > 10
