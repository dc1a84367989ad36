"""Which model families the demo offers, and downloading one in the background with visible progress.

A download runs in its own daemon thread and is shared: one download per family however many
users click, and nobody's requests wait for it. Progress is read from the files growing in the
cache (glide.download writes each checkpoint to a `.NAME.part` file beside its destination),
so the download code needs no hooks of its own.
"""
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from glide.download import partial_path
from glide.families import FAMILIES, download_family, get_family, list_models
from glide.fileio import human_bytes

# The official checkpoints' total size; they publish no sizes, so this is for the progress bar only.
APPROX_BYTES = {"glide-filtered": 5_400_000_000}


def model_rows(checkpoint_dir: Optional[Path] = None) -> Dict[str, dict]:
    """list_models() by name."""
    return {row["name"]: row for row in list_models(checkpoint_dir)}


def model_label(row: dict) -> str:
    """A dropdown label that says whether the model is ready and how big it is."""
    if row["ready"] and all(c["ready"] for c in row["components"].values()):
        return f"{row['name']} — ready ({human_bytes(row['bytes'])})"
    if row["name"] in APPROX_BYTES:
        return f"{row['name']} — download ≈{human_bytes(APPROX_BYTES[row['name']])}"
    return f"{row['name']} — not available"


@dataclass
class DownloadState:
    state: str = "idle"          # idle | running | done | error
    message: str = ""
    started: float = 0.0


class Downloads:
    """Background downloads of model families (see the module docstring)."""

    def __init__(self, checkpoint_dir: Optional[Path] = None,
                 fetch: Callable[[str, Optional[Path]], object] = None):
        self.checkpoint_dir = checkpoint_dir
        # `fetch(name, checkpoint_dir)` does the work; tests pass a fake one.
        self._fetch = fetch or (lambda name, d: download_family(name, d, progress=False))
        self._states: Dict[str, DownloadState] = {}
        self._lock = threading.Lock()

    def start(self, name: str) -> DownloadState:
        """Start downloading `name` unless it is running already or complete; returns its state."""
        name = get_family(name).name
        with self._lock:
            state = self._states.setdefault(name, DownloadState())
            if state.state == "running":
                return state
            state.state, state.message, state.started = "running", "starting", time.time()
        threading.Thread(target=self._download, args=(name,), name=f"download-{name}", daemon=True).start()
        return state

    def _download(self, name: str):
        state = self._states[name]
        try:
            self._fetch(name, self.checkpoint_dir)
            state.state, state.message = "done", "downloaded"
        except Exception as exc:  # noqa: BLE001 - shown to users; the server carries on
            state.state, state.message = "error", str(exc)

    def bytes_on_disk(self, name: str) -> int:
        """Bytes of the family's checkpoints present, partial downloads included."""
        def size(p: Path) -> int:
            try:
                return p.stat().st_size
            except OSError:  # a partial file renamed into place (or removed) between listing and stat
                return 0

        total = 0
        for paths in FAMILIES[name].files(self.checkpoint_dir).values():
            for path in paths if isinstance(paths, list) else [paths]:
                path = Path(path)
                if path.exists():
                    total += size(path)
                elif path.parent.exists():
                    total += size(partial_path(path))
        return total

    def status(self, name: str) -> dict:
        """state, message, done_bytes, total_bytes (estimated) and fraction, for a progress display."""
        state = self._states.get(name, DownloadState())
        done = self.bytes_on_disk(name)
        total = max(APPROX_BYTES.get(name, done), done, 1)
        return {"state": state.state, "message": state.message, "done_bytes": done, "total_bytes": total,
                "fraction": 1.0 if state.state == "done" else min(done / total, 0.999)}

    def describe(self, name: str) -> str:
        """The status in one line of Markdown."""
        s = self.status(name)
        if s["state"] == "running":
            return (f"Downloading **{name}**: {human_bytes(s['done_bytes'])} of ≈{human_bytes(s['total_bytes'])} "
                    f"({100 * s['fraction']:.0f} %). You can keep using the other models meanwhile.")
        if s["state"] == "error":
            return f"Download of **{name}** failed: {s['message']}"
        if s["state"] == "done":
            return f"**{name}** is downloaded and ready."
        return ""

    def running(self) -> List[str]:
        return [n for n, s in self._states.items() if s.state == "running"]
