"""Finding, downloading and loading GLIDE's checkpoints and tokenizer files.

Files live in a cache directory (see ``default_cache_dir``). Downloads go to a temporary file next
to the destination and are renamed into place only once complete and verified, under a file lock,
so an interrupted or concurrent download never leaves a partial file where a complete one is
expected.
"""
import errno
import hashlib
import http.client
import os
import pickle
import shutil
import ssl
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Union

import torch
from filelock import FileLock
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from tqdm.auto import tqdm

from .errors import CheckpointError, DownloadError

PathLike = Union[str, Path]

# The official checkpoints (openai/glide-text2im). No checksums or sizes are published for them.
OFFICIAL_CHECKPOINT_PREFIX = "https://openaipublic.blob.core.windows.net/diffusion/dec-2021"
MODEL_URLS: Dict[str, str] = {
    "base": f"{OFFICIAL_CHECKPOINT_PREFIX}/base.pt",
    "upsample": f"{OFFICIAL_CHECKPOINT_PREFIX}/upsample.pt",
    "base-inpaint": f"{OFFICIAL_CHECKPOINT_PREFIX}/base_inpaint.pt",
    "upsample-inpaint": f"{OFFICIAL_CHECKPOINT_PREFIX}/upsample_inpaint.pt",
    "clip/image-enc": f"{OFFICIAL_CHECKPOINT_PREFIX}/clip_image_enc.pt",
    "clip/text-enc": f"{OFFICIAL_CHECKPOINT_PREFIX}/clip_text_enc.pt",
}

# Cache file name of each checkpoint: the last component of its URL (base.pt, base_inpaint.pt, ...).
CHECKPOINT_FILENAMES: Dict[str, str] = {name: url.rsplit("/", 1)[1] for name, url in MODEL_URLS.items()}


class VocabFile(NamedTuple):
    """Where to download a tokenizer data file, and how to recognise the right one."""

    url: str
    sha256: str
    size: int


# The tokenizer data files, under the names the reference package uses.
VOCAB_FILES: Dict[str, VocabFile] = {
    "encoder.json.gz": VocabFile(
        "https://github.com/openai/glide-text2im/raw/main/glide_text2im/tokenizer/encoder.json.gz",
        "4debc1cf25180021b07744bc9f4488d53c7bf112c8ce5de8097c6a7518f4ec7c",
        348_346,
    ),
    "vocab.bpe.gz": VocabFile(
        "https://github.com/openai/glide-text2im/raw/main/glide_text2im/tokenizer/vocab.bpe.gz",
        "ce239dd5a898827423fee00e3f7ab37de7900f247f2ba360753d860e8a46524d",
        213_544,
    ),
    "bpe_simple_vocab_16e6.txt.gz": VocabFile(
        "https://github.com/openai/CLIP/raw/main/clip/bpe_simple_vocab_16e6.txt.gz",
        "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a",
        1_356_917,
    ),
}
VOCAB_URLS: Dict[str, str] = {filename: f.url for filename, f in VOCAB_FILES.items()}

# Network failures worth a "download it by hand" message (URLError covers refused connections).
_NETWORK_ERRORS = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
    ssl.SSLError,
)

# Seconds without any data from the server before a download is abandoned.
DEFAULT_TIMEOUT = 60.0
_CHUNK_SIZE = 1 << 20


def checkpoint_url(name: str) -> str:
    """Where to download checkpoint ``name``: ``MODEL_URLS[name]``, on a mirror when one is set.

    ``$GLIDE_DOWNLOAD_URL``, when set, replaces the official prefix (``OFFICIAL_CHECKPOINT_PREFIX``).
    It is read at each call, so a mirror set after import (or per test) takes effect.
    """
    url = MODEL_URLS[name]
    mirror = os.environ.get("GLIDE_DOWNLOAD_URL")
    if mirror and url.startswith(OFFICIAL_CHECKPOINT_PREFIX + "/"):
        url = mirror.rstrip("/") + url[len(OFFICIAL_CHECKPOINT_PREFIX):]
    return url


