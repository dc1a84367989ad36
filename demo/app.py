"""The Gradio demo: text to image, inpainting, a guidance comparison and upscaling on one shared model.

    python app.py [--host H] [--port P] [--model shapes] [--device cuda] [--max-batch 8] ...
    python app.py --backend ray --replicas 2 [--gpus-per-replica 1] [--ray-address auto]   # on Ray Serve
    python app.py --config deploy/glide-serve.toml     # the same flags from a TOML file (a shared box)

`build_demo(service)` lays out the Blocks from the pieces in demo.tabs and demo.api; `main()`
parses the command line and serves it, mounted in a FastAPI app beside /healthz and /metrics
(demo.server), under --root-path behind a reverse proxy. The UI only turns widget values into requests for
demo.service and shows what comes back; the service owns validation, queueing, batching and the
pipeline. Four API endpoints with plain inputs — /generate, /inpaint, /upscale and /compare — serve
gradio_client users; every other event is private to the page. demo/page.js adds the page's own behaviour
(Esc stops, out-of-range numbers said, small images scaled by whole factors).
"""
import argparse
import atexit
import logging
import os
import signal
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from a GPU box

import fastapi  # noqa: E402
import gradio as gr  # noqa: E402

from glide.cli import DEVICE_HELP, DTYPE_HELP  # noqa: E402
from glide.errors import UserError  # noqa: E402
from glide.families import FAMILIES  # noqa: E402
from glide.precision import DTYPE_CHOICES, resolve_device  # noqa: E402
from glide.serving import options as serving  # noqa: E402
from glide.serving import settings_file  # noqa: E402
from glide.serving.backend import BackendOptions, create_backend  # noqa: E402
from glide.settings import LIBRARY_LIMITS, MIN_STEPS  # noqa: E402

from .api import add_api  # noqa: E402
from .context import Context  # noqa: E402
from .imaging import MAX_UPLOAD_BYTES  # noqa: E402
from .server import WebServer, create_app  # noqa: E402
from .service import DEMO_LIMITS, DemoService  # noqa: E402
from .tabs import CompareTab, InpaintTab, ModelPicker, TextToImageTab, UpscaleTab  # noqa: E402
from .tabs.compare import CSS as COMPARE_CSS  # noqa: E402
from .users import trusted_networks  # noqa: E402

PAGE_JS = (Path(__file__).parent / "page.js").read_text()
# Samples are small (32 px base): show their pixels sharp rather than blurred by the browser's scaling
# (demo/page.js scales the large ones by whole factors).
CSS = """
#preview img, #gallery img, #masked-input img, #inpaint-result img, #history img, #upscale-input img,
#upscale-result img, #base-gallery img
    { image-rendering: pixelated; }
.range-note { margin: 4px 0 0; font-size: var(--text-sm); color: var(--color-accent); }
/* Thumbnails stay thumbnail-sized: gradio gives a lone result (or history entry) the gallery's whole width. */
#gallery .grid-container, #history .grid-container
    { grid-template-columns: repeat(auto-fill, minmax(96px, 1fr)) !important; }
#masked-input img, #inpaint-result img { width: 100%; height: 100%; object-fit: contain; }
/* The progress bar's own words say the elapsed time and the time left for the whole job (widgets.follow):
   hide gradio's timer beside them, which restarts at every update. */
.wrap:has(.progress-level) .progress-text { display: none; }
/* Narrow screens (phones): the prompt and its button, then the results, then the other settings, so that
   pressing Generate shows its effect without scrolling past every control (layout: demo.tabs). */
@media (max-width: 720px) {
  .tab-row { flex-direction: column !important; }
  .tab-row > .controls { display: contents !important; }
  .tab-row .controls-main { order: 0; }
  .tab-row > .results { order: 1; min-width: 0 !important; width: 100%; }
  .tab-row .controls-main textarea { min-height: 4.2em; }  /* a prompt wraps here: show two lines of it */
  .tab-row .controls-more { order: 2; }
  .model-row { flex-direction: column !important; }
  button[role="tab"] { padding-left: 4px; padding-right: 4px; font-size: var(--text-sm); }  /* four tabs in a row */
}
""" + COMPARE_CSS   # each tab's own rules after the shared ones


