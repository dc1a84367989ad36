"""Model families the pipeline can load: the embedded `shapes` default and OpenAI's `glide-filtered`.

A family (`base.Family`) is a set of components — base, upsample, base-inpaint, upsample-inpaint,
clip — that the pipeline loads lazily, each once; each family's module says how (`shapes`, `glide`).
`get_family` is the one place an unknown model name is reported; `list_models()` tells what is ready locally.
"""
from pathlib import Path
from typing import Dict, List, Optional

from .. import download
from ..download import CHECKPOINT_FILENAMES, default_cache_dir
from ..errors import UnknownModel
from . import glide, shapes
from .base import COMPONENTS, Family, channels_last_on_cpu

FAMILIES: Dict[str, Family] = {family.name: family for family in (shapes.FAMILY, glide.FAMILY)}

__all__ = ["COMPONENTS", "FAMILIES", "Family", "channels_last_on_cpu", "download_family", "get_family", "list_models"]


def get_family(name: str) -> Family:
    """The family called `name`; UnknownModel listing the families otherwise."""
    if name not in FAMILIES:
        raise UnknownModel(f"unknown model {name!r}; choose one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def list_models(checkpoint_dir: Optional[Path] = None) -> List[dict]:
    """Each family: name, description, licence, and per component whether it is on disk and its size."""
    rows = []
    for family in FAMILIES.values():
        components = {}
        for component, paths in family.files(checkpoint_dir).items():
            paths = paths if isinstance(paths, list) else [paths]
            present = all(p.exists() for p in paths)
            components[component] = {"ready": present,
                                     "bytes": sum(p.stat().st_size for p in paths if p.exists()),
                                     "files": [str(p) for p in paths]}
        rows.append({"name": family.name, "description": family.description, "license": family.license,
                     "ready": components["base"]["ready"], "components": components,
                     "bytes": sum(c["bytes"] for c in components.values())})
    return rows


def download_family(name: str, checkpoint_dir: Optional[Path] = None, progress: bool = True) -> List[Path]:
    """Fetch every checkpoint of a downloadable family into the cache (no-op for files present)."""
    family = get_family(name)
    if name == "shapes":
        return [p for p in family.files(checkpoint_dir).values() if p.exists()]
    cache = Path(checkpoint_dir) if checkpoint_dir else default_cache_dir()
    paths = [download.fetch_file(download.checkpoint_url(n), cache / CHECKPOINT_FILENAMES[n], progress=progress)
             for names in glide.CHECKPOINTS.values() for n in names]
    # The tokenizers' files too, where get_encoder / SimpleTokenizer look for them (the default cache).
    return paths + [download.resolve_vocab_file(filename, progress=progress) for filename in download.VOCAB_FILES]
