"""Writing our own weights: safetensors, atomically (a crash never leaves a half-written file)."""
import os
import tempfile
from pathlib import Path
from typing import Dict, Optional

import torch
from safetensors.torch import save_file


def save_safetensors_atomic(tensors: Dict[str, torch.Tensor], path, metadata: Optional[Dict[str, str]] = None):
    """Save `tensors` to `path` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; weights are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
