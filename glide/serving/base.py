"""The one interface front ends talk to, and the queueing both backends share.

A `Backend` takes jobs (`glide.serving.jobs.Job`) and runs them: `LocalBackend` on worker threads in
this process (the default, glide.serving.local), `RayBackend` on a Ray Serve application (several GPUs
or machines, glide.serving.ray_serve). Front ends build theirs with glide.serving.backend.create_backend
and never know which one they hold, as in vLLM's executors. Both queue their jobs here, in a FairQueue,
and feed the metrics where jobs enter (`submit`) and leave (`_finish`).
"""
import logging
import threading
import time
from typing import Dict, List, Optional, Protocol

from ..errors import Cancelled, QueueFull, ServerRestarting
from . import metrics
from .fair_queue import FairQueue
from .jobs import Job

log = logging.getLogger("glide.serving")

RESTARTING = "The server is restarting: please try again in a minute."
STOP_S = 10.0   # after a drain's grace period, how long a run told to stop may take to stop


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
        """{"waiting", "running", "runs"}: jobs waiting to start, jobs running, sampling runs made so far."""

    def health(self) -> Dict:
        """Whether it can serve now, for /healthz: {"healthy": bool, "backend": "local" or "ray", "problems":
        [why not, in words], "models": [the pipelines loaded, glide.pipeline.loaded_pipelines' rows], ...};
        the Ray backend adds its application's and replicas' state."""

    def device_memory(self) -> Dict[str, Dict[str, int]]:
        """Bytes held on each device, by where it is held ("local", or a Ray replica's name), for /metrics."""

    def drain(self, grace_s: float, stop_s: float = STOP_S) -> None:
        """Refuse new jobs, tell the waiting ones the server is restarting, give running ones `grace_s` seconds
        to finish, then stop them and wait up to `stop_s` more for them to end. Returns once every job has its
        answer: those still running then are answered ServerRestarting and left to end on their own."""

    def close(self) -> None:
        """Stop what the backend started (its threads; a Ray this process started); unusable after."""


class QueuedBackend:
    """What both backends share: jobs wait in a FairQueue behind one condition; once draining, new jobs are
    refused and waiting ones told the server is restarting. Subclasses keep their running jobs in
    `_running()`, start work when `submit` notifies the condition, and end every job with `_finish`."""

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

    def _finish(self, job: Job, result=None, error: Optional[BaseException] = None) -> None:
        """End `job` with its result or error (once: a job answered already stays as it was), and count it."""
        if job.finish(result, error):
            metrics.finished(job)

    def _drop_cancelled(self) -> None:
        """Cancelled jobs that never started leave the queue, their waiters told (under the lock)."""
        for job in self._pending.drop_cancelled():
            self._finish(job, error=Cancelled("stopped before it started"))

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
            self._finish(job, error=ServerRestarting(RESTARTING))

    def _wait_for_running(self, timeout_s: float) -> bool:
        """Wait (under the lock) until no job runs, or `timeout_s` seconds; whether none runs."""
        deadline = time.monotonic() + timeout_s
        while self._running():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._cond.wait(left)
        return True

    def _answer_the_rest(self) -> None:
        """The end of a drain's deadline: jobs still running are answered ServerRestarting (their runs, told
        to stop, end on their own; what they send afterwards is dropped)."""
        with self._cond:
            left = [job for job in self._running() if not job.done.is_set()]
        for job in left:
            log.warning("job %s did not stop within the shutdown deadline; answering its user now", job.id)
            self._finish(job, error=ServerRestarting(RESTARTING))
