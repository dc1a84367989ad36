"""Jobs, and the local backend: a few worker threads share the device, batching compatible requests.

A `Job` is one user's request as a front end follows it: a stream of progress events, then the
result (or an error), and `cancel()`. Both serving backends hand out Jobs: `Scheduler` here runs
them in this process (the default), `glide.ray_serve.RayBackend` on a Ray Serve application. The
front end never knows which.

Why a scheduler of our own for the local backend rather than gradio's `batch=True`:

* gradio batches only calls of one event that arrive together, and cannot batch generator
  functions, which the UI needs to stream live previews; here UI and API requests of any kind
  meet in one queue, so batching and the device's concurrency are decided in one place;
* every image carries its own seed (the settings' per-image seeds), so any requests with equal
  settings apart from prompts and seeds share one sampling run, whatever their seeds;
* cancelling one user's request must not cancel the others sharing its run: a run stops only
  when every request in it has been cancelled; a single cancelled request just stops waiting;
* fairness: jobs are taken round-robin across user sessions, not first come first served, so
  one user who queues ten jobs does not hold another's single job behind all ten; and each
  session may have only `max_per_session` jobs waiting.

Nothing here knows about gradio or models: a `runner` does each batch's work (glide.runs.run_batch
on a pipeline). Batching happens naturally under load: while every worker is busy, requests
accumulate, and the next free worker takes the oldest one plus every compatible request.
"""
import itertools
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, Iterator, List, Optional

from .errors import UserError


class QueueFull(UserError):
    """Too many requests are waiting (in all, or from one user); the message says so in words a user understands."""


class ServerRestarting(UserError):
    """The server is shutting down: requests not finished by then get this, and new ones are refused."""


RESTARTING = "The server is restarting: please try again in a minute."


class JobCancelled(RuntimeError):
    """The job was cancelled by its user before it finished."""


@dataclass
class Progress:
    """One step of a run as one job sees it; `x0` is this job's slice of the x0 prediction, or None."""

    stage: str
    step: int
    total: int
    x0: Any = None


@dataclass
class Batch:
    """Jobs served by one run: image i is prompts[i] with seeds[i]; each job's images are contiguous."""

    kind: str
    jobs: List["Job"]
    prompts: List[str]
    seeds: List[int]


class Job:
    """One user's request: what to run, and the stream of progress and the result that come back.

    `prompts` and `seeds` are the request's images (a prompt and a seed each). Jobs with equal,
    non-None `batch_key` may share a run.
    """

    _ids = itertools.count()

    def __init__(self, kind: str, payload: Any, *, prompts: List[str], seeds: List[int],
                 batch_key: Optional[Hashable] = None, session: Optional[str] = None,
                 previews: bool = False):
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        self.id = next(self._ids)
        self.kind = kind
        self.payload = payload
        self.prompts = list(prompts)
        self.seeds = list(seeds)
        self.batch_key = batch_key
        self.session = session
        self.previews = previews
        self.offset = 0                 # where this job's items start in its run
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.convert: Optional[Callable[[Any], Any]] = None   # applied to the result once, by `outcome()`
        self._converted = False
        self.started = threading.Event()
        self.done = threading.Event()
        self.cancelled = threading.Event()
        self._events: "queue.Queue[Progress]" = queue.Queue()
        self._backend = None            # the backend that took it (Scheduler or glide.ray_serve.RayBackend)

    def cancel(self) -> None:
        """Stop waiting for this job; its run stops too if no other job still needs it."""
        self.cancelled.set()
        if self._backend is not None:
            self._backend.cancelled(self)

    def ahead(self) -> int:
        """How many jobs are waiting before this one (0 once it runs)."""
        return self._backend.position(self) if self._backend is not None else 0

    def report(self, progress: "Progress") -> None:
        """A backend's progress event for this job (dropped once the job is cancelled)."""
        if not self.cancelled.is_set():
            self._events.put(progress)

    def stream(self, poll: float = 0.1) -> Iterator[Optional[Progress]]:
        """Progress events until the job is done; yields None every `poll` seconds while nothing happens.

        Stops early (raising JobCancelled) once the job is cancelled. The caller then reads `outcome()`.
        """
        while True:
            if self.cancelled.is_set():
                raise JobCancelled("stopped")
            try:
                yield self._events.get(timeout=poll)
            except queue.Empty:
                if self.done.is_set() and self._events.empty():
                    return
                yield None

    def outcome(self, timeout: Optional[float] = None) -> Any:
        """The job's result, or its error raised here."""
        if not self.done.wait(timeout):
            raise TimeoutError("job not finished")
        if self.error is not None:
            raise self.error
        if self.convert is not None and not self._converted:
            self.result, self._converted = self.convert(self.result), True
        return self.result

    def wait(self) -> Any:
        """Block until the job is done (API calls, which stream nothing); cancelled jobs raise JobCancelled."""
        while not self.done.wait(0.1):
            if self.cancelled.is_set():
                raise JobCancelled("stopped")
        return self.outcome()


