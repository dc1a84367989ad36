"""DeepCache for GLIDE's UNets: reuse the deep features across adjacent sampling steps.

Ma, Fang & Wang 2023, "DeepCache: Accelerating Diffusion Models for Free" (arXiv 2312.00858): the
UNet's high-level features change little from one step to the next, so a full forward can store the
up-path feature at a skip branch and the next steps recompute only the shallow path around it:

    full step:     input_blocks[0..K-1] -> middle -> output_blocks[0..K-1] -> out
                   storing h, the up-path feature entering output_blocks[K - depth]
    shallow step:  input_blocks[0..depth-1] -> (cached h) -> output_blocks[K - depth..K-1] -> out

The shallow step is the full forward exactly, given the true h of its input: only the deep path is
skipped, and the skip connections of the shallow blocks are this step's own. `depth` is the branch:
the number of input blocks (and of output blocks) the shallow step runs. `default_depth` is the branch
below the two highest-resolution levels: the shallow step recomputes those two levels, the cache holds
every level below them and the middle block. It is the shallowest branch that measured as good as off
on the shapes family (`scripts/deep_cache_depths.py`; docs/shapes-family.md, DeepCache): on the base model depths 1-3
lost 5-14 points of two-shape accuracy at a full forward every 2 steps, depth 4 (this branch) none; on
the upsampler this branch kept the error against the truth, depth 1 raised it. The paper's branch 0
(the first convolution and the last output block) is `depth=1`.

`DeepCachedModel(model, interval)` is the model of one sampling run: every `interval`-th call is a
full forward, the calls in between shallow. A call whose batch differs from the one the cache was
computed for (shape, dtype, device, or any keyword tensor other than the very ones of that call: the
guidance `interval` runs the conditional half alone outside it, both halves batched inside) is a
full forward that starts the count again, so a cache is only ever applied to the inputs it was made
for. The cache lives in the wrapper, never on the model: the models are shared by worker threads,
each run makes its own wrapper.
"""
from typing import Optional

import torch

MAX_INTERVAL = 10   # beyond this the cached feature is many steps stale; the settings refuse more


def default_depth(unet) -> int:
    """The branch below the UNet's two highest-resolution levels: the first convolution, the first level's
    residual blocks and downsampling, the second level's residual blocks (4 input blocks of the shapes
    models' 6 and 10, 8 of GLIDE's base's 16, 6 of its upsampler's 18); all of them for a two-level UNet."""
    return min(len(unet.input_blocks), 2 * unet.num_res_blocks + 2)


class DeepCacheStep:
    """One forward's instruction to `UNetModel.run_unet`: with `feature` None a full forward that stores
    the feature at `depth` in `feature`; with a feature, the shallow path on it."""

    def __init__(self, depth: int, feature: Optional[torch.Tensor] = None):
        self.depth = depth
        self.feature = feature

    def run(self, unet, x: torch.Tensor, emb: torch.Tensor, encoder_out=None) -> torch.Tensor:
        """The UNet body (run_unet without its output head) as a full or a shallow forward."""
        blocks = len(unet.output_blocks)
        if not 1 <= self.depth <= blocks:
            raise ValueError(f"DeepCache depth must be in [1, {blocks}] for this UNet, got {self.depth}")
        shallow = self.feature is not None
        hs = []
        h = x.to(unet.dtype)
        for module in unet.input_blocks[:self.depth] if shallow else unet.input_blocks:
            h = module(h, emb, encoder_out)
            hs.append(h)
        if shallow:
            h = self.feature
        else:
            h = unet.middle_block(h, emb, encoder_out)
            for module in unet.output_blocks[:blocks - self.depth]:
                h = module(torch.cat([h, hs.pop()], dim=1), emb, encoder_out)
            self.feature = h
        for module in unet.output_blocks[blocks - self.depth:]:
            h = module(torch.cat([h, hs.pop()], dim=1), emb, encoder_out)
        return h


def _tensors(value):
    """The tensors among a call's keyword values (nested dicts such as text_emb included), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for key in sorted(value) for t in _tensors(value[key])]
    return []


class DeepCachedModel:
    """A text-conditional UNet for one sampling run, with DeepCache every `interval` calls at branch `depth`
    (default: `default_depth`; see the module docstring). Attributes other than the call (parameters,
    tokenizer, ...) are the model's own.

    `full_calls` and `shallow_calls` count what ran. Not for sharing between runs or threads.
    """

    def __init__(self, model, interval: int, depth: Optional[int] = None):
        if not 2 <= interval <= MAX_INTERVAL:
            raise ValueError(f"DeepCache interval must be in [2, {MAX_INTERVAL}], got {interval}")
        self.model = model
        self.interval = interval
        self.depth = default_depth(model) if depth is None else depth
        self.full_calls = self.shallow_calls = 0
        self._feature: Optional[torch.Tensor] = None
        self._made_for = None        # (x's signature, the keyword tensors) of the full forward
        self._since_full = 0

    def __getattr__(self, name):
        return getattr(self.__dict__["model"], name)

    def _fits(self, signature, tensors) -> bool:
        if self._made_for is None:
            return False
        made_signature, made_tensors = self._made_for
        return (signature == made_signature and len(tensors) == len(made_tensors)
                and all(a is b for a, b in zip(tensors, made_tensors)))

    def __call__(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs) -> torch.Tensor:
        signature = (tuple(x.shape), x.dtype, x.device)
        tensors = _tensors(kwargs)
        full = self._since_full % self.interval == 0 or not self._fits(signature, tensors)
        step = DeepCacheStep(self.depth, None if full else self._feature)
        out = self.model(x, timesteps, deep_cache=step, **kwargs)
        if full:
            self._feature, self._made_for, self._since_full = step.feature, (signature, tensors), 1
            self.full_calls += 1
        else:
            self._since_full += 1
            self.shallow_calls += 1
        return out


def with_deep_cache(model, interval: int):
    """`model` for one run with DeepCache every `interval` steps; the model itself for 0 or 1 (off)."""
    return DeepCachedModel(model, interval) if interval >= 2 else model