def default_cache_dir() -> Path:
    """``$GLIDE_CACHE_DIR`` if set, else ``glide`` under ``$XDG_CACHE_HOME`` (default ``~/.cache``)."""
    explicit = os.environ.get("GLIDE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg_cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg_cache).expanduser() if xdg_cache else Path.home() / ".cache"
    return base / "glide"


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_complete(path: Path, sha256: Optional[str], size: Optional[int]) -> bool:
    """Whether ``path`` exists and matches whatever is known about the expected file."""
    if not path.is_file():
        return False
    if size is not None and path.stat().st_size != size:
        return False
    return sha256 is None or _sha256_of(path) == sha256


def _manual_download_hint(url: str, dest: Path) -> str:
    return f"Download {url} by hand and save it as {dest}"


def fetch_file(
    url: str,
    dest: PathLike,
    sha256: Optional[str] = None,
    size: Optional[int] = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Make sure ``dest`` holds the file at ``url``, downloading it if needed.

    An existing ``dest`` is kept when it matches ``sha256`` and ``size`` (each checked only when
    given); otherwise it is downloaded again. The download is written to a temporary file in the
    same directory, verified, then renamed onto ``dest``, so ``dest`` is always either absent or
    complete. A lock file ``<dest>.lock`` serialises concurrent fetches of the same file: the
    second one waits, then finds the file in place. The lock file may remain afterwards; removing
    it would let a third process lock a new file while a waiting one locks the old.

    :param progress: show a tqdm progress bar on stderr.
    :param timeout: seconds to wait for the server (to connect, or for each chunk) before giving up.
    :raises DownloadError: on a network failure, a truncated download or a checksum mismatch; the
        message names the file, the URL and where to put the file by hand.
    """
    dest = Path(dest)
    # Checked before locking too, so that a complete file in a read-only directory can be used.
    if _is_complete(dest, sha256, size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{dest}.lock"):
        # Another process may have finished the download while we waited for the lock.
        if _is_complete(dest, sha256, size):
            return dest
        part = partial_path(dest)
        try:
            actual_sha256 = _download(url, part, dest, progress, timeout)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            part.unlink(missing_ok=True)   # a partial that cannot grow would only hold the disk
            free = shutil.disk_usage(dest.parent).free
            raise DownloadError(f"Not enough disk space for {dest.name} in {dest.parent}: {free:,} bytes free"
                                + (f", {size:,} needed" if size else "") + ". Free some space and run again.") from None
        actual_size = part.stat().st_size
        mismatch = None
        if size is not None and actual_size != size:
            mismatch = f"has {actual_size} bytes, expected {size}"
        elif sha256 is not None and actual_sha256 != sha256:
            mismatch = f"has SHA-256 {actual_sha256}, expected {sha256}"
        if mismatch:
            part.unlink()   # not the file we want: the next try starts afresh
            raise DownloadError(f"Downloaded {dest.name} from {url} {mismatch}. " + _manual_download_hint(url, dest))
        os.chmod(part, 0o644)
        os.replace(part, dest)
    return dest


def partial_path(dest: Path) -> Path:
    """Where a download of `dest` grows (kept when interrupted, so the next fetch resumes from it)."""
    return dest.with_name(f".{dest.name}.part")


def _download(url: str, part: Path, dest: Path, progress: bool, timeout: float) -> str:
    """Download ``url`` into ``part``, resuming from what ``part`` already holds when the server honours a
    ``Range`` request (else starting over); return the SHA-256 of the whole file.

    Interrupted, ``part`` keeps what arrived (so the next call resumes) and DownloadError says so;
    a full disk raises OSError(ENOSPC) for the caller.
    """
    digest = hashlib.sha256()
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    received, expected = 0, None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = have > 0 and response.status == 206 and response.headers.get("Content-Range", "").startswith(
                f"bytes {have}-")
            if resumed:
                with open(part, "rb") as f:   # the hash covers the whole file, resumed or not
                    for chunk in iter(lambda: f.read(_CHUNK_SIZE), b""):
                        digest.update(chunk)
            else:
                have = 0   # no partial, or a server that ignores Range: start the file over
            length = response.headers.get("Content-Length")
            expected = int(length) if length is not None else None
            if expected is not None and shutil.disk_usage(part.parent).free < expected:
                raise OSError(errno.ENOSPC, "No space left on device")
            bar = tqdm(total=None if expected is None else have + expected, initial=have, unit="B",
                       unit_scale=True, unit_divisor=1024, desc=dest.name, disable=not progress)
            with bar, open(part, "ab" if resumed else "wb") as out:
                for chunk in iter(lambda: response.read(_CHUNK_SIZE), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except _NETWORK_ERRORS as exc:
        raise DownloadError(
            f"Could not download {dest.name} from {url}: {exc}. Run again to resume ({have + received:,} bytes "
            f"kept in {part.name}), or: " + _manual_download_hint(url, dest)
        ) from exc
    # http.client returns a short body without complaint when the connection drops early.
    if expected is not None and received != expected:
        raise DownloadError(
            f"Download of {dest.name} from {url} stopped after {have + received:,} of {have + expected:,} bytes. "
            f"Run again to resume from there, or: " + _manual_download_hint(url, dest)
        )
    return digest.hexdigest()


def resolve_file(
    filename: PathLike,
    url: str,
    cache_dir: Optional[PathLike] = None,
    sha256: Optional[str] = None,
    size: Optional[int] = None,
    progress: bool = True,
) -> Path:
    """Find a data file, downloading it into the cache directory if it is not there yet.

    :param filename: a bare file name, looked up in ``cache_dir``; or a path (anything with a
        directory part, e.g. ``./base.pt``), which is used as it is and must exist. Bare names are
        never looked up in the working directory, so a stray file there cannot shadow the cache.
    :param cache_dir: defaults to ``default_cache_dir()``.
    :raises FileNotFoundError: ``filename`` is a path that does not exist.
    :raises DownloadError: the file had to be downloaded and could not be.
    """
    path = Path(filename)
    if path.name != str(filename):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        return path
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return fetch_file(url, cache / path, sha256=sha256, size=size, progress=progress)


def resolve_vocab_file(filename: str, cache_dir: Optional[PathLike] = None, progress: bool = True) -> Path:
    """Path of one of the official tokenizer files (a key of ``VOCAB_FILES``), verified by checksum."""
    known = VOCAB_FILES[filename]
    return resolve_file(
        filename, known.url, cache_dir, sha256=known.sha256, size=known.size, progress=progress
    )


def load_checkpoint(
    name: str,
    device: Union[str, torch.device] = "cpu",
    cache_dir: Optional[PathLike] = None,
    path: Optional[PathLike] = None,
    progress: bool = True,
    mmap: bool = False,
) -> Dict[str, torch.Tensor]:
    """Load the state dict of an official GLIDE checkpoint.

    :param name: one of ``MODEL_URLS`` ("base", "upsample", "base-inpaint", "upsample-inpaint",
        "clip/image-enc", "clip/text-enc").
    :param device: where to put the tensors.
    :param cache_dir: where the checkpoint is cached (downloaded on first use, from
        ``checkpoint_url(name)``); defaults to ``default_cache_dir()``. The file name is
        ``CHECKPOINT_FILENAMES[name]``.
    :param path: load this file (``.pt`` or ``.safetensors``) instead of the cached download.
    :param mmap: map a ``.pt`` file's tensors into memory instead of reading them (they are read when
        first used; see ``model_creation.build_with_weights``); the files ``torch.save`` wrote before
        torch 1.6 cannot be mapped and are read whole.
    :raises ValueError: unknown ``name``.
    :raises CheckpointError: the file is truncated, corrupt or not a plain state dict.
    """
    if name not in MODEL_URLS:
        raise ValueError(f"Unknown checkpoint {name!r}; valid names are: {', '.join(MODEL_URLS)}")
    if path is None:
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = fetch_file(checkpoint_url(name), cache / CHECKPOINT_FILENAMES[name], progress=progress)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist")

    remedy = f"delete {path} and run again to download it afresh"
    try:
        if path.suffix == ".safetensors":
            state_dict = load_safetensors(str(path), device=str(device))
        else:
            # weights_only: a checkpoint is data, and must not be able to run code when loaded.
            state_dict = torch.load(path, map_location=device, weights_only=True,
                                    mmap=mmap and zipfile.is_zipfile(path))
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError, SafetensorError) as exc:
        raise CheckpointError(
            f"Could not load checkpoint {name!r} from {path}: {exc}. "
            f"The file may be truncated or corrupt; {remedy}."
        ) from exc
    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise CheckpointError(f"Checkpoint {path} is not a state dict of tensors; {remedy}.")
    return state_dict
