"""The reference's three notebooks, as published, run against `glide`.

The notebooks are openai/glide-text2im's notebooks/text2im.ipynb (classifier-free guidance),
clip_guided.ipynb (CLIP guidance) and inpaint.ipynb (inpainting, base then upsampler), unchanged. They are
not part of this repository: the tests read them from $GLIDE_NOTEBOOKS_DIR (default ../shared/notebooks,
beside ../shared/reference) and skip, saying so, where they are not (tests/test_notebooks.py runs the
notebooks' sampling cells as this repository carries them). Each test reads one, takes its code cells and
executes them in order in one namespace, after the substitutions listed in SUBSTITUTIONS, each of which must
apply exactly as many times as listed: a notebook that changes fails here instead of running something else. They change only what
cannot run offline or in a test's time on a CPU:

- `!pip install ...` (a shell line; the package under test is installed) and IPython's `display`
  (the test collects the images instead) are dropped; `glide_text2im` is renamed `glide`;
- the models are narrow versions of the released ones (`options.update(...)` after each defaults
  call; a small CLIP config passed to `create_clip_model`), at the released image sizes (64, 256);
- both models sample fewer steps than the notebooks' '100' and 'fast27' (the 256-pixel upsampler's steps
  are most of a test's time).

The notebooks' own `load_checkpoint(...)` calls are run as published: random weights of the narrow
models are saved under the official file names in a folder that `$GLIDE_CACHE_DIR` points to, so they
find them there and download nothing (the tokenizer files are copied there too). The inpainting
notebook's grass.png is an image the test makes in the working directory.
"""
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from notebook_support import check_samples, fill_cache
from PIL import Image

from glide.model_creation import (
    model_and_diffusion_defaults,
    model_and_diffusion_defaults_upsampler,
)

NOTEBOOKS = Path(os.environ.get("GLIDE_NOTEBOOKS_DIR") or Path(__file__).resolve().parents[2] / "shared" / "notebooks")

# Narrow versions of the released models, at their image sizes (64, and 256 for the upsampler).
SMALL_BASE = dict(num_channels=32, num_res_blocks=1, channel_mult="1,1,2,2", attention_resolutions="8",
                  num_head_channels=16, text_ctx=16, xf_width=32, xf_layers=1, xf_heads=2)
SMALL_UP = dict(SMALL_BASE, channel_mult="1,1,2,2")
# The released CLIP's config (glide/clip/config.yaml, the reference's keys), narrow, at 64 pixels.
SMALL_CLIP = dict(
    logit_scale=100.0, beta_schedule="squaredcos_cap_v2", n_timesteps=1000, image_size=64,
    patch_size=16, n_vocab=49408, max_text_len=77, n_embd=32, n_head_state_text=16, n_head_text=2,
    n_xf_blocks_text=1, n_head_state_image=16, n_head_image=2, n_xf_blocks_image=1,
)
BASE_STEPS, UP_STEPS = 10, 6  # the notebooks use '100' and 'fast27' (27)


@dataclass(frozen=True)
class Substitution:
    old: str
    new: str
    times: int   # how many times `old` occurs in the notebook's code cells
    why: str


def common(renames: int) -> List[Substitution]:
    """What every notebook needs changed; `renames`: how many times it names `glide_text2im`."""
    base_defaults = "options = model_and_diffusion_defaults()\n"
    up_defaults = "options_up = model_and_diffusion_defaults_upsampler()\n"
    return [
        Substitution("!pip install git+https://github.com/openai/glide-text2im", "", 1,
                     "a shell line; the package under test is installed"),
        Substitution("from IPython.display import display\n", "", 1, "the test collects displayed images"),
        Substitution("glide_text2im", "glide", renames, "the package's name"),
        Substitution(base_defaults, base_defaults + "options.update(SMALL_BASE)\n", 1, "a narrow base model"),
        Substitution(up_defaults, up_defaults + "options_up.update(SMALL_UP)\n", 1, "a narrow upsampler"),
        Substitution("options['timestep_respacing'] = '100'", f"options['timestep_respacing'] = '{BASE_STEPS}'", 1,
                     "fewer base steps"),
        Substitution("options_up['timestep_respacing'] = 'fast27'", f"options_up['timestep_respacing'] = '{UP_STEPS}'",
                     1, "fewer upsampler steps"),
    ]


SUBSTITUTIONS: Dict[str, List[Substitution]] = {
    "text2im": common(renames=2),
    "clip_guided": common(renames=4) + [
        Substitution("create_clip_model(device=device)", "create_clip_model(config_path=SMALL_CLIP_CONFIG, device=device)",
                     1, "a narrow CLIP"),
    ],
    "inpaint": common(renames=2),
}

