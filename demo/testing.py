"""A real demo server for the tests: `python app.py --port <free port>` in a subprocess, shared per test session.

Both tests/test_demo.py and tests/test_browser.py use it, so the server (whose start-up, importing
torch and gradio, is the slowest part of the tests) starts once per pytest run.
"""
import atexit
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

ROOT = Path(__file__).resolve().parents[1]
# Debian's Chromium, headless, kept off the network it cannot reach (the browser tests and `make screenshots`).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LOG_DIR = ROOT / "artifacts" / "logs"


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self):
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


_SERVERS: Dict[tuple, Server] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_user(i: int) -> Dict:
    """gradio_client.Client arguments for a client of user number `i`: every test client connects from
    127.0.0.1, so each names its own address as a proxy would (the servers trust 127.0.0.1, below); without
    it, they would all be one user, held to the per-user cap."""
    return {"headers": {"X-Forwarded-For": f"198.51.{100 + i // 250}.{1 + i % 250}"}}


def start_server(*args: str, timeout: float = 240.0) -> Server:
    """Start the demo on 127.0.0.1 with extra command-line `args`, trusting its clients' X-Forwarded-For
    (as_user); wait until it answers HTTP."""
    port = free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"demo-server-{port}.log"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port),
                                    "--device", "cpu", "--trusted-proxy", "127.0.0.1", *args], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}/", process, log_path)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not server.alive():
            raise RuntimeError(f"the demo server exited with {process.returncode}:\n{server.log()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url, timeout=5) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"the demo server did not answer within {timeout:.0f} s:\n{server.log()[-3000:]}")


def missing_weights() -> Optional[str]:
    """Why the embedded shapes family cannot serve the tests, or None when all its weights are there."""
    from glide.families import list_models

    shapes = next(row for row in list_models() if row["name"] == "shapes")
    missing = [c for c, info in shapes["components"].items() if not info["ready"]]
    return f"the shapes model has no weights for {missing}: run `make train-default`" if missing else None


def shared_server(*args: str) -> Server:
    """The session's demo server for these command-line `args` (none: the defaults), started on first use
    and stopped at exit."""
    server = _SERVERS.get(args)
    if server is None or not server.alive():
        server = _SERVERS[args] = start_server(*args)
        atexit.register(server.stop)
    return server


def runs_in(server: Server) -> int:
    """How many sampling runs the server's backend has made, as its /healthz says ("runs")."""
    with urllib.request.urlopen(server.url + "healthz", timeout=60) as response:
        return json.loads(response.read())["runs"]


def internal_errors(server: Server) -> float:
    """How many handler failures that are bugs the server has counted (glide_internal_errors_total on /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(server.url + "metrics", timeout=60) as response:
        families = text_string_to_metric_families(response.read().decode())
        return sum(s.value for family in families for s in family.samples if s.name == "glide_internal_errors_total")


def set_slider(page, elem_id: str, value) -> None:
    """Type into the number box of the gr.Slider with `elem_id` (a Playwright page)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
