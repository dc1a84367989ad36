"""The diffusion UNet of GLIDE (ADM architecture of Dhariwal & Nichol, 2021).

Timestep embedding, residual blocks with scale-shift norm, residual up/down-sampling and
self-attention at chosen resolutions whose keys/values can be extended with encoder tokens (the
text). State-dict names follow the reference exactly so released checkpoints load unchanged.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .nn import convert_to_half, normalization, timestep_embedding, zero_module


class TimestepBlock(nn.Module):
    """A module whose forward takes the timestep embedding as a second argument."""

    def forward(self, x, emb):  # pragma: no cover - interface only
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential):
    """Sequential container routing the timestep embedding and the encoder tokens to the layers that take them."""

    def forward(self, x, emb, encoder_out=None):
        for layer in self:
            if isinstance(layer, TimestepBlock):
                x = layer(x, emb)
            elif isinstance(layer, AttentionBlock):
                x = layer(x, encoder_out)
            else:
                x = layer(x)
        return x


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling, optionally followed by a 3x3 convolution."""

    def __init__(self, channels: int, use_conv: bool, out_channels: Optional[int] = None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, self.out_channels, 3, padding=1)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """2x downsampling by a strided 3x3 convolution or average pooling."""

    def __init__(self, channels: int, use_conv: bool, out_channels: Optional[int] = None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        if use_conv:
            self.op = nn.Conv2d(channels, self.out_channels, 3, stride=2, padding=1)
        else:
            assert self.channels == self.out_channels
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x):
        return self.op(x)


class ResBlock(TimestepBlock):
    """Residual block conditioned on the timestep embedding, optionally resampling (up or down).

    With `use_scale_shift_norm`, the embedding gives a per-channel scale and shift applied after the
    second normalisation (FiLM), as in GLIDE; otherwise it is added to the hidden state.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: Optional[int] = None,
        use_conv: bool = False,
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm

        # nn.Identity keeps the reference's module indices (in_layers.2, out_layers.3) in the state dict.
        self.in_layers = nn.Sequential(
            normalization(channels, swish=1.0),
            nn.Identity(),
            nn.Conv2d(channels, self.out_channels, 3, padding=1),
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()

        self.emb_layers = nn.Sequential(
            nn.SiLU(),
            nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels),
        )
        self.out_layers = nn.Sequential(
            normalization(self.out_channels, swish=0.0 if use_scale_shift_norm else 1.0),
            nn.SiLU(inplace=True) if use_scale_shift_norm else nn.Identity(),
            nn.Dropout(p=dropout),
            zero_module(nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1)),
        )
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 3, padding=1)
        else:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 1)

    def forward(self, x, emb):
        if self.updown:
            # Resample between the activation and the convolution, on both branches.
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = torch.addcmul(shift, self.out_layers[0](h), 1 + scale)
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        # In place on the fresh output of the last convolution (its backward needs only its input).
        return h.add_(self.skip_connection(x))


class AttentionBlock(nn.Module):
    """Multi-head self-attention over spatial positions; encoder tokens (text) are prepended to keys/values.

    The reference computes this with two einsums and a float32 softmax; scaled_dot_product_attention
    gives the same result (same scale 1/sqrt(head channels)) with a fused, memory-light kernel.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        encoder_channels: Optional[int] = None,
    ):
        super().__init__()
        self.channels = channels
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"channels {channels} not divisible by num_head_channels {num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.norm = normalization(channels, swish=0.0)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        if encoder_channels is not None:
            self.encoder_kv = nn.Conv1d(encoder_channels, channels * 2, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x, encoder_out=None):
        b, c, *spatial = x.shape
        heads, ch = self.num_heads, c // self.num_heads
        qkv = self.qkv(self.norm(x).reshape(b, c, -1))
        # Channel layout per head is [q | k | v] (reference: reshape(b*heads, 3*ch, T).split(ch)).
        q, k, v = qkv.reshape(b, heads, 3 * ch, -1).transpose(2, 3).split(ch, dim=-1)
        if encoder_out is not None:
            ek, ev = self.encoder_kv(encoder_out).reshape(b, heads, 2 * ch, -1).transpose(2, 3).split(ch, dim=-1)
            k = torch.cat([ek, k], dim=2)
            v = torch.cat([ev, v], dim=2)
        h = F.scaled_dot_product_attention(q, k, v)  # [b, heads, T, ch]
        h = h.transpose(2, 3).reshape(b, c, -1)
        return x + self.proj_out(h).reshape(b, c, *spatial)