CHECKPOINTS = {
    "base": (model_and_diffusion_defaults, SMALL_BASE, False),
    "upsample": (model_and_diffusion_defaults_upsampler, SMALL_UP, False),
    "base-inpaint": (model_and_diffusion_defaults, SMALL_BASE, True),
    "upsample-inpaint": (model_and_diffusion_defaults_upsampler, SMALL_UP, True),
}


def code_cells(name: str) -> List[str]:
    """The notebook's code cells, with its SUBSTITUTIONS applied (each checked to apply as often as listed)."""
    path = NOTEBOOKS / f"{name}.ipynb"
    if not path.exists():
        pytest.skip(f"the reference's {name}.ipynb (openai/glide-text2im, notebooks/) is not at {path}: "
                    "set GLIDE_NOTEBOOKS_DIR to the folder that holds it")
    notebook = json.loads(path.read_text())
    cells = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
    for sub in SUBSTITUTIONS[name]:
        found = sum(cell.count(sub.old) for cell in cells)
        assert found == sub.times, f"{name}.ipynb names {sub.old!r} {found} times, not {sub.times} ({sub.why})"
        cells = [cell.replace(sub.old, sub.new) for cell in cells]
    return cells


def run_notebook(name: str, **given) -> dict:
    """Execute the notebook's cells in order in one namespace holding `given`; returns the namespace."""
    namespace = {"__name__": "__main__", **given}
    for i, source in enumerate(code_cells(name)):
        exec(compile(source, f"{name}.ipynb, code cell {i + 1}", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def glide_cache(tmp_path_factory, vocab_dir):
    """A ready-filled cache folder: tokenizer files, random checkpoints, and a small CLIP config."""
    return fill_cache(tmp_path_factory.mktemp("glide_cache"), vocab_dir, CHECKPOINTS, SMALL_CLIP)


@pytest.fixture
def given(glide_cache, monkeypatch, tmp_path):
    """What the notebooks' namespace starts with; they run in an empty working directory, with the cache as
    `$GLIDE_CACHE_DIR`. given["display"] collects the images they display (given["displayed"])."""
    monkeypatch.setenv("GLIDE_CACHE_DIR", str(glide_cache))
    monkeypatch.setenv("GLIDE_DOWNLOAD_URL", "http://127.0.0.1:9/")   # a missing file fails at once, offline
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    displayed: List[Image.Image] = []
    return dict(display=displayed.append, displayed=displayed, SMALL_BASE=SMALL_BASE, SMALL_UP=SMALL_UP,
                SMALL_CLIP_CONFIG=glide_cache / "clip_small.yaml")


def check_displayed(displayed, sizes):
    """show_images() ran on each batch: a row of 3-channel images of the sizes given."""
    assert [(img.size, img.mode) for img in displayed] == [(size, "RGB") for size in sizes]


def test_text2im_notebook(given):
    ns = run_notebook("text2im", **given)
    assert ns["diffusion"].num_timesteps == BASE_STEPS and ns["diffusion_up"].num_timesteps == UP_STEPS
    check_samples(ns["samples"], (1, 3, 64, 64))
    check_samples(ns["up_samples"], (1, 3, 256, 256))
    check_displayed(given["displayed"], [(64, 64), (256, 256)])


def test_clip_guided_notebook(given):
    ns = run_notebook("clip_guided", **given)
    # CLIP's guidance is a nonzero gradient shaped like the image.
    x = torch.randn(1, 3, 64, 64)
    grad = ns["cond_fn"](x, torch.full((1,), 500, dtype=torch.long))
    assert grad.shape == x.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0
    check_samples(ns["samples"], (1, 3, 64, 64), bound=1.01)
    check_samples(ns["up_samples"], (1, 3, 256, 256))
    check_displayed(given["displayed"], [(64, 64), (256, 256)])


def test_inpaint_notebook(given):
    # grass.png, made up: a green gradient with some texture.
    rng = np.random.default_rng(0)
    grass = np.zeros((96, 96, 3), dtype=np.uint8)
    grass[..., 1] = np.linspace(80, 220, 96, dtype=np.uint8)[:, None]
    grass[..., 0] = rng.integers(0, 90, (96, 96))
    grass[..., 2] = rng.integers(0, 60, (96, 96))
    Image.fromarray(grass).save("grass.png")
    ns = run_notebook("inpaint", **given)
    samples, up_samples = ns["samples"], ns["up_samples"]
    check_samples(samples, (1, 3, 64, 64))
    check_samples(up_samples, (1, 3, 256, 256))
    # The last step returns the (clipped, denoised_fn-fixed) x_0 prediction: the known part exactly.
    for got, image, mask in ((samples, ns["source_image_64"], ns["source_mask_64"]),
                             (up_samples, ns["source_image_256"], ns["source_mask_256"])):
        known = mask.bool().expand_as(got)
        torch.testing.assert_close(got[known], image.expand_as(got)[known])
        assert not torch.allclose(got[~known], torch.zeros(()))
    check_displayed(given["displayed"], [(256, 256), (64, 64), (256, 256)])
