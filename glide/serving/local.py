"""The local backend: a few worker threads in this process share the device, batching compatible requests.

Why our own workers rather than gradio's `batch=True`:

* gradio batches only calls of one event that arrive together, and cannot batch generator
  functions, which the UI needs to stream live previews; here UI and API requests of any kind
  meet in one queue, so batching and the device's concurrency are decided in one place;
* every image carries its own seed (the settings' per-image seeds), so any requests with equal
  settings apart from prompts and seeds share one sampling run, whatever their seeds;
* cancelling one user's request must not cancel the others sharing its run: a run stops only
  when every request in it has been cancelled; a single cancelled request just stops waiting;
* fairness across users and the per-user cap come from the FairQueue (glide.serving.fair_queue).

Nothing here knows about gradio or models: a `runner` does each batch's work (by default
glide.serving.batches.run_batch on the pipelines). Batching happens naturally under load: while every
worker is busy, requests accumulate, and the next free worker takes the oldest one plus every
compatible request.
"""
import itertools
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from ..errors import ServerRestarting
from .base import RESTARTING, STOP_S, QueuedBackend
from .batches import batch_runner
from .jobs import Batch, Job, progress_of
from .metrics import memory_here

# A runner does one batch's work: runner(batch, report, should_stop) -> one result per job,
# where report(stage, step, total, x0) is the pipeline's progress callback for the whole run.
Runner = Callable[[Batch, Callable, Callable[[], bool]], List[Any]]


class LocalBackend(QueuedBackend):
    """The local backend: worker threads that take jobs in arrival order, merging compatible ones (see the
    module docstring)."""

    def __init__(self, pipeline_of: Optional[Callable] = None, *, runner: Optional[Runner] = None, workers: int = 1,
                 max_batch: int = 8, max_pending: int = 64, max_per_user: int = 4, images_per_minute: Optional[int] = None,
                 preview_every: int = 5):
        """Runs each batch on the pipelines `pipeline_of(model)` gives, or with a `runner` of its own (tests)."""
        if workers < 1 or max_batch < 1:
            raise ValueError("workers and max_batch must be at least 1")
        super().__init__(max_pending, max_per_user, images_per_minute)
        if (pipeline_of is None) == (runner is None):
            raise ValueError("give pipeline_of or runner")
        self.runner = runner or batch_runner(pipeline_of)
        self.max_batch = max_batch
        self.preview_every = preview_every
        self._active: List[Job] = []
        self._stopping = False      # the grace period is over: running runs stop and report the restart
        self._closed = False        # close(): the workers end
        self.runs = 0  # how many sampling runs were made (tests check batching through it)
        self._threads = [threading.Thread(target=self._work, name=f"demo-worker-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ public
    def _running(self) -> List[Job]:
        return self._active

    def drain(self, grace_s: float, stop_s: float = STOP_S) -> None:
        """Shut down: refuse new jobs, fail the waiting ones with ServerRestarting, let running runs finish
        for up to `grace_s` seconds, then stop them (at their next step) and fail their jobs with
        ServerRestarting; a run that has not stopped `stop_s` seconds later is left to end on its own."""
        self._refuse_and_release_waiting()
        with self._cond:
            if not self._wait_for_running(grace_s):
                self._stopping = True    # runs still going stop at their next step
                self._wait_for_running(stop_s)
        self._answer_the_rest()

    def stats(self) -> Dict[str, int]:
        with self._cond:
            return {"waiting": self._pending.waiting(),
                    "running": len(self._active), "runs": self.runs}

    def health(self) -> Dict:
        """Healthy while every worker thread lives and no drain has begun; the models: those loaded in this
        process."""
        from ..pipeline import loaded_pipelines

        problems = [f"worker {t.name} has stopped" for t in self._threads if not t.is_alive()]
        if self._closing:
            problems.append("shutting down")
        return {"healthy": not problems, "backend": "local", "problems": problems, "models": loaded_pipelines(),
                **self.stats()}

    def device_memory(self) -> Dict[str, Dict[str, int]]:
        return {"local": memory_here()}

    def cancelled(self, job: Job) -> None:
        """A job was cancelled: wake the workers, which drop it or stop its run if nobody else needs it."""
        with self._cond:
            self._cond.notify_all()

    def close(self, stop_s: float = STOP_S) -> None:
        """End the worker threads: waiting jobs are told the server is restarting, running runs stop at their
        next step; returns when the workers have ended, or after `stop_s` seconds (a run that never reaches
        its next step keeps its thread, a daemon, until it does)."""
        self._refuse_and_release_waiting()
        with self._cond:
            self._stopping = self._closed = True
            self._cond.notify_all()
        deadline = time.monotonic() + stop_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._answer_the_rest()

    # ------------------------------------------------------------------ internals
    def _work(self):
        while True:
            with self._cond:
                batch = self._next_batch()
                while batch is None:
                    if self._closed:
                        return
                    self._cond.wait()
                    batch = self._next_batch()
                self._active.extend(batch.jobs)
                self.runs += 1
            try:
                self._run(batch)
            finally:
                with self._cond:
                    for job in batch.jobs:
                        self._active.remove(job)
                    self._cond.notify_all()   # drain() waits for running jobs

    def _next_batch(self) -> Optional[Batch]:
        """The next job in the fair order and every pending job that can share its run (under the lock)."""
        self._drop_cancelled()
        order = self._pending.order()
        if not order:
            return None
        first = order[0]
        chosen, size = [first], len(first.prompts)
        if first.batch_key is not None:
            for job in order[1:]:  # in the fair order, as many compatible jobs as fit
                if job.batch_key == first.batch_key and size + len(job.prompts) <= self.max_batch:
                    chosen.append(job)
                    size += len(job.prompts)
        self._pending.take(chosen)
        prompts, seeds = [], []
        for job in chosen:
            job.offset = len(prompts)
            prompts += job.prompts
            seeds += job.seeds
        return Batch(first.kind, chosen, prompts, seeds)

    def _run(self, batch: Batch):
        jobs = batch.jobs

        def report(stage, step, total, x0):
            for job in jobs:
                if not job.cancelled.is_set():
                    job.report(progress_of(job.offset, len(job.prompts), job.previews, stage, step, total, x0,
                                           self.preview_every))

        def should_stop() -> bool:
            return self._stopping or all(job.cancelled.is_set() for job in jobs)

        try:
            results = list(self.runner(batch, report, should_stop))
        except Exception as exc:  # noqa: BLE001 - handed to every waiting job, re-raised in its thread
            results = [ServerRestarting(RESTARTING) if self._stopping else exc] * len(jobs)
        # One result per job, or the exception it alone failed with (e.g. its image did not fit); a job the
        # runner gave nothing for ends with "no result" (Job.finish).
        for job, result in itertools.zip_longest(jobs, results[:len(jobs)]):
            if isinstance(result, BaseException):
                self._finish(job, error=result)
            else:
                self._finish(job, result)
