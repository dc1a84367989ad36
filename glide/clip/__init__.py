"""The noised CLIP used for CLIP guidance."""
from .model_creation import CLIPModel, create_clip_model

__all__ = ["CLIPModel", "create_clip_model"]
