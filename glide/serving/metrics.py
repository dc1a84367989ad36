"""What a server has done and holds, in Prometheus' text format, for whichever backend runs the jobs.

Fed by the backend, where jobs enter and leave it (both backends share those places:
glide.serving.base.QueuedBackend's `submit` and `_finish`), so the numbers are the front end's view: a
request's queue wait runs from its submission to its start (on Ray: its first step on a replica), its run
time from then to its result. What the backend holds now (jobs waiting and running, device memory) is read
from it when scraped:

    glide_requests_total{kind, outcome}      requests by kind and outcome: ok, cancelled, refused (a full
                                             queue, the rate limit), user_error (the request's fault),
                                             restarting, server_error (the server's trouble: the Ray
                                             cluster unreachable, out of device memory), error (a bug)
    glide_images_total{kind}                 images delivered
    glide_queue_wait_seconds{kind}           histogram: submitted -> started
    glide_run_seconds{kind}                  histogram: started -> finished (jobs that started)
    glide_queue_depth, glide_running_jobs    jobs waiting / running now
    glide_device_memory_bytes{device, where} memory the models and runs hold: CUDA's allocated bytes, or
                                             on a CPU the process's resident memory; `where` is "local"
                                             or the Ray replica's name

The process's own metrics (CPU, memory, open files) come with prometheus_client's default registry.
"""
import os
from typing import Dict, Optional, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from ..errors import Cancelled, QueueFull, ServerError, ServerRestarting, UserError
from .jobs import Job
from .results import Compared, Images

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: a shapes image takes ~1 s on a CPU, a GLIDE one up to minutes; a queue wait up to several minutes.
BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

REQUESTS = Counter("glide_requests", "Requests by kind and outcome", ["kind", "outcome"])
IMAGES = Counter("glide_images", "Images delivered", ["kind"])
QUEUE_WAIT = Histogram("glide_queue_wait_seconds", "From a request's submission to its start", ["kind"],
                       buckets=BUCKETS)
RUN_TIME = Histogram("glide_run_seconds", "From a request's start to its result", ["kind"], buckets=BUCKETS)


def outcome_of(error: Optional[BaseException]) -> str:
    """A request's outcome label from how it ended (None: it succeeded)."""
    if error is None:
        return "ok"
    if isinstance(error, Cancelled):
        return "cancelled"
    if isinstance(error, ServerRestarting):
        return "restarting"
    if isinstance(error, QueueFull):
        return "refused"
    if isinstance(error, UserError):
        return "user_error"
    if isinstance(error, ServerError):
        return "server_error"
    return "error"


def refused(kind: str, error: BaseException) -> None:
    """A request a backend did not take (full queue, rate limit, restarting)."""
    REQUESTS.labels(kind, outcome_of(error)).inc()


def finished(job: Job) -> None:
    """A job ended (its result or error set): its outcome, its images and how long it waited and ran."""
    REQUESTS.labels(job.kind, outcome_of(job.error)).inc()
    if job.error is None:
        made = job.result.count() if isinstance(job.result, (Images, Compared)) else len(job.prompts)
        IMAGES.labels(job.kind).inc(made)
    if job.started_at is not None:
        QUEUE_WAIT.labels(job.kind).observe(job.started_at - job.submitted_at)
        RUN_TIME.labels(job.kind).observe(job.finished_at - job.started_at)
    elif job.submitted_at is not None:     # ended while waiting: only its wait
        QUEUE_WAIT.labels(job.kind).observe(job.finished_at - job.submitted_at)


class Observed(Protocol):
    """What a scrape reads from a backend (glide.serving.base.Backend has both)."""

    def stats(self) -> Dict[str, int]: ...

    def device_memory(self) -> Dict[str, Dict[str, int]]: ...


class BackendCollector:
    """The backend's present state (queue depth, running jobs, device memory), read at each scrape."""

    def __init__(self, backend: Observed):
        self.backend = backend

    def collect(self):
        stats = self.backend.stats()
        depth = GaugeMetricFamily("glide_queue_depth", "Requests waiting for a device")
        depth.add_metric([], stats["waiting"])
        running = GaugeMetricFamily("glide_running_jobs", "Requests running (on Ray: sent to Serve)")
        running.add_metric([], stats["running"])
        memory = GaugeMetricFamily("glide_device_memory_bytes", "Memory held on each device (CUDA: allocated "
                                   "bytes; CPU: resident memory of the process)", labels=["device", "where"])
        for where, devices in self.backend.device_memory().items():
            for device, used in devices.items():
                memory.add_metric([device, where], used)
        return [depth, running, memory]


def render(backend: Observed) -> bytes:
    """The /metrics page: the counters of this process and `backend`'s present state."""
    present = CollectorRegistry()
    present.register(BackendCollector(backend))
    return generate_latest(REGISTRY) + generate_latest(present)


def memory_here() -> Dict[str, int]:
    """Bytes held on each device by this process: CUDA's allocated memory per GPU in use, and on a CPU the
    resident memory (Linux's /proc/self/statm; empty elsewhere)."""
    import torch

    used: Dict[str, int] = {}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index in range(torch.cuda.device_count()):
            used[f"cuda:{index}"] = torch.cuda.memory_allocated(index)
    try:
        with open("/proc/self/statm") as statm:
            used["cpu"] = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        pass
    return used
