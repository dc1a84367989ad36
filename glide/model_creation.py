"""Build GLIDE models and diffusions from option dicts, with the reference's names and defaults.

`create_model_and_diffusion(**model_and_diffusion_defaults())` builds the released base model; the
upsampler uses `model_and_diffusion_defaults_upsampler()`; `inpaint=True` gives the inpainting
variants. Options beyond the reference's (`model_mean_type`, `tokenizer`) have backward-compatible
defaults. `load_model_and_diffusion(state_dict, **options)` is the same model with released weights,
built without initialising weights only to overwrite them (`build_with_weights`).
"""
from itertools import chain
from typing import Callable, Dict

import torch

from .gaussian_diffusion import GaussianDiffusion, SpacedDiffusion, get_named_beta_schedule
from .respace import space_timesteps
from .text2im_model import InpaintText2ImUNet, SuperResInpaintText2ImUnet, SuperResText2ImUNet, Text2ImUNet


def model_and_diffusion_defaults() -> dict:
    """Options of the released 64x64 base model (use_fp16=True as in the reference; set False on CPU)."""
    return dict(
        image_size=64,
        num_channels=192,
        num_res_blocks=3,
        channel_mult="",
        num_heads=1,
        num_head_channels=64,
        num_heads_upsample=-1,
        attention_resolutions="32,16,8",
        dropout=0.1,
        text_ctx=128,
        xf_width=512,
        xf_layers=16,
        xf_heads=8,
        xf_final_ln=True,
        xf_padding=True,
        diffusion_steps=1000,
        noise_schedule="squaredcos_cap_v2",
        timestep_respacing="",
        use_scale_shift_norm=True,
        resblock_updown=True,
        use_fp16=True,
        cache_text_emb=False,
        inpaint=False,
        super_res=False,
    )


def model_and_diffusion_defaults_upsampler() -> dict:
    """Options of the released 64->256 upsampler."""
    result = model_and_diffusion_defaults()
    result.update(dict(image_size=256, num_res_blocks=2, noise_schedule="linear", super_res=True))
    return result


def create_model_and_diffusion(*, diffusion_steps, noise_schedule, timestep_respacing,
                               model_mean_type: str = "epsilon", **model_options):
    """(model, diffusion) from an options dict as returned by the `*_defaults()` functions."""
    model = create_model(**model_options)
    diffusion = create_gaussian_diffusion(steps=diffusion_steps, noise_schedule=noise_schedule,
                                          timestep_respacing=timestep_respacing,
                                          model_mean_type=model_mean_type)
    return model, diffusion


def load_model_and_diffusion(state_dict: Dict[str, torch.Tensor], *, diffusion_steps, noise_schedule,
                             timestep_respacing, model_mean_type: str = "epsilon", **model_options):
    """What `create_model_and_diffusion(**options)` then `model.load_state_dict(state_dict)` make, in a
    fraction of the time: the model takes `state_dict`'s tensors as its weights (`build_with_weights`)."""
    model = build_with_weights(lambda: create_model(**model_options), state_dict)
    diffusion = create_gaussian_diffusion(steps=diffusion_steps, noise_schedule=noise_schedule,
                                          timestep_respacing=timestep_respacing, model_mean_type=model_mean_type)
    return model, diffusion


def build_with_weights(build: Callable[[], torch.nn.Module], state_dict: Dict[str, torch.Tensor]) -> torch.nn.Module:
    """`build()` with `state_dict`'s tensors as its weights: equal to building it and loading the state dict.

    The module is built on the meta device, so no weight is initialised only to be overwritten (GLIDE's
    base model: 6.1 s of random initialisation on 2 EPYC cores), and the tensors are assigned, not copied
    into place: those of a memory-mapped checkpoint stay mapped until used or converted, so a half-precision
    pipeline converts straight from the file, with no float32 copy in between. A tensor whose dtype differs
    from the module's is cast to the module's, as `load_state_dict` would copy it. Keys must match exactly
    (strict). Modules with non-persistent buffers cannot be built this way (the state dict lacks them).
    """
    with torch.device("meta"):
        model = build()
    expected = model.state_dict()
    state = {name: tensor.to(expected[name].dtype) if name in expected and tensor.dtype != expected[name].dtype
             else tensor for name, tensor in state_dict.items()}
    model.load_state_dict(state, assign=True)
    unset = [name for name, tensor in chain(model.named_parameters(), model.named_buffers()) if tensor.is_meta]
    if unset:
        raise ValueError(f"the state dict does not set {unset[:5]}{' ...' if len(unset) > 5 else ''}: "
                         "build this module normally and load_state_dict into it")
    return model


_DEFAULT_CHANNEL_MULT = {256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}


def create_model(image_size, num_channels, num_res_blocks, channel_mult, attention_resolutions, num_heads,
                 num_head_channels, num_heads_upsample, use_scale_shift_norm, dropout, text_ctx, xf_width,
                 xf_layers, xf_heads, xf_final_ln, xf_padding, resblock_updown, use_fp16, cache_text_emb,
                 inpaint, super_res, tokenizer=None):
    """The UNet class chosen by `inpaint`/`super_res`, with the reference's option semantics.

    `channel_mult` "" picks the reference's per-size default; `attention_resolutions` lists image
    resolutions (e.g. "32,16,8"), converted to downsample rates. `tokenizer` defaults to GLIDE's BPE.
    """
    if channel_mult == "":
        if image_size not in _DEFAULT_CHANNEL_MULT:
            raise ValueError(f"no default channel_mult for image_size {image_size}; pass channel_mult")
        channel_mult = _DEFAULT_CHANNEL_MULT[image_size]
    elif isinstance(channel_mult, str):
        channel_mult = tuple(int(m) for m in channel_mult.split(","))
    attention_ds = tuple(image_size // int(res) for res in str(attention_resolutions).split(","))
    if tokenizer is None:
        from .tokenizer.bpe import get_encoder

        tokenizer = get_encoder()

    if inpaint and super_res:
        model_cls = SuperResInpaintText2ImUnet
    elif inpaint:
        model_cls = InpaintText2ImUNet
    elif super_res:
        model_cls = SuperResText2ImUNet
    else:
        model_cls = Text2ImUNet
    return model_cls(
        text_ctx=text_ctx, xf_width=xf_width, xf_layers=xf_layers, xf_heads=xf_heads, xf_final_ln=xf_final_ln,
        tokenizer=tokenizer, xf_padding=xf_padding, in_channels=3, model_channels=num_channels,
        out_channels=6, num_res_blocks=num_res_blocks, attention_resolutions=attention_ds, dropout=dropout,
        channel_mult=channel_mult, use_fp16=use_fp16, num_heads=num_heads, num_head_channels=num_head_channels,
        num_heads_upsample=num_heads_upsample, use_scale_shift_norm=use_scale_shift_norm,
        resblock_updown=resblock_updown, cache_text_emb=cache_text_emb,
    )


def create_gaussian_diffusion(steps: int, noise_schedule: str, timestep_respacing="",
                              model_mean_type: str = "epsilon") -> GaussianDiffusion:
    """A (respaced) diffusion: `timestep_respacing` "" keeps all `steps`; else see `space_timesteps`."""
    betas = get_named_beta_schedule(noise_schedule, steps)
    if not timestep_respacing:
        timestep_respacing = [steps]
    return SpacedDiffusion(space_timesteps(steps, timestep_respacing), betas=betas,
                           model_mean_type=model_mean_type)
