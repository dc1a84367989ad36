"""The noised CLIP's encoders: a ViT image encoder conditioned on the diffusion timestep, and a
causal text transformer. Parameter names (`w`, `b`, `g`, `blocks.block_<i>.f_attn...`) follow the
reference so the released `clip/image-enc` and `clip/text-enc` checkpoints load unchanged.

The reference pads contexts to multiples of 32 and masks the padding with an additive bias; that is
exactly full attention (image) and causal attention (text) over the real tokens, which is what
scaled_dot_product_attention computes here.
"""
import math
from collections import OrderedDict
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Per-channel pixel statistics of the original CLIP (images arrive in [0, 255]).
IMAGE_CHANNEL_MEANS = (122.77093945, 116.74601272, 104.09373519)
IMAGE_CHANNEL_STDS = (68.50053285, 66.63215831, 70.32316309)


class LayerNorm(nn.Module):
    """LayerNorm with parameters `g`/`b`, always computed and returned in float32."""

    def __init__(self, n_state: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(n_state))
        self.b = nn.Parameter(torch.zeros(n_state))

    def forward(self, x):
        return F.layer_norm(x.float(), self.g.shape, self.g, self.b, self.eps)


class Affine(nn.Module):
    """A linear layer with parameters `w` [out, in] and optional `b`, cast to the input's dtype."""

    def __init__(self, n_in: int, n_out: int, use_bias: bool = True, std: Optional[float] = None):
        super().__init__()
        std = std if std is not None else math.sqrt(2 / (n_in + n_out))
        self.w = nn.Parameter(torch.randn(n_out, n_in) * std)
        self.b = nn.Parameter(torch.zeros(n_out)) if use_bias else None

    def forward(self, x):
        b = None if self.b is None else self.b.to(x.dtype)
        return F.linear(x, self.w.to(x.dtype), b)


class TextEmbedding(nn.Module):
    def __init__(self, n_vocab: int, n_context: int, n_state: int):
        super().__init__()
        self.w_voc = nn.Parameter(torch.randn(n_vocab, n_state) * 0.02)
        self.w_pos = nn.Parameter(torch.randn(n_context, n_state) * 0.01)

    def forward(self, tokens):
        if tokens.ndim != 2:
            raise ValueError(f"tokens should be [N, n_context], got shape {tuple(tokens.shape)}")
        return F.embedding(tokens, self.w_voc) + self.w_pos[None]


class ImageEmbedding(nn.Module):
    """Patchify, prepend a timestep token (w_t[t]), add positions, LayerNorm."""

    def __init__(self, image_size: int, patch_size: int, n_state: int, n_timestep: int = 0):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.image_size, self.patch_size, self.n_state, self.n_timestep = image_size, patch_size, n_state, n_timestep
        n_patch = image_size // patch_size
        if n_timestep == 0:
            self.pred_state = nn.Parameter(torch.randn(n_state) / np.sqrt(n_state))
        else:
            self.w_t = nn.Parameter(torch.randn(n_timestep, n_state) / np.sqrt(n_state))
        self.patch_proj = nn.Parameter(
            torch.randn(n_state, 3, patch_size, patch_size) * np.sqrt(2 / (n_state * patch_size ** 2))
        )
        self.w_pos = nn.Parameter(torch.randn(1 + n_patch ** 2, n_state) / np.sqrt(n_state))
        # Not parameters: the reference keeps them out of the state dict.
        self.register_buffer("channel_means", torch.tensor(IMAGE_CHANNEL_MEANS)[None, :, None, None], persistent=False)
        self.register_buffer("channel_stds", torch.tensor(IMAGE_CHANNEL_STDS)[None, :, None, None], persistent=False)
        self.ln = LayerNorm(n_state)

    def forward(self, x, t=None):
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2:] != (self.image_size, self.image_size):
            raise ValueError(f"image should be [N, 3, {self.image_size}, {self.image_size}], got {tuple(x.shape)}")
        if (self.n_timestep == 0) != (t is None):
            raise ValueError("pass timesteps exactly when the encoder is timestep-conditioned (noised CLIP)")
        x = (x - self.channel_means) / self.channel_stds
        x = F.conv2d(x, self.patch_proj.to(x.dtype), stride=self.patch_size)
        x = x.flatten(2).permute(0, 2, 1)
        if self.n_timestep == 0:
            sot = self.pred_state[None, None].expand(x.shape[0], -1, -1)
        else:
            if t.shape != (x.shape[0],):
                raise ValueError(f"timesteps should be [{x.shape[0]}], got {tuple(t.shape)}")
            sot = F.embedding(t, self.w_t)[:, None]
        x = torch.cat((sot.to(x.dtype), x), dim=1) + self.w_pos[None]
        return self.ln(x)


