"""Downloads and checkpoint loading, against a throwaway HTTP server on 127.0.0.1."""
import hashlib
import http.server
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from glide import download
from glide.download import (
    CheckpointError,
    DownloadError,
    default_cache_dir,
    fetch_file,
    load_checkpoint,
    resolve_file,
    resolve_vocab_file,
)

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: several read chunks' worth for the progress bar
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    """Serves the files of a directory and counts GET requests; honours `Range: bytes=N-` (206) unless told
    to ignore it; can answer slowly, or cut the body short (announce it all, send half, hang up)."""

    def __init__(self, root: Path):
        self.root = root
        self.requests = 0
        self.ranges = []          # the start of each Range request received
        self.delay = 0.0
        self.truncate = False
        self.ignore_range = False
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                server.requests += 1
                time.sleep(server.delay)
                path = root / self.path.lstrip("/")
                if not path.is_file():
                    return super().do_GET()
                data, start = path.read_bytes(), 0
                asked = self.headers.get("Range", "")
                if asked.startswith("bytes=") and asked.endswith("-"):
                    server.ranges.append(int(asked[6:-1]))
                    if not server.ignore_range:
                        start = int(asked[6:-1])
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if server.truncate else body)
                self.close_connection = server.truncate

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "file.bin").write_bytes(PAYLOAD)
    srv = _Server(root)
    yield srv
    srv.close()


@pytest.fixture
def cache(tmp_path):
    path = tmp_path / "cache"
    path.mkdir()
    return path


def _leftovers(directory: Path):
    """Files in ``directory`` other than lock files (which are harmless and may remain)."""
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock"))


def test_fetch_downloads_verifies_and_shows_progress(server, cache, capsys):
    dest = cache / "sub" / "file.bin"
    result = fetch_file(f"{server.url}/file.bin", dest, sha256=PAYLOAD_SHA256, size=len(PAYLOAD))
    assert result == dest
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["file.bin"]
    err = capsys.readouterr().err
    assert "file.bin" in err and "100%" in err


def test_fetch_reuses_a_complete_file(server, cache):
    dest = cache / "file.bin"
    dest.write_bytes(PAYLOAD)
    fetch_file(f"{server.url}/file.bin", dest, sha256=PAYLOAD_SHA256, progress=False)
    assert server.requests == 0


def test_fetch_replaces_a_file_with_the_wrong_checksum(server, cache):
    dest = cache / "file.bin"
    dest.write_bytes(b"stale")
    fetch_file(f"{server.url}/file.bin", dest, sha256=PAYLOAD_SHA256, progress=False)
    assert server.requests == 1
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize("check", [{"sha256": "0" * 64}, {"size": len(PAYLOAD) + 1}])
def test_fetch_rejects_a_mismatch_and_leaves_nothing(server, cache, check):
    dest = cache / "file.bin"
    with pytest.raises(DownloadError) as info:
        fetch_file(f"{server.url}/file.bin", dest, progress=False, **check)
    assert str(dest) in str(info.value)
    assert _leftovers(cache) == []


