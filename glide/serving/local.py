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
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from ..errors import ServerRestarting
from .backend import RESTARTING, QueuedBackend
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
        self.runs = 0  # how many sampling runs were made (tests check batching through it)
        self._threads = [threading.Thread(target=self._work, name=f"demo-worker-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ public
    def _running(self) -> List[Job]:
        return self._active

    def drain(self, grace_s: float) -> None:
        """Shut down: refuse new jobs, fail the waiting ones with ServerRestarting, let running runs finish
        for up to `grace_s` seconds, then fail (and stop) those too."""
        self._refuse_and_release_waiting()
        deadline = time.monotonic() + grace_s
        with self._cond:
            while self._active and time.monotonic() < deadline:
                self._cond.wait(max(0.0, min(0.2, deadline - time.monotonic())))
            self._stopping = bool(self._active)   # runs still going stop at their next step
            while self._active:
                self._cond.wait(0.2)

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

    def close(self) -> None:
        """Nothing to release: the workers are daemon threads."""

    # ------------------------------------------------------------------ internals
    def _work(self):
        while True:
            with self._cond:
                batch = self._next_batch()
                while batch is None:
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
        self._pending.drop_cancelled()
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
            results = self.runner(batch, report, should_stop)
            for job, result in zip(jobs, results):
                if isinstance(result, BaseException):   # this job's alone (e.g. its image did not fit)
                    job.error = result
                else:
                    job.result = result
        except Exception as exc:  # noqa: BLE001 - handed to every waiting job, re-raised in its thread
            for job in jobs:
                job.error = ServerRestarting(RESTARTING) if self._stopping else exc
        finally:
            for job in jobs:
                if job.result is None and job.error is None:
                    job.error = RuntimeError("the sampling run ended without a result")
                job.finish()
