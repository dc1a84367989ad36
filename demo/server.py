"""The demo's web server: the Gradio UI mounted in a FastAPI app, beside what a server's operator asks of it.

    GET /healthz   200 when the demo can serve, 503 when not; JSON: "healthy", "problems" (why not, in
                   words), "models" (loaded), the jobs waiting and running, and on Ray the application's
                   state and its replicas (glide.serving.backend.Backend.health)
    GET /metrics   Prometheus' text format: requests, images, queue wait and run time, queue depth,
                   device memory (glide.serving.metrics)

Both answer without a login, for probes and scrapers: expose them only where the operator's tools
reach (docs/serving.md). uvicorn serves the app from a thread, so the main thread keeps the
signal handlers that drain the backend on SIGTERM (demo.app.main).
"""
import logging
import threading
import time
from typing import Sequence

import fastapi
import gradio as gr
import uvicorn
from fastapi.responses import JSONResponse, Response
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from glide.errors import UserError
from glide.serving import metrics
from glide.serving.backend import Backend

from .users import Network

log = logging.getLogger("glide.demo")


def trust_proxies(app: fastapi.FastAPI, trusted: Sequence[Network]) -> None:
    """Requests to `app` that come from one of the `trusted` proxies have the client their X-Forwarded-For
    names (the last address in it that is not itself a trusted proxy) and the scheme their X-Forwarded-Proto
    names: uvicorn's ProxyHeadersMiddleware. Others' headers are ignored (demo.users)."""
    if trusted:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=[str(network) for network in trusted])


def create_app(blocks: gr.Blocks, backend: Backend, trusted_proxies: Sequence[Network] = (),
               **mount_options) -> fastapi.FastAPI:
    """/healthz and /metrics on `backend`, and `blocks` at / (gr.mount_gradio_app with `mount_options`), the
    clients' addresses read from the `trusted_proxies`' headers (trust_proxies)."""
    app = fastapi.FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.blocks = blocks        # WebServer.stop waits for its events in flight
    trust_proxies(app, trusted_proxies)

    # Plain functions: FastAPI runs them on its thread pool, so a slow Ray probe never blocks the event loop.
    @app.get("/healthz")
    def healthz():
        state = backend.health()
        return JSONResponse(state, status_code=200 if state["healthy"] else 503)

    @app.get("/metrics")
    def metrics_page():
        return Response(metrics.render(backend), media_type=metrics.CONTENT_TYPE)

    return gr.mount_gradio_app(app, blocks, path="/", **mount_options)


class WebServer:
    """uvicorn serving `app` on host:port from a daemon thread; `start()` returns once it listens."""

    def __init__(self, app: fastapi.FastAPI, host: str, port: int):
        # Forwarded-address headers are read from the trusted proxies only, by the app itself (trust_proxies).
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", proxy_headers=False,
                                timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.blocks = getattr(app.state, "blocks", None)
        self.address = f"{host}:{port}"
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self, timeout_s: float = 60.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise UserError(f"could not listen on {self.address} (is another server using the port?)")
            time.sleep(0.05)

    def wait(self) -> None:
        """Until the server stops; signals reach the main thread meanwhile (it wakes twice a second)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self, answer_s: float = 10.0) -> None:
        """Stop serving, once the UI's events in flight have handed their answers to gradio (which sends them
        to their clients while uvicorn closes), or after `answer_s` seconds."""
        running = getattr(getattr(self.blocks, "_queue", None), "active_jobs", None) or []
        deadline = time.monotonic() + answer_s
        while any(events is not None for events in list(running)) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.server.should_exit = True
        self._thread.join(15)