class AttentionResblock(nn.Module):
    def __init__(self, n_state: int, n_heads: int, n_resblocks: int, causal: bool):
        super().__init__()
        self.n_heads, self.causal = n_heads, causal
        std = 1 / math.sqrt(n_state)
        self.ln = LayerNorm(n_state)
        self.f_q = Affine(n_state, n_state, use_bias=True, std=std)
        self.f_k = Affine(n_state, n_state, use_bias=False, std=std)
        self.f_v = Affine(n_state, n_state, use_bias=True, std=std)
        self.f_c = Affine(n_state, n_state, use_bias=True, std=1 / np.sqrt(n_state * n_resblocks ** 2))

    def forward(self, m):
        r = self.ln(m)
        b, n, c = r.shape

        def heads(z):
            return z.view(b, n, self.n_heads, -1).transpose(1, 2)

        r = F.scaled_dot_product_attention(heads(self.f_q(r)), heads(self.f_k(r)), heads(self.f_v(r)),
                                           is_causal=self.causal)
        return m + self.f_c(r.transpose(1, 2).reshape(b, n, c))


class FullyConnectedResblock(nn.Module):
    def __init__(self, n_state: int, n_resblocks: int):
        super().__init__()
        self.ln = LayerNorm(n_state)
        self.f_1 = Affine(n_state, 4 * n_state, std=np.sqrt(2 / (4 * n_state)))
        self.f_2 = Affine(4 * n_state, n_state, std=1 / np.sqrt(n_state * n_resblocks ** 2))

    def forward(self, m):
        return m + self.f_2(F.gelu(self.f_1(self.ln(m))))


class TransformerBlock(nn.Module):
    def __init__(self, n_state: int, n_heads: int, n_resblocks: int, causal: bool):
        super().__init__()
        self.f_attn = AttentionResblock(n_state, n_heads, n_resblocks, causal)
        self.f_mlp = FullyConnectedResblock(n_state, n_resblocks)

    def forward(self, x):
        return self.f_mlp(self.f_attn(x))


class TextFeatureExtractor(nn.Module):
    """Features of the last real token (index len - 1): LayerNorm then a bias-free projection."""

    def __init__(self, n_state: int, n_embd: int):
        super().__init__()
        self.ln = LayerNorm(n_state)
        self.f = Affine(n_state, n_embd, use_bias=False)

    def forward(self, text, text_len, return_probe_features=False):
        if text.shape[0] != text_len.shape[0] or text_len.ndim != 1:
            raise ValueError("text and text_len have inconsistent batch dimensions")
        x = text[torch.arange(text.shape[0], device=text.device), text_len - 1]
        return x if return_probe_features else self.f(self.ln(x))


class ImageFeatureExtractor(nn.Module):
    """Features of the timestep token: LayerNorm then a bias-free projection."""

    def __init__(self, n_state: int, n_embd: int):
        super().__init__()
        self.ln = LayerNorm(n_state)
        self.f = Affine(n_state, n_embd, use_bias=False)

    def forward(self, x, return_probe_features=False):
        return x[:, 0] if return_probe_features else self.f(self.ln(x[:, 0]))


def _blocks(input_block, n_state, n_heads, n_xf_blocks, causal, output_block) -> nn.ModuleDict:
    blocks = [("input", input_block)]
    blocks += [(f"block_{i}", TransformerBlock(n_state, n_heads, 2 * n_xf_blocks, causal)) for i in range(n_xf_blocks)]
    blocks.append(("output", output_block))
    return nn.ModuleDict(OrderedDict(blocks))


class TextEncoder(nn.Module):
    def __init__(self, n_bpe_vocab: int, max_text_len: int, n_embd: int, n_head: int, n_xf_blocks: int,
                 n_head_state: int = 64, device=None):
        super().__init__()
        self.max_text_len, self.n_embd, self.n_xf_blocks = max_text_len, n_embd, n_xf_blocks
        self.n_state = n_head * n_head_state
        self.blocks = _blocks(TextEmbedding(n_bpe_vocab, max_text_len, self.n_state), self.n_state, n_head,
                              n_xf_blocks, True, TextFeatureExtractor(self.n_state, n_embd))
        if device is not None:
            self.to(device)

    def forward(self, text, text_len, return_probe_features=False):
        """Tokens [N, max_text_len] and lengths [N] (start and end tokens included) -> features [N, n_embd]."""
        h = self.blocks["input"](text)
        for i in range(self.n_xf_blocks):
            h = self.blocks[f"block_{i}"](h)
        return self.blocks["output"](h, text_len, return_probe_features=return_probe_features)


class ImageEncoder(nn.Module):
    def __init__(self, image_size: int, patch_size: int, n_embd: int, n_head: int, n_xf_blocks: int,
                 n_head_state: int = 64, n_timestep: int = 0, device=None):
        super().__init__()
        self.image_size, self.n_embd, self.n_xf_blocks = image_size, n_embd, n_xf_blocks
        self.n_state = n_head * n_head_state
        self.blocks = _blocks(ImageEmbedding(image_size, patch_size, self.n_state, n_timestep), self.n_state,
                              n_head, n_xf_blocks, False, ImageFeatureExtractor(self.n_state, n_embd))
        if device is not None:
            self.to(device)

    def forward(self, image, timesteps=None, return_probe_features=False):
        """Images in pixel space [0, 255], [N, 3, S, S], and timesteps [N] -> features [N, n_embd]."""
        h = self.blocks["input"](image, t=timesteps)
        for i in range(self.n_xf_blocks):
            h = self.blocks[f"block_{i}"](h)
        return self.blocks["output"](h, return_probe_features=return_probe_features)
