"""PNG files that remember how they were made: settings in a text chunk, read back to regenerate."""
import json
from pathlib import Path
from typing import Dict, Optional, Union

from PIL import Image, PngImagePlugin

from .fileio import atomic_write

SETTINGS_KEY = "glide-settings"


def png_info(settings: Dict) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(SETTINGS_KEY, json.dumps(settings, sort_keys=True))
    # A human-readable summary, shown by most image viewers.
    info.add_text("Description", settings.get("prompt", ""))
    info.add_text("Software", "glide (https://arxiv.org/abs/2112.10741 re-implementation)")
    return info


def save_png(image: Image.Image, path: Union[str, Path], settings: Dict) -> Path:
    """Write `image` with `settings` embedded, atomically (temp file + rename)."""
    with atomic_write(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=png_info(settings))
    return Path(path)


def read_settings(source: Union[str, Path, Image.Image]) -> Optional[Dict]:
    """The settings embedded by `save_png`, or None when the image carries none."""
    image = source if isinstance(source, Image.Image) else Image.open(source)
    text = image.info.get(SETTINGS_KEY) or getattr(image, "text", {}).get(SETTINGS_KEY)
    if not text:
        return None
    try:
        settings = json.loads(text)
    except json.JSONDecodeError:
        return None
    return settings if isinstance(settings, dict) else None
