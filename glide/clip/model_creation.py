"""The noised CLIP model: text and image embeddings and the CLIP-guidance gradient (`cond_fn`)."""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from .encoders import ImageEncoder, TextEncoder

DEFAULT_CONFIG_PATH = Path(__file__).with_name("config.yaml")


@dataclass
class CLIPModel:
    """A noised CLIP: `image_encoder(x_t, t)` and `text_encoder(tokens, lens)` share one embedding space.

    `tokenizer` needs `encode(text)` and `padded_tokens_and_len(tokens, text_ctx)`.
    """

    config: Dict[str, Any]
    text_encoder: TextEncoder
    image_encoder: ImageEncoder
    logit_scale: torch.Tensor
    device: torch.device
    tokenizer: Any

    def encode_prompts(self, prompts: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Tokens [N, max_text_len] and lengths [N] for a list of prompts."""
        tokens, lens = [], []
        for prompt in prompts:
            sub_tokens, sub_len = self.tokenizer.padded_tokens_and_len(
                self.tokenizer.encode(prompt), self.text_encoder.max_text_len
            )
            tokens.append(sub_tokens)
            lens.append(sub_len)
        return (torch.tensor(tokens, dtype=torch.long, device=self.device),
                torch.tensor(lens, dtype=torch.long, device=self.device))

    def text_embeddings(self, prompts: List[str]) -> torch.Tensor:
        """Unit-norm text embeddings [N, n_embd]."""
        return self.token_embeddings(*self.encode_prompts(prompts))

    def token_embeddings(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Unit-norm text embeddings [N, n_embd] of prompts already tokenized by `encode_prompts`."""
        z_t = self.text_encoder(tokens, lengths)
        return z_t / (torch.linalg.norm(z_t, dim=-1, keepdim=True) + 1e-12)

    def image_embeddings(self, images: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings [N, n_embd] of noised images in [-1, 1] at original timesteps t [N]."""
        z_i = self.image_encoder((images + 1) * 127.5, t)
        return z_i / (torch.linalg.norm(z_i, dim=-1, keepdim=True) + 1e-12)

    def similarity(self, images: torch.Tensor, t: torch.Tensor, prompts: List[str]) -> torch.Tensor:
        """Cosine similarity [N] between image i and prompt i (the CLIP score reported by the demo)."""
        with torch.no_grad():
            return (self.image_embeddings(images, t) * self.text_embeddings(prompts)).sum(-1)

    def cond_fn(self, prompts: List[str], grad_scale: float) -> Callable[..., torch.Tensor]:
        """The CLIP-guidance gradient: grad_x exp(logit_scale) * <z_i(x_t, t), z_t(prompt)> * grad_scale.

        Row i of x is paired with prompts[i]; the text embedding is computed once, here.
        """
        with torch.no_grad():
            z_t = self.text_embeddings(prompts)

        def cond_fn(x, t, grad_scale=grad_scale, **kwargs):
            with torch.enable_grad():
                x_var = x.detach().requires_grad_(True)
                z_i = self.image_embeddings(x_var, t)
                loss = torch.exp(self.logit_scale) * (z_t * z_i).sum()
                grad = torch.autograd.grad(loss, x_var)[0].detach()
            return grad * grad_scale

        return cond_fn


def clip_config(config_path: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
    import yaml  # here, not at the top: only GLIDE's own CLIP reads a YAML config (saves ~0.1 s of start-up)

    with open(config_path or DEFAULT_CONFIG_PATH) as f:
        return yaml.safe_load(f)


def create_clip_model(config_path: Optional[Union[str, Path]] = None, device=None, tokenizer=None,
                      config: Optional[Dict[str, Any]] = None) -> CLIPModel:
    """Build a noised CLIP from a YAML config with the reference's keys (default: the released model's).

    Weights are random; load `clip/image-enc` and `clip/text-enc` into the two encoders.
    """
    if config is None:
        config = clip_config(config_path)
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if tokenizer is None:
        from ..tokenizer.simple_tokenizer import SimpleTokenizer

        tokenizer = SimpleTokenizer()
    text_encoder = TextEncoder(
        n_bpe_vocab=config["n_vocab"], max_text_len=config["max_text_len"], n_embd=config["n_embd"],
        n_head=config["n_head_text"], n_xf_blocks=config["n_xf_blocks_text"],
        n_head_state=config["n_head_state_text"], device=device,
    )
    image_encoder = ImageEncoder(
        image_size=config["image_size"], patch_size=config["patch_size"], n_embd=config["n_embd"],
        n_head=config["n_head_image"], n_xf_blocks=config["n_xf_blocks_image"],
        n_head_state=config["n_head_state_image"], n_timestep=config["n_timesteps"], device=device,
    )
    logit_scale = torch.tensor(np.log(config["logit_scale"]), dtype=torch.float32, device=device)
    return CLIPModel(config=config, text_encoder=text_encoder, image_encoder=image_encoder,
                     logit_scale=logit_scale, device=device, tokenizer=tokenizer)