def progress_of(offset: int, count: int, previews: bool, stage: str, step: int, total: int, x0,
                preview_every: int) -> Progress:
    """One job's share of a run's progress: its slice of the x0 prediction every `preview_every` steps and
    on the last step (so the preview ends on the stage's final image), when it asked for previews."""
    part = None
    if previews and x0 is not None and (step % preview_every == 0 or step == total - 1):
        part = x0[offset:offset + count].detach().float().cpu().clone()
    return Progress(stage, step, total, part)


class FairQueue:
    """Jobs waiting for a device, taken round-robin across user sessions (the session served longest ago,
    or never, first; each session's jobs in arrival order), with a bound on all waiting jobs and on each
    session's. Not thread-safe: its owner holds a lock around every call."""

    def __init__(self, max_pending: int = 64, max_per_session: int = 4):
        if max_pending < 1 or max_per_session < 1:
            raise ValueError("max_pending and max_per_session must be at least 1")
        self.max_pending, self.max_per_session = max_pending, max_per_session
        self.jobs: List[Job] = []
        self._served: Dict[Optional[str], int] = {}   # session -> when it was last served (a tick count)
        self._ticks = itertools.count()

    def add(self, job: Job) -> None:
        live = [j for j in self.jobs if not j.cancelled.is_set()]
        if len(live) >= self.max_pending:
            raise QueueFull(f"The queue is full ({len(live)} requests waiting): please try again in a minute.")
        mine = sum(1 for j in live if j.session is not None and j.session == job.session)
        if mine >= self.max_per_session:
            raise QueueFull(f"You already have {mine} requests waiting: wait for one to finish (or press Stop) "
                            "before asking for more.")
        self.jobs.append(job)

    def drop_cancelled(self) -> None:
        """Cancelled jobs that never started leave the queue; their waiters are told."""
        for job in [j for j in self.jobs if j.cancelled.is_set()]:
            self.jobs.remove(job)
            job.error = JobCancelled("stopped before it started")
            job.done.set()

    def order(self) -> List[Job]:
        """The live jobs in the order they will be taken."""
        queues: Dict[Optional[str], List[Job]] = {}
        for job in self.jobs:
            if not job.cancelled.is_set():
                queues.setdefault(job.session, []).append(job)
        sessions = sorted(queues, key=lambda s: self._served.get(s, -1))   # stable: ties keep arrival order
        order = []
        while any(queues.values()):
            for session in sessions:
                if queues[session]:
                    order.append(queues[session].pop(0))
        return order

    def take(self, jobs: List[Job]) -> None:
        """`jobs` leave the queue to run; their sessions count as served now."""
        tick = next(self._ticks)
        for job in jobs:
            self.jobs.remove(job)
            self._served[job.session] = tick
            job.started.set()

    def position(self, job: Job) -> int:
        order = self.order()
        return order.index(job) if job in order else 0

    def waiting(self) -> int:
        return sum(1 for j in self.jobs if not j.cancelled.is_set())


class Backend:
    """What both backends share: jobs wait in a FairQueue behind one condition; once draining, new jobs are
    refused and waiting ones told the server is restarting. Subclasses keep their running jobs in
    `_running()` and start work when `submit` notifies the condition."""

    def __init__(self, max_pending: int, max_per_session: int):
        self._pending = FairQueue(max_pending, max_per_session)
        self._cond = threading.Condition()
        self._closing = False       # drain() began: no new jobs

    def _running(self) -> List[Job]:
        raise NotImplementedError

    def submit(self, job: Job) -> Job:
        with self._cond:
            if self._closing:
                raise ServerRestarting(RESTARTING)
            self._pending.add(job)
            job._backend = self
            self._cond.notify_all()
        return job

    def cancel_session(self, session: str) -> int:
        """Cancel every waiting or running job of one user session; returns how many were cancelled."""
        with self._cond:
            jobs = [j for j in self._pending.jobs + self._running()
                    if j.session == session and not j.done.is_set() and not j.cancelled.is_set()]
        for job in jobs:
            job.cancel()
        return len(jobs)

    def position(self, job: Job) -> int:
        """How many jobs will be taken before this one (0 once it runs)."""
        with self._cond:
            return self._pending.position(job)

    def _refuse_and_release_waiting(self) -> None:
        """The start of a drain: no new jobs; the waiting ones are told the server is restarting."""
        with self._cond:
            self._closing = True
            waiting, self._pending.jobs = self._pending.jobs, []
        for job in waiting:
            job.error = ServerRestarting(RESTARTING)
            job.done.set()


# A runner does one batch's work: runner(batch, report, should_stop) -> one result per job,
# where report(stage, step, total, x0) is the pipeline's progress callback for the whole run.
Runner = Callable[[Batch, Callable, Callable[[], bool]], List[Any]]


class Scheduler(Backend):
    """The local backend: worker threads that take jobs in arrival order, merging compatible ones (see the
    module docstring)."""

    def __init__(self, runner: Runner, *, workers: int = 1, max_batch: int = 8,
                 max_pending: int = 64, max_per_session: int = 4, preview_every: int = 5):
        if workers < 1 or max_batch < 1:
            raise ValueError("workers and max_batch must be at least 1")
        super().__init__(max_pending, max_per_session)
        self.runner = runner
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
    def submit(self, job: Job) -> Job:
        if len(job.prompts) > self.max_batch:
            raise ValueError(f"at most {self.max_batch} images per request")
        return super().submit(job)

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
                job.done.set()
