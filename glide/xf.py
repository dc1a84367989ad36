"""The text transformer of GLIDE (a CLIP-style pre-norm transformer, no causal mask)."""
import torch.nn as nn
import torch.nn.functional as F

from .nn import LayerNorm


class MultiheadAttention(nn.Module):
    """Self-attention with one fused qkv projection; per head the channels are [q | k | v]."""

    def __init__(self, n_ctx: int, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.c_qkv = nn.Linear(width, width * 3)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x):
        bs, n_ctx, _ = x.shape
        qkv = self.c_qkv(x).view(bs, n_ctx, self.heads, -1).transpose(1, 2)  # [bs, heads, T, 3*ch]
        q, k, v = qkv.split(qkv.shape[-1] // 3, dim=-1)
        h = F.scaled_dot_product_attention(q, k, v)
        return self.c_proj(h.transpose(1, 2).reshape(bs, n_ctx, -1))


class MLP(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.c_fc = nn.Linear(width, width * 4)
        self.c_proj = nn.Linear(width * 4, width)
        self.gelu = nn.GELU()

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, n_ctx: int, width: int, heads: int):
        super().__init__()
        self.attn = MultiheadAttention(n_ctx, width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = MLP(width)
        self.ln_2 = LayerNorm(width)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, n_ctx: int, width: int, layers: int, heads: int):
        super().__init__()
        self.n_ctx, self.width, self.layers = n_ctx, width, layers
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(n_ctx, width, heads) for _ in range(layers)])

    def forward(self, x):
        for block in self.resblocks:
            x = block(x)
        return x
