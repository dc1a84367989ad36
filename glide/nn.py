"""Small building blocks shared by the UNet, the text transformer and the noised CLIP."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the activation dtype, with an optional fused swish.

    Normalising fp16 activations in fp16 loses too much precision; the reference (and so the released
    checkpoints) always normalise in float32 and cast back.
    """

    def __init__(self, num_groups: int, num_channels: int, swish: float, eps: float = 1e-5):
        super().__init__(num_groups=num_groups, num_channels=num_channels, eps=eps)
        self.swish = swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16):
            # The CPU kernel takes half-precision activations with float32 gains and computes in float32
            # inside: the same as the cast below to within one rounding of the output, without a float32
            # copy of the activation (~15x faster at the upsampler's 256 px, 192 channels).
            y = F.group_norm(x, self.num_groups, self.weight.float(), self.bias.float(), self.eps)
        else:
            y = F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps)
            y = y.to(x.dtype)
        if self.swish == 1.0:
            # In place: y is a fresh tensor, and group_norm's backward needs its input, not its output.
            return F.silu(y, inplace=True)
        if self.swish:
            return y * torch.sigmoid(y * float(self.swish))
        return y


def normalization(channels: int, swish: float = 0.0) -> GroupNorm32:
    """The UNet's normalisation layer: 32 groups, float32 statistics."""
    return GroupNorm32(num_groups=32, num_channels=channels, swish=swish)


class LayerNorm(nn.LayerNorm):
    """LayerNorm that accepts half-precision inputs but keeps float32 gains and statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(
            x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps
        ).to(x.dtype)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a module's parameters (output layers start as the identity residual)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal embedding [N, dim] of (possibly fractional) timesteps [N]: cos half, then sin half."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


def convert_to_half(module: nn.Module, dtype: torch.dtype = torch.float16,
                    types: tuple = (nn.Conv1d, nn.Conv2d, nn.Conv3d)) -> None:
    """Cast the weights of every submodule of the given `types` to `dtype` (norms stay float32).

    The reference converts only convolutions in the UNet torso and only linear layers in the text
    transformer, to float16; callers pass the types so both keep that exact set, in float16 or bfloat16.
    """
    for sub in module.modules():
        if isinstance(sub, types):
            sub.weight.data = sub.weight.data.to(dtype)
            if sub.bias is not None:
                sub.bias.data = sub.bias.data.to(dtype)
