"""Shared fixtures: where the reference goldens live, and skipping cleanly when they do not."""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _reference_dir() -> Path:
    explicit = os.environ.get("GLIDE_REFERENCE_DIR")
    return Path(explicit) if explicit else REPO_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The reference implementation's golden data (../shared/reference or $GLIDE_REFERENCE_DIR)."""
    path = _reference_dir()
    if not (path / "README.md").exists():
        pytest.skip(f"reference data not found at {path}; set GLIDE_REFERENCE_DIR to run golden tests")
    return path


@pytest.fixture(scope="session")
def vocab_dir(reference_dir) -> Path:
    """The official tokenizer files, used as a ready-filled cache so no test downloads them."""
    return reference_dir / "vocab"
