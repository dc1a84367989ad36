"""What front ends use: the backend their flags describe, built in one place.

The CLI, the demo and the benchmarks build theirs with `create_backend(BackendOptions(...))` and talk
to it through the `Backend` protocol (glide.serving.base), never knowing which one they hold. This
module sits on top of glide.serving: it imports both backends, and nothing in the package imports it.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from .base import Backend
from .options import ServeConfig

__all__ = ["Backend", "BackendOptions", "create_backend"]


@dataclass
class BackendOptions:
    """How to serve: the CLI's and the demo's flags, in one place.

    Local: pipelines on `device` in `dtype` ("auto" or a resolved glide.precision.Precision), `workers`
    threads, batches of up to `max_batch` images. Ray: attach to `ray_address` (None: start a local Ray
    with `ray_cpus`), deploying or updating the application with `deploy` when given, else using the
    running one. Both: at most `max_pending` jobs waiting, `max_per_user` of one user's, and, when
    `images_per_minute` is set, that many images a minute per user (glide.serving.fair_queue).
    """

    kind: str = "local"                     # "local" or "ray"
    device: str = "auto"
    dtype: Union[str, object] = "auto"
    checkpoint_dir: Optional[Path] = None
    cuda_graphs: bool = False
    workers: int = 1
    max_batch: int = 8
    max_pending: int = 64
    max_per_user: int = 4
    images_per_minute: Optional[int] = None
    preview_every: int = 5
    ray_address: Optional[str] = None
    ray_cpus: Optional[int] = None
    deploy: Optional[ServeConfig] = None


def create_backend(options: BackendOptions) -> Backend:
    """The backend `options` describe (see BackendOptions). Close it when done."""
    if options.kind == "local":
        from ..pipeline import load_pipeline
        from .local import LocalBackend

        def pipeline_of(model: str):
            return load_pipeline(model, options.device, options.dtype, options.checkpoint_dir,
                                 cuda_graphs=options.cuda_graphs)

        return LocalBackend(pipeline_of, workers=options.workers, max_batch=options.max_batch,
                            max_pending=options.max_pending, max_per_user=options.max_per_user,
                            images_per_minute=options.images_per_minute, preview_every=options.preview_every)
    if options.kind == "ray":
        from . import ray_serve

        owned = ray_serve.connect(options.ray_address, options.ray_cpus)
        try:
            handle = ray_serve.deploy(options.deploy) if options.deploy is not None else ray_serve.handle()
        except BaseException:
            if owned:
                ray_serve.shutdown()
            raise
        # Attached to an application of unknown size, 2 replicas is a guess.
        replicas = (options.deploy.max_replicas or options.deploy.replicas) if options.deploy else 2
        # What the replicas can run at once, and no more: the rest wait here, in the fair order (ray_serve).
        return ray_serve.RayBackend(handle, max_pending=options.max_pending, max_per_user=options.max_per_user,
                                    images_per_minute=options.images_per_minute,
                                    in_flight=options.max_batch * replicas, owns_cluster=owned)
    raise ValueError(f"unknown backend {options.kind!r}; choose local or ray")
