"""Fast loading (built on the meta device, weights assigned) gives the same models as building and loading."""
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from bench import models
from glide.download import load_checkpoint
from glide.families import shapes
from glide.model_creation import build_with_weights, create_model_and_diffusion, load_model_and_diffusion


def _options():
    return models.quick_options()["upsample"]


def test_mapped_official_format_checkpoint_loads_to_equal_weights_and_outputs(tmp_path):
    torch.manual_seed(0)
    built, _ = create_model_and_diffusion(**_options(), tokenizer=models.RandomTokenizer())
    path = tmp_path / "upsample.pt"
    torch.save(built.state_dict(), path)
    loaded, _ = load_model_and_diffusion(load_checkpoint("upsample", path=path, mmap=True), **_options(),
                                         tokenizer=models.RandomTokenizer())
    expected, got = built.state_dict(), loaded.state_dict()
    assert expected.keys() == got.keys()
    for name in expected:
        assert got[name].dtype == expected[name].dtype and torch.equal(got[name], expected[name]), name
    inputs = models.make_inputs(_options(), 1, torch.device("cpu"), 16, seed=0)
    with torch.no_grad():
        assert torch.equal(models.forward_fn(built.eval(), inputs)(), models.forward_fn(loaded.eval(), inputs)())


@pytest.mark.parametrize("component", ["base", "upsample"])
def test_shapes_components_load_as_before(component):
    before, _ = create_model_and_diffusion(**shapes.MODEL_OPTIONS[component], tokenizer=shapes.load_tokenizer())
    before.load_state_dict(load_file(shapes.files()[component]))
    after, _ = shapes.load(component, torch.device("cpu"))
    for name, tensor in before.state_dict().items():
        assert torch.equal(after.state_dict()[name], tensor), name


def test_a_half_precision_checkpoint_is_cast_to_the_modules_dtype_and_missing_weights_are_an_error():
    reference = torch.nn.Linear(3, 2)
    state = {k: v.half() for k, v in reference.state_dict().items()}
    model = build_with_weights(lambda: torch.nn.Linear(3, 2), state)
    assert model.weight.dtype == torch.float32 and torch.equal(model.weight, state["weight"].float())
    with pytest.raises(RuntimeError, match="Missing key"):
        build_with_weights(lambda: torch.nn.Linear(3, 2), {"weight": state["weight"]})


def test_loading_a_model_does_not_import_torch_dynamo():
    """A model built on the meta device draws and multiplies nothing there: the first such operation imports
    torch._dynamo, 1.3-2.5 s of every load on 2 cores (a fresh interpreter: this one may have imported it)."""
    code = ("import sys; from glide.families import get_family; from glide.pipeline import Pipeline; "
            "Pipeline(get_family('shapes'), 'cpu', 'float32').component('base'); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
