"""GLIDE's text-conditional UNets: base, super-resolution, inpainting and both.

The caption is encoded once by a transformer; its last token, projected, is added to the timestep
embedding, and the whole token sequence, projected per attention layer, is prepended to the image
keys/values. `encode_text` exposes that encoding so a sampler computes it once per run, not per step.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .nn import LayerNorm, convert_to_half, timestep_embedding
from .unet import UNetModel
from .xf import Transformer


def _small_random(meta: bool, *shape: int) -> torch.Tensor:
    """N(0, 0.01^2) values of `shape`, or an empty tensor on the meta device (see Text2ImUNet.__init__)."""
    return torch.empty(*shape) if meta else torch.randn(*shape) * 0.01


class Text2ImUNet(UNetModel):
    """A UNet conditioned on text through a transformer.

    :param text_ctx: number of text tokens.
    :param xf_width / xf_layers / xf_heads: the transformer's size (xf_width 0 disables text).
    :param xf_final_ln: LayerNorm after the transformer.
    :param tokenizer: the text tokenizer (gives the vocabulary size; kept as `model.tokenizer`).
    :param xf_padding: replace embeddings of padding positions (mask False) with a learned embedding.
    :param cache_text_emb: reuse the last text encoding while the tokens are unchanged (see `del_cache`).
    """

    def __init__(
        self,
        text_ctx: int,
        xf_width: int,
        xf_layers: int,
        xf_heads: int,
        xf_final_ln: bool,
        tokenizer,
        *args,
        cache_text_emb: bool = False,
        xf_padding: bool = False,
        **kwargs,
    ):
        self.text_ctx = text_ctx
        self.xf_width = xf_width
        self.xf_padding = xf_padding
        self.tokenizer = tokenizer
        super().__init__(*args, **kwargs, encoder_channels=xf_width or None)
        if xf_width:
            self.transformer = Transformer(text_ctx, xf_width, xf_layers, xf_heads)
            self.final_ln = LayerNorm(xf_width) if xf_final_ln else None
            # The reference leaves these uninitialised (torch.empty: checkpoints overwrite them); a
            # small random start keeps freshly built models finite and trainable. A model built on the meta
            # device takes a checkpoint's tensors (glide.model_creation.build_with_weights): nothing to draw
            # there, and a draw or product on the meta device imports torch._dynamo (1.3-2.5 s of each load).
            meta = torch.get_default_device().type == "meta"
            if meta:
                self.token_embedding = nn.Embedding(tokenizer.n_vocab, xf_width,
                                                    _weight=torch.empty(tokenizer.n_vocab, xf_width))
            else:
                self.token_embedding = nn.Embedding(tokenizer.n_vocab, xf_width)
                nn.init.normal_(self.token_embedding.weight, std=0.02)
            self.positional_embedding = nn.Parameter(_small_random(meta, text_ctx, xf_width))
            self.transformer_proj = nn.Linear(xf_width, self.model_channels * 4)
            if xf_padding:
                self.padding_embedding = nn.Parameter(_small_random(meta, text_ctx, xf_width))
        self.cache_text_emb = cache_text_emb
        self.cache = None

    def convert_to_half(self, dtype: torch.dtype = torch.float16):
        """The reference's fp16 layout, in `dtype`: UNet convolutions, transformer linears, token embedding.

        Positional and padding embeddings stay float32 (the reference's `Parameter.to` is not in place).
        """
        super().convert_to_half(dtype)
        if self.xf_width:
            convert_to_half(self.transformer, dtype, (nn.Linear,))
            self.transformer_proj.to(dtype)
            self.token_embedding.to(dtype)

    def encode_text(self, tokens: torch.Tensor, mask: Optional[torch.Tensor]) -> dict:
        """Encode tokens [N, text_ctx] -> {'xf_proj': [N, 4*model_channels], 'xf_out': [N, xf_width, text_ctx]}."""
        if tokens is None:
            raise ValueError("this model is text-conditional: pass tokens (and mask)")
        xf_in = self.token_embedding(tokens.long()) + self.positional_embedding[None]
        if self.xf_padding:
            if mask is None:
                raise ValueError("this model uses padding embeddings: pass the token mask")
            xf_in = torch.where(mask[..., None], xf_in, self.padding_embedding[None].to(xf_in.dtype))
        xf_out = self.transformer(xf_in.to(self.dtype))
        if self.final_ln is not None:
            xf_out = self.final_ln(xf_out)
        xf_proj = self.transformer_proj(xf_out[:, -1])
        return {"xf_proj": xf_proj, "xf_out": xf_out.permute(0, 2, 1)}

    def get_text_emb(self, tokens, mask):
        """The text encoding, from the cache when `cache_text_emb` is on and the tokens are unchanged."""
        if self.cache_text_emb and self.cache is not None:
            if not torch.equal(tokens, self.cache["tokens"]):
                raise ValueError("tokens differ from the cached text embedding; call del_cache() first")
            return self.cache
        outputs = self.encode_text(tokens, mask)
        if self.cache_text_emb:
            self.cache = {"tokens": tokens, **{k: v.detach() for k, v in outputs.items()}}
        return outputs

    def del_cache(self):
        self.cache = None

    def forward(self, x, timesteps, tokens=None, mask=None, text_emb: Optional[dict] = None, deep_cache=None):
        """Predict [N, 2*C, H, W] (epsilon and variance values) for x [N, C, H, W] at `timesteps` [N].

        `text_emb`, a result of `encode_text`, skips the transformer (a sampler encodes once per run);
        `deep_cache`, a `glide.deep_cache.DeepCacheStep`, makes this a DeepCache full or shallow forward.
        """
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        xf_out = None
        if self.xf_width:
            if text_emb is None:
                text_emb = self.get_text_emb(tokens, mask)
            emb = emb + text_emb["xf_proj"].to(emb)
            xf_out = text_emb["xf_out"]
        return self.run_unet(x, emb, xf_out, deep_cache)


def _upsampled(low_res: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if low_res is None:
        raise ValueError("an upsampling model needs low_res, the low-resolution image")
    return F.interpolate(low_res, like.shape[2:], mode="bilinear", align_corners=False)


def _inpaint_channels(x, inpaint_image, inpaint_mask):
    """Masked known image and mask (1 = keep); zeros when absent, as the reference does."""
    if inpaint_image is None:
        inpaint_image = torch.zeros_like(x)
    if inpaint_mask is None:
        inpaint_mask = torch.zeros_like(x[:, :1])
    return [inpaint_image * inpaint_mask, inpaint_mask]


class SuperResText2ImUNet(Text2ImUNet):
    """Text-conditional super-resolution: the bilinearly upsampled low-res image is concatenated to x."""

    def __init__(self, *args, in_channels: int, **kwargs):
        super().__init__(*args, in_channels=in_channels * 2, **kwargs)

    def forward(self, x, timesteps, low_res=None, **kwargs):
        return super().forward(torch.cat([x, _upsampled(low_res, x)], dim=1), timesteps, **kwargs)


class InpaintText2ImUNet(Text2ImUNet):
    """Text-conditional inpainting: masked image (3) and mask (1) channels are concatenated to x."""

    def __init__(self, *args, in_channels: int, **kwargs):
        super().__init__(*args, in_channels=in_channels * 2 + 1, **kwargs)

    def forward(self, x, timesteps, inpaint_image=None, inpaint_mask=None, **kwargs):
        x_in = torch.cat([x, *_inpaint_channels(x, inpaint_image, inpaint_mask)], dim=1)
        return super().forward(x_in, timesteps, **kwargs)


class SuperResInpaintText2ImUnet(Text2ImUNet):
    """Super-resolution and inpainting together (channel order: x, masked image, mask, upsampled)."""

    def __init__(self, *args, in_channels: int, **kwargs):
        super().__init__(*args, in_channels=in_channels * 3 + 1, **kwargs)

    def forward(self, x, timesteps, inpaint_image=None, inpaint_mask=None, low_res=None, **kwargs):
        x_in = torch.cat([x, *_inpaint_channels(x, inpaint_image, inpaint_mask), _upsampled(low_res, x)], dim=1)
        return super().forward(x_in, timesteps, **kwargs)
