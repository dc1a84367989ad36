"""Writing our own weights: safetensors, atomically (a crash never leaves a half-written file)."""
from typing import Dict, Optional

import torch
from safetensors.torch import save_file

from .fileio import atomic_write


def save_safetensors_atomic(tensors: Dict[str, torch.Tensor], path, metadata: Optional[Dict[str, str]] = None):
    """Save `tensors` to `path` through a temporary file in the same folder and an atomic rename."""
    with atomic_write(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
