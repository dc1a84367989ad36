"""The six released checkpoints' layouts: our models have exactly their keys, shapes and sizes.

Models are built on the meta device, so no memory is allocated and the test is fast.
"""
import json

import pytest
import torch

from glide.clip.model_creation import clip_config, create_clip_model
from glide.model_creation import create_model_and_diffusion
from glide.tokenizer.bpe import get_encoder

UNETS = ["base", "upsample", "base-inpaint", "upsample-inpaint"]


@pytest.fixture(scope="module")
def manifest(reference_dir):
    return json.loads((reference_dir / "manifest.json").read_text())


def layout(module):
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in module.state_dict().items()]


@pytest.mark.parametrize("name", UNETS)
def test_unet_layout(manifest, vocab_dir, name):
    entry = manifest["models"][name]
    with torch.device("meta"):
        model, _ = create_model_and_diffusion(**entry["options"], tokenizer=get_encoder(cache_dir=vocab_dir))
    assert type(model).__name__ == entry["class"]
    assert layout(model) == entry["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == entry["param_count"]
    assert model.input_blocks[0][0].in_channels == entry["unet_input_channels"]
    model.convert_to_fp16()
    half = [k for k, v in model.state_dict().items() if v.dtype == torch.float16]
    assert half == entry["keys_float16_after_convert_to_fp16"]


@pytest.mark.parametrize("name,attr", [("clip/image-enc", "image_encoder"), ("clip/text-enc", "text_encoder")])
def test_clip_layout(manifest, name, attr):
    entry = manifest["models"][name]
    assert clip_config() == entry["options"], "bundled config.yaml differs from the released model's"
    with torch.device("meta"):
        clip = create_clip_model(device="meta", tokenizer=object())
    encoder = getattr(clip, attr)
    assert type(encoder).__name__ == entry["class"]
    assert layout(encoder) == entry["state_dict"]
    assert sum(p.numel() for p in encoder.parameters()) == entry["param_count"]
