"""Files on disk: written atomically (never half-written), and sizes said in words."""
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union


@contextlib.contextmanager
def atomic_write(path: Union[str, Path], mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without an error, it becomes `path`.

    The rename is atomic, so readers see the old file or the new one, never a part; on any error
    (a full disk, Ctrl-C) the temporary file is removed and `path` is untouched. `mode` is applied
    because mkstemp creates files readable by their owner only.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Union[str, Path], text: str) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def human_bytes(n_bytes: float) -> str:
    """A size in decimal units: "512 B", "1.5 MB", "5.4 GB"; "-" for nothing."""
    if not n_bytes:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
