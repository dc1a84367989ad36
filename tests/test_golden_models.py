"""The models reproduce the reference implementation's outputs on its random-weight goldens."""
import json

import pytest
import torch
from safetensors.torch import load_file

from glide.clip.encoders import ImageEncoder, TextEncoder
from glide.clip.model_creation import create_clip_model
from glide.model_creation import create_model_and_diffusion
from glide.tokenizer.bpe import get_encoder
from glide.tokenizer.simple_tokenizer import SimpleTokenizer

UNET_GOLDENS = ["base", "upsample", "base-inpaint", "upsample-inpaint"]


def rel_err(actual, expected):
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def load_golden(reference_dir, name):
    meta = json.loads((reference_dir / "golden" / f"{name}.json").read_text())
    tensors = load_file(reference_dir / "golden" / f"{name}.safetensors")
    params = {k.removeprefix("param/"): v for k, v in tensors.items() if k.startswith("param/")}
    return meta, tensors, params


def build_unet(meta, params, vocab_dir):
    model, _ = create_model_and_diffusion(**meta["options"], tokenizer=get_encoder(cache_dir=vocab_dir))
    model.load_state_dict(params, strict=True)
    return model.eval()


@pytest.mark.parametrize("name", UNET_GOLDENS)
def test_unet_golden(reference_dir, vocab_dir, name):
    meta, f, params = load_golden(reference_dir, name)
    model = build_unet(meta, params, vocab_dir)
    assert list(model.state_dict()) == [k for k, _, _ in meta["state_dict"]], "state-dict order differs"
    kwargs = {k.removeprefix("input/"): v for k, v in f.items() if k.startswith("input/")}
    x, t = kwargs.pop("x"), kwargs.pop("timesteps")
    with torch.no_grad():
        out = model(x, t, **kwargs)
        text = model.encode_text(kwargs["tokens"], kwargs["mask"])
    assert rel_err(text["xf_out"], f["intermediate/xf_out"]) < 1e-4
    assert rel_err(text["xf_proj"], f["intermediate/xf_proj"]) < 1e-4
    assert out.shape == f["output/out"].shape
    assert rel_err(out, f["output/out"]) < 1e-4


# Half precision's stated tolerance against the float32 golden (largest error over largest value): bf16
# keeps 8 bits of mantissa, fp16 11; measured up to 3.3e-2 and 3.2e-3 on these four models.
HALF_TOLERANCE = {torch.bfloat16: 5e-2, torch.float16: 5e-3}


@pytest.mark.parametrize("dtype", list(HALF_TOLERANCE), ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", UNET_GOLDENS)
def test_unet_golden_in_half_precision(reference_dir, vocab_dir, name, dtype):
    """The pipeline's half-precision layout (weights converted once, the reference's fp16 set) on the goldens."""
    meta, f, params = load_golden(reference_dir, name)
    model = build_unet(meta, params, vocab_dir)
    model.convert_to_half(dtype)
    kwargs = {k.removeprefix("input/"): v for k, v in f.items() if k.startswith("input/")}
    x, t = kwargs.pop("x"), kwargs.pop("timesteps")
    with torch.no_grad():
        out = model(x, t, **kwargs)
    assert out.dtype == torch.float32, "the output layer runs in float32, as in the reference's fp16 layout"
    assert rel_err(out, f["output/out"]) < HALF_TOLERANCE[dtype]


def test_text_embedding_cache(reference_dir, vocab_dir):
    meta, f, params = load_golden(reference_dir, "base")
    model = build_unet(meta, params, vocab_dir)
    model.cache_text_emb = True
    args = (f["input/x"], f["input/timesteps"])
    kw = dict(tokens=f["input/tokens"], mask=f["input/mask"])
    with torch.no_grad():
        first, second = model(*args, **kw), model(*args, **kw)
        with pytest.raises(ValueError, match="del_cache"):
            model(*args, tokens=f["input/tokens"].flip(0), mask=f["input/mask"])
        model.del_cache()
        assert model.cache is None
    assert torch.equal(first, second)
    assert rel_err(first, f["output/out"]) < 1e-4


def _clip_encoders(reference_dir, device="cpu"):
    meta = json.loads((reference_dir / "golden" / "clip-image-enc.json").read_text())
    clip = create_clip_model(config=meta["config"], device=device, tokenizer=SimpleTokenizer(
        cache_dir=reference_dir / "vocab"))
    for name, enc in (("clip-image-enc", clip.image_encoder), ("clip-text-enc", clip.text_encoder)):
        _, _, params = load_golden(reference_dir, name)
        enc.load_state_dict(params, strict=True)
    return clip


def test_clip_image_encoder_golden(reference_dir):
    clip = _clip_encoders(reference_dir)
    _, f, _ = load_golden(reference_dir, "clip-image-enc")
    enc: ImageEncoder = clip.image_encoder
    with torch.no_grad():
        feats = enc(f["input/image"], f["input/timesteps"])
        probe = enc(f["input/image"], f["input/timesteps"], return_probe_features=True)
        emb = enc.blocks["input"](f["input/image"], t=f["input/timesteps"])
    assert rel_err(emb, f["intermediate/input_embedding"]) < 1e-4
    assert rel_err(probe, f["intermediate/probe_features"]) < 1e-4
    assert rel_err(feats, f["output/features"]) < 1e-4


def test_clip_text_encoder_golden(reference_dir):
    clip = _clip_encoders(reference_dir)
    _, f, _ = load_golden(reference_dir, "clip-text-enc")
    enc: TextEncoder = clip.text_encoder
    with torch.no_grad():
        feats = enc(f["input/tokens"], f["input/lens"])
        probe = enc(f["input/tokens"], f["input/lens"], return_probe_features=True)
    assert rel_err(probe, f["intermediate/probe_features"]) < 1e-4
    assert rel_err(feats, f["output/features"]) < 1e-4


def test_clip_cond_fn_golden(reference_dir):
    clip = _clip_encoders(reference_dir)
    meta = json.loads((reference_dir / "golden" / "clip-cond-fn.json").read_text())
    f = load_file(reference_dir / "golden" / "clip-cond-fn.safetensors")
    tokens, lens = clip.encode_prompts(meta["prompts"])
    assert torch.equal(tokens, f["intermediate/tokens"]) and torch.equal(lens, f["intermediate/lens"])
    grad = clip.cond_fn(meta["prompts"], meta["grad_scale"])(f["input/x"], f["input/t"])
    assert rel_err(grad, f["output/grad"]) < 1e-4