def test_an_interrupted_download_resumes_where_it_stopped(server, cache):
    server.truncate = True
    dest = cache / "file.bin"
    with pytest.raises(DownloadError, match="stopped after 524,288 of 1,048,576 bytes. Run again to resume"):
        fetch_file(f"{server.url}/file.bin", dest, sha256=PAYLOAD_SHA256, progress=False)
    assert not dest.exists() and _leftovers(cache) == [".file.bin.part"]      # never a half file in place
    server.truncate = False
    fetch_file(f"{server.url}/file.bin", dest, sha256=PAYLOAD_SHA256, progress=False)
    assert server.ranges == [len(PAYLOAD) // 2]                                # asked for the rest only
    assert dest.read_bytes() == PAYLOAD and _leftovers(cache) == ["file.bin"]  # the checksum of the whole


def test_a_server_that_ignores_range_restarts_the_file_cleanly(server, cache):
    dest = cache / "file.bin"
    download.partial_path(dest).write_bytes(PAYLOAD[:1000])
    server.ignore_range = True
    fetch_file(f"{server.url}/file.bin", dest, sha256=PAYLOAD_SHA256, progress=False)
    assert server.ranges == [1000] and dest.read_bytes() == PAYLOAD and _leftovers(cache) == ["file.bin"]


def test_a_full_disk_is_a_clear_error_and_leaves_nothing(server, cache, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
    dest = cache / "file.bin"
    with pytest.raises(DownloadError, match=r"Not enough disk space for file.bin .* 4,096 bytes free, 1,048,576 needed"):
        fetch_file(f"{server.url}/file.bin", dest, size=len(PAYLOAD), progress=False)
    assert _leftovers(cache) == []


def test_a_disk_that_fills_during_the_download(server, cache, monkeypatch):
    import builtins
    import errno

    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return Full(f) if str(path).endswith(".part") and "b" in mode and mode != "rb" else f

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(DownloadError, match="Not enough disk space"):
        fetch_file(f"{server.url}/file.bin", cache / "file.bin", progress=False)
    assert _leftovers(cache) == []


def test_concurrent_fetches_download_once(server, cache):
    # The slow server keeps the first download in progress while the second thread arrives.
    server.delay = 0.5
    dest = cache / "file.bin"
    url = f"{server.url}/file.bin"
    start = threading.Barrier(2)
    results, errors = [], []

    def worker():
        start.wait()
        try:
            results.append(fetch_file(url, dest, sha256=PAYLOAD_SHA256, progress=False))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert results == [dest, dest]
    assert server.requests == 1
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(cache) == ["file.bin"]


def test_fetch_offline_names_url_and_destination(cache):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/base.pt"  # nothing listens there any more
    dest = cache / "base.pt"
    with pytest.raises(DownloadError) as info:
        fetch_file(url, dest, progress=False, timeout=5)
    message = str(info.value)
    assert "base.pt" in message and url in message and str(dest) in message
    assert _leftovers(cache) == []


def test_resolve_file(server, cache, tmp_path):
    url = f"{server.url}/file.bin"
    explicit = tmp_path / "mine.bin"
    explicit.write_bytes(b"mine")
    assert resolve_file(str(explicit), url, cache_dir=cache) == explicit
    assert server.requests == 0
    assert resolve_file("file.bin", url, cache_dir=cache, progress=False) == cache / "file.bin"
    assert (cache / "file.bin").read_bytes() == PAYLOAD
    with pytest.raises(FileNotFoundError):
        resolve_file(str(tmp_path / "missing.bin"), url, cache_dir=cache)


def test_vocab_files_resolve_from_a_filled_cache_without_writing(vocab_dir):
    before = sorted(p.name for p in vocab_dir.iterdir())
    for name in download.VOCAB_FILES:
        assert resolve_vocab_file(name, cache_dir=vocab_dir) == vocab_dir / name
    assert sorted(p.name for p in vocab_dir.iterdir()) == before


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GLIDE_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("GLIDE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "glide"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "glide"


def test_model_urls_and_file_names():
    assert set(download.MODEL_URLS) == {
        "base", "upsample", "base-inpaint", "upsample-inpaint", "clip/image-enc", "clip/text-enc"
    }
    assert download.CHECKPOINT_FILENAMES["base-inpaint"] == "base_inpaint.pt"
    assert download.CHECKPOINT_FILENAMES["clip/text-enc"] == "clip_text_enc.pt"


def _tiny_state_dict():
    return {"layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "layer.bias": torch.ones(2)}


def _assert_state_dicts_equal(actual, expected):
    assert list(actual) == list(expected)
    for key in expected:
        assert torch.equal(actual[key], expected[key])


def test_load_checkpoint_downloads_and_loads(server, cache, monkeypatch):
    state = _tiny_state_dict()
    torch.save(state, server.root / "base.pt")
    monkeypatch.setitem(download.MODEL_URLS, "base", f"{server.url}/base.pt")
    _assert_state_dicts_equal(load_checkpoint("base", cache_dir=cache, progress=False), state)
    assert (cache / "base.pt").is_file()
    # Second call: from the cache, no new request.
    _assert_state_dicts_equal(load_checkpoint("base", cache_dir=cache), state)
    assert server.requests == 1


def test_load_checkpoint_explicit_pt_and_safetensors(tmp_path):
    state = _tiny_state_dict()
    torch.save(state, tmp_path / "weights.pt")
    save_file(state, str(tmp_path / "weights.safetensors"))
    _assert_state_dicts_equal(load_checkpoint("upsample", path=tmp_path / "weights.pt"), state)
    loaded = load_checkpoint("upsample", path=tmp_path / "weights.safetensors")
    assert set(loaded) == set(state)
    for key in state:
        assert torch.equal(loaded[key], state[key])


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_checkpoint_raises_checkpoint_error(tmp_path, suffix):
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pt":
        torch.save(_tiny_state_dict(), path)
    else:
        save_file(_tiny_state_dict(), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint("base", path=path)
    assert str(path) in str(info.value) and "delete" in str(info.value)


def test_checkpoint_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError):
        load_checkpoint("base", path=path)


def test_unknown_checkpoint_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        load_checkpoint("bsae")
    assert "base-inpaint" in str(info.value) and "clip/text-enc" in str(info.value)