def build_demo(service: DemoService, *, concurrency: int = 1, queue_size: int = 64) -> gr.Blocks:
    """The demo's Blocks, with its queue set up for a shared device."""
    described = service.registry.describe()
    # Requests wait in the service's scheduler, where compatible ones are batched: let enough of
    # them through gradio's queue at once for a full batch on every worker.
    device_events = dict(concurrency_limit=concurrency * service.limits.max_batch, concurrency_id="device")
    with gr.Blocks(title="GLIDE demo", delete_cache=(1800, 3600)) as demo:
        gr.Markdown("# GLIDE\nText-conditional diffusion with guidance ([paper](https://arxiv.org/abs/2112.10741)). "
                    "Images are PNGs that remember their settings: drop one on *Restore settings* (under the prompt), "
                    "or click one in the *History*, to restore them. Esc stops a running job.")
        gr.Markdown(service.hardware(), elem_id="hardware")
        picker = ModelPicker(service)
        ctx = Context(service, picker.model, described["step_rules"], described["guidance"], device_events)
        with gr.Tabs(overflow_behavior="wrap") as tabs:   # on a phone every tab stays in view, none in a menu
            with gr.Tab("Text to image", id="generate"):
                text_to_image = TextToImageTab(ctx)
            with gr.Tab("Inpainting", id="inpaint"):
                inpaint = InpaintTab(ctx)
            with gr.Tab("Compare", id="compare"):  # short labels: all four tabs fit on a phone
                compare = CompareTab(ctx)
            with gr.Tab("Upscale", id="upscale"):
                upscale = UpscaleTab(ctx)
        text_to_image.send_to(inpaint, tabs)
        text_to_image.send_to_upscale(upscale, tabs)
        picker.wire(demo, text_to_image.follow_defaults() + inpaint.follow_defaults() + compare.follow_defaults()
                    + upscale.follow_defaults())
        add_api(ctx)
    # Threads for the handlers: every request in flight holds one while it waits for its job.
    demo.max_threads = max(40, 2 * concurrency * service.limits.max_batch + 8)
    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    return demo


# ---------------------------------------------------------------------------------------------- command line
def parse_args(argv=None) -> argparse.Namespace:
    """The command line of `python app.py` (and of the `glide-demo` script)."""
    parser = argparse.ArgumentParser(description="The GLIDE Gradio demo")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (default $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=os.environ.get("GRADIO_SERVER_PORT", "7860"),
                        help="port (default $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--model", default="shapes", choices=sorted(FAMILIES), help="the model selected at start")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help=DTYPE_HELP)
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="replay each sampling step from a CUDA graph, captured once per batch shape (CUDA only)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="where glide-filtered's checkpoints are (default $GLIDE_CACHE_DIR or ~/.cache/glide)")
    parser.add_argument("--max-batch", type=int, default=DEMO_LIMITS.max_batch,
                        help=f"images per request and per batched run (default {DEMO_LIMITS.max_batch})")
    parser.add_argument("--max-steps", type=int, default=DEMO_LIMITS.max_steps,
                        help=f"sampling steps per stage (default {DEMO_LIMITS.max_steps})")
    parser.add_argument("--concurrency", type=int, default=1, help="sampling runs on the device at once")
    parser.add_argument("--queue-size", type=int, default=64, help="requests that may wait; more get 'queue full'")
    parser.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                        help="require a login (repeat for more users)")
    parser.add_argument("--outputs", type=Path, default=None,
                        help="keep the images made here (default: a temporary folder removed at exit)")
    parser.add_argument("--keep-outputs", type=float, default=3600.0, metavar="SECONDS",
                        help="images older than this are deleted, so a long-running server stays small (default 3600)")
    parser.add_argument("--shutdown-grace", type=float, default=30.0, metavar="SECONDS",
                        help="on SIGTERM or Ctrl-C, how long running requests may take to finish (default 30)")
    parser.add_argument("--max-per-user", type=int, default=4, metavar="N",
                        help="requests one user may have waiting (default 4), on either backend; a user is the "
                             "--auth login, else the client's address")
    parser.add_argument("--rate-limit", type=int, default=None, metavar="IMAGES",
                        help="images one user may ask for per minute (default: no limit)")
    parser.add_argument("--root-path", default="", metavar="/PATH",
                        help="the path a reverse proxy serves the demo under, e.g. /glide (the proxy strips it)")
    parser.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDRESS",
                        help="a reverse proxy (address or network) whose X-Forwarded-For header names the "
                             "client; repeat for more. Without it the header is ignored")
    settings_file.add_option(parser)
    parser.add_argument("--backend", choices=serving.BACKENDS, default="local",
                        help="local: sample in this process (default); ray: on a Ray Serve application")
    serving.add_options(parser)
    settings_file.apply(parser, argv)
    args = parser.parse_args(argv)
    for name, least in (("max_batch", 1), ("max_steps", MIN_STEPS), ("concurrency", 1), ("queue_size", 1),
                        ("max_per_user", 1)):
        if getattr(args, name) < least:
            parser.error(f"--{name.replace('_', '-')} must be at least {least}")
    if args.max_batch > LIBRARY_LIMITS.max_batch:
        parser.error(f"--max-batch must be at most {LIBRARY_LIMITS.max_batch}")
    if args.max_steps > LIBRARY_LIMITS.max_steps:
        parser.error(f"--max-steps must be at most {LIBRARY_LIMITS.max_steps}")
    try:
        device = resolve_device(args.device, args.dtype)
    except ValueError as exc:
        parser.error(f"--device: {exc}")
    if args.cuda_graphs and device.type != "cuda":
        parser.error(f"--cuda-graphs needs a CUDA device, not --device {args.device}")
    if any(":" not in a for a in args.auth):
        parser.error("--auth takes USER:PASS")
    if args.rate_limit is not None and args.rate_limit < 1:
        parser.error(f"--rate-limit must be at least 1 image a minute, not {args.rate_limit}")
    args.root_path = args.root_path.rstrip("/")
    if args.root_path and (not args.root_path.startswith("/") or any(c in args.root_path for c in " ?#")):
        parser.error(f"--root-path must be a path such as /glide, not {args.root_path!r}")
    try:
        args.trusted_proxy = trusted_networks(args.trusted_proxy)
    except UserError as exc:
        parser.error(str(exc))
    if args.backend == "ray":
        try:
            args.serve_config = serving.config_of(args, args.max_batch, args.dtype, args.checkpoint_dir)
        except UserError as exc:
            parser.error(str(exc))
    return args