class UNetModel(nn.Module):
    """The ADM UNet with timestep embedding and attention.

    :param in_channels: channels of the input image (plus any conditioning channels).
    :param model_channels: base width; the timestep embedding is 4x this.
    :param out_channels: output channels (6 for epsilon + learned-range variance).
    :param num_res_blocks: residual blocks per resolution level.
    :param attention_resolutions: downsample rates (1, 2, 4, ...) at which attention is used.
    :param channel_mult: width multiplier per level.
    :param num_heads / num_head_channels: heads per attention layer, or a fixed width per head.
    :param encoder_channels: width of the encoder tokens attention layers can attend to.
    """

    def __init__(
        self,
        in_channels: int,
        model_channels: int,
        out_channels: int,
        num_res_blocks: int,
        attention_resolutions: Sequence[int],
        dropout: float = 0.0,
        channel_mult: Sequence[int] = (1, 2, 4, 8),
        conv_resample: bool = True,
        use_fp16: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        encoder_channels: Optional[int] = None,
    ):
        super().__init__()
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_res_blocks = num_res_blocks
        self.attention_resolutions = tuple(attention_resolutions)
        self.channel_mult = tuple(channel_mult)
        self.dtype = torch.float16 if use_fp16 else torch.float32

        time_embed_dim = model_channels * 4
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, time_embed_dim),
            nn.SiLU(),
            nn.Linear(time_embed_dim, time_embed_dim),
        )

        def res_block(ch_in, ch_out, **kw):
            return ResBlock(ch_in, time_embed_dim, dropout, out_channels=ch_out,
                            use_scale_shift_norm=use_scale_shift_norm, **kw)

        def attention(ch, heads):
            return AttentionBlock(ch, num_heads=heads, num_head_channels=num_head_channels,
                                  encoder_channels=encoder_channels)

        ch = input_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        input_block_chans = [ch]
        ds = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [res_block(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in self.attention_resolutions:
                    layers.append(attention(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                input_block_chans.append(ch)
            if level != len(channel_mult) - 1:
                down = res_block(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                input_block_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(
            res_block(ch, ch), attention(ch, num_heads), res_block(ch, ch)
        )

        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [res_block(ch + input_block_chans.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in self.attention_resolutions:
                    layers.append(attention(ch, num_heads_upsample))
                if level and i == num_res_blocks:
                    layers.append(res_block(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample, ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            normalization(ch, swish=1.0),
            nn.Identity(),
            zero_module(nn.Conv2d(input_ch, out_channels, 3, padding=1)),
        )

    def convert_to_half(self, dtype: torch.dtype = torch.float16):
        """Cast the torso's convolutions to `dtype`, the reference's mixed-precision layout: the
        timestep embedding, norms and output layer stay float32, so the samplers' arithmetic does too.
        The weights are converted once, instead of autocast casting them on every call."""
        for part in (self.input_blocks, self.middle_block, self.output_blocks):
            convert_to_half(part, dtype)
        self.dtype = dtype

    def convert_to_fp16(self):
        """The reference's name for `convert_to_half(torch.float16)`."""
        self.convert_to_half(torch.float16)

    def run_unet(self, x, emb, encoder_out=None, deep_cache=None):
        """The UNet body: input blocks, middle block, output blocks with skip connections, output head.

        `deep_cache`, a `glide.deep_cache.DeepCacheStep`, makes it a DeepCache full or shallow forward."""
        if deep_cache is not None:
            return self._head(deep_cache.run(self, x, emb, encoder_out), x)
        hs = []
        h = x.to(self.dtype)
        for module in self.input_blocks:
            h = module(h, emb, encoder_out)
            hs.append(h)
        h = self.middle_block(h, emb, encoder_out)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb, encoder_out)
        return self._head(h, x)

    def _head(self, h, x):
        """The output layer on the body's last feature h, in x's dtype."""
        # The output layer in x's precision even under autocast, as the reference's fp16 layout keeps it:
        # the samplers' arithmetic on epsilon (guidance, x0) would otherwise run in half precision.
        device_type = x.device.type
        if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
            with torch.autocast(device_type, enabled=False):
                return self.out(h.to(x.dtype))
        return self.out(h.to(x.dtype))

    def forward(self, x, timesteps, deep_cache=None):
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        return self.run_unet(x, emb, deep_cache=deep_cache)
