"""The one interface front ends talk to, and the one place a backend is built.

A `Backend` takes jobs (`glide.serving.jobs.Job`) and runs them: `LocalBackend` on worker threads in
this process (the default), `RayBackend` on a Ray Serve application (several GPUs or machines). The
CLI and the demo build theirs with `create_backend(BackendOptions(...))` and never know which one
they hold, as in vLLM's executors.
"""
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Protocol, Union

from ..errors import QueueFull, ServerRestarting
from . import metrics
from .fair_queue import FairQueue
from .jobs import Job
from .options import ServeConfig

RESTARTING = "The server is restarting: please try again in a minute."


class Backend(Protocol):
    """What every backend does. `submit` returns the job, now queued (or raises QueueFull / ServerRestarting)."""

    def submit(self, job: Job) -> Job: ...

    def cancelled(self, job: Job) -> None:
        """Called by `job.cancel()`: stop its run if no other job needs it."""

    def position(self, job: Job) -> int:
        """How many jobs will be taken before this one (0 once it runs)."""

    def cancel_session(self, session: str) -> int:
        """Cancel every waiting or running job of one user; returns how many were cancelled."""

    def stats(self) -> Dict[str, int]:
        """{"waiting", "running", "runs"}: jobs queued, jobs running, sampling runs made so far."""

    def health(self) -> Dict:
        """Whether it can serve now, for /healthz: {"healthy": bool, "backend": "local" or "ray", "problems":
        [why not, in words], "models": [the pipelines loaded, glide.pipeline.loaded_pipelines' rows], ...};
        the Ray backend adds its application's and replicas' state."""

    def device_memory(self) -> Dict[str, Dict[str, int]]:
        """Bytes held on each device, by where it is held ("local", or a Ray replica's name), for /metrics."""

    def drain(self, grace_s: float) -> None:
        """Refuse new jobs, tell the waiting ones the server is restarting, give running ones `grace_s` seconds."""

    def close(self) -> None:
        """Release what the backend holds (a Ray this process started); the backend is unusable after."""


class QueuedBackend:
    """What both backends share: jobs wait in a FairQueue behind one condition; once draining, new jobs are
    refused and waiting ones told the server is restarting. Subclasses keep their running jobs in
    `_running()` and start work when `submit` notifies the condition."""

    def __init__(self, max_pending: int, max_per_user: int, images_per_minute: Optional[int] = None):
        self._pending = FairQueue(max_pending, max_per_user, images_per_minute)
        self._cond = threading.Condition()
        self._closing = False       # drain() began: no new jobs

    def _running(self) -> List[Job]:
        raise NotImplementedError

    def submit(self, job: Job) -> Job:
        with self._cond:
            try:
                if self._closing:
                    raise ServerRestarting(RESTARTING)
                self._pending.add(job)
            except (ServerRestarting, QueueFull) as refusal:
                metrics.refused(job.kind, refusal)
                raise
            job.submitted_at = time.monotonic()
            job._backend = self
            self._cond.notify_all()
        return job

    def cancel_session(self, session: str) -> int:
        with self._cond:
            jobs = [j for j in self._pending.jobs + self._running()
                    if j.session == session and not j.done.is_set() and not j.cancelled.is_set()]
        for job in jobs:
            job.cancel()
        return len(jobs)

    def position(self, job: Job) -> int:
        with self._cond:
            return self._pending.position(job)

    def _refuse_and_release_waiting(self) -> None:
        """The start of a drain: no new jobs; the waiting ones are told the server is restarting."""
        with self._cond:
            self._closing = True
            waiting, self._pending.jobs = self._pending.jobs, []
        for job in waiting:
            job.finish(error=ServerRestarting(RESTARTING))


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
        return ray_serve.RayBackend(handle, max_pending=options.max_pending, max_per_user=options.max_per_user,
                                    images_per_minute=options.images_per_minute,
                                    in_flight=2 * options.max_batch * replicas, owns_cluster=owned)
    raise ValueError(f"unknown backend {options.kind!r}; choose local or ray")