def web_app(args: argparse.Namespace, service: DemoService, concurrency: int) -> fastapi.FastAPI:
    """The demo's Blocks for the command line `args`, mounted beside /healthz and /metrics (demo.server)."""
    demo = build_demo(service, concurrency=concurrency, queue_size=args.queue_size)
    return create_app(demo, service.backend, trusted_proxies=args.trusted_proxy, server_name=args.host, server_port=args.port,
                      auth=[tuple(a.split(":", 1)) for a in args.auth] or None, root_path=args.root_path or None,
                      allowed_paths=[str(service.out_dir)], max_file_size=MAX_UPLOAD_BYTES, show_error=False, css=CSS,
                      head=f"<script>{PAGE_JS}</script>", theme=gr.themes.Soft())


def main(argv=None) -> None:
    """Start the demo server; it runs until interrupted."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up requests, one line each
    log = logging.getLogger("glide.demo")
    backend = None   # the local one, which DemoService builds on its resolved device and precision
    if args.backend == "ray":
        backend = create_backend(BackendOptions(
            kind="ray", ray_address=args.ray_address, ray_cpus=args.ray_cpus, max_batch=args.max_batch,
            max_pending=args.queue_size, max_per_user=args.max_per_user, images_per_minute=args.rate_limit,
            deploy=args.serve_config if serving.deploys(args) else None))
        atexit.register(backend.close)   # a Ray this process started ends with it; an attached one keeps serving
    # On Ray each replica is a device's worth of concurrency: let a full batch through per replica.
    concurrency = (args.max_replicas or args.replicas or 1) if backend else args.concurrency
    service = DemoService(default_model=args.model, device=args.device, dtype=args.dtype,
                          checkpoint_dir=args.checkpoint_dir, cuda_graphs=args.cuda_graphs,
                          limits=replace(DEMO_LIMITS, max_batch=args.max_batch, max_steps=args.max_steps),
                          concurrency=args.concurrency, queue_size=args.queue_size, backend=backend,
                          max_per_user=args.max_per_user, images_per_minute=args.rate_limit,
                          out_dir=args.outputs, keep_outputs_s=args.keep_outputs)

    def restart(*_):
        """SIGTERM (a service manager, `kill`) or Ctrl-C: finish what runs within the grace period, tell everyone
        else the server is restarting, then close the server (exit handlers run; exit status 0). A second
        Ctrl-C stops at once."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        log.info("stopping: running requests get %g s to finish", args.shutdown_grace)
        service.shutdown(args.shutdown_grace)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, restart)
    signal.signal(signal.SIGINT, restart)
    if backend is None:
        service.warm_up()    # replicas load their own models
    server = WebServer(web_app(args, service, concurrency), args.host, args.port)
    try:
        server.start()
        log.info("serving on http://%s:%d%s/ (and /healthz, /metrics)", args.host, args.port, args.root_path)
        server.wait()
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None
    except KeyboardInterrupt:
        pass   # restart() has drained the backend: close the server and exit 0
    finally:
        server.stop()


if __name__ == "__main__":
    main()
