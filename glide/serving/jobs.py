"""Jobs: one user's request as a front end follows it, whichever backend runs it.

A job carries a typed payload — `Generate`, `Inpaint`, `Upsample` or `Compare`, each holding validated
settings (and the pictures it works on: the picture and mask, the images to upsample) — and gives back a
stream of `Progress` events, then the result (or an error), with `cancel()` at any time. The payload says which
images the job makes (a prompt and a seed each) and which other jobs may share its sampling run
(equal `batch_key`).
"""
import itertools
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, List, Optional, Protocol, Tuple

from PIL import Image

from ..errors import Cancelled
from ..settings import ComparisonSettings, GenerationSettings


# ------------------------------------------------------------------------------------------ payloads
class Payload(Protocol):
    """What a job asks for: its kind, its images (a prompt and a seed each), and who may share its run."""

    kind: ClassVar[str]

    @property
    def prompts(self) -> Tuple[str, ...]: ...

    @property
    def seeds(self) -> Tuple[int, ...]: ...

    def batch_key(self) -> Optional[str]: ...


@dataclass(frozen=True)
class _ImagesOf:
    """A payload whose images are those of its settings (of the payload's own mode)."""

    settings: GenerationSettings
    kind: ClassVar[str]

    def __post_init__(self):
        if self.settings.mode != self.kind:
            raise ValueError(f"a {type(self).__name__} job needs settings of mode {self.kind!r}, "
                             f"got {self.settings.mode!r}")

    @property
    def prompts(self) -> Tuple[str, ...]:
        return self.settings.prompts

    @property
    def seeds(self) -> Tuple[int, ...]:
        return self.settings.seeds

    @property
    def model(self) -> str:
        return self.settings.model


@dataclass(frozen=True)
class Generate(_ImagesOf):
    """Text to image (from `init_image` when the settings start from one). Requests with equal settings but for
    prompts and seeds share one sampling run."""

    init_image: Optional[Image.Image] = None
    kind: ClassVar[str] = "generate"

    def batch_key(self) -> Optional[str]:
        return self.settings.batch_key()


@dataclass(frozen=True)
class Inpaint(_ImagesOf):
    """Replace the masked region of `image` (mask: white = edit). Each edit has its own picture, so it runs alone."""

    image: Image.Image
    mask: Image.Image
    kind: ClassVar[str] = "inpaint"

    def batch_key(self) -> Optional[str]:
        return None


@dataclass(frozen=True)
class Upsample(_ImagesOf):
    """Super-resolve given `images` (one per prompt) with the upsampler; each upload is its own, so it runs alone."""

    images: Tuple[Image.Image, ...]
    kind: ClassVar[str] = "upsample"

    def batch_key(self) -> Optional[str]:
        return None


@dataclass(frozen=True)
class Compare:
    """One prompt under several guidance strategies (and a scale sweep) over the same seeds; runs alone, one
    batch over its seeds per strategy and scale."""

    compared: ComparisonSettings
    kind: ClassVar[str] = "compare"

    @property
    def prompts(self) -> Tuple[str, ...]:
        return self.compared.base.prompts

    @property
    def seeds(self) -> Tuple[int, ...]:
        return self.compared.seeds

    @property
    def model(self) -> str:
        return self.compared.base.model

    def batch_key(self) -> Optional[str]:
        return None


# ------------------------------------------------------------------------------------------ progress
@dataclass
class Progress:
    """One step of a run as one job sees it; `x0` is this job's slice of the x0 prediction, or None."""

    stage: str
    step: int
    total: int
    x0: Any = None


def progress_of(offset: int, count: int, previews: bool, stage: str, step: int, total: int, x0,
                preview_every: int) -> Progress:
    """One job's share of a run's progress: its slice of the x0 prediction every `preview_every` steps and
    on the last step (so the preview ends on the stage's final image), when it asked for previews."""
    part = None
    if previews and x0 is not None and (step % preview_every == 0 or step == total - 1):
        part = x0[offset:offset + count].detach().float().cpu().clone()
    return Progress(stage, step, total, part)


# ------------------------------------------------------------------------------------------ jobs
class Job:
    """One user's request: its payload, and the stream of progress and the result that come back.

    `user` is whom the request is counted against (fairness, the per-user cap and rate limit): the
    logged-in user or the client's address, so that one user's browser tabs and API clients count as
    one; without it, the `session`. `session` is one browser tab or API client: what its Stop button
    cancels. `previews` asks for x0 previews in the progress events.
    """

    _ids = itertools.count()

    def __init__(self, payload: Payload, *, session: Optional[str] = None, user: Optional[str] = None,
                 previews: bool = False):
        self.id = next(self._ids)
        self.payload = payload
        self.kind = payload.kind
        self.prompts: List[str] = list(payload.prompts)
        self.seeds: List[int] = list(payload.seeds)
        self.batch_key = payload.batch_key()
        self.session = session
        self.user = user if user is not None else session
        self.previews = previews
        self.offset = 0                 # where this job's items start in its run
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.convert: Optional[Callable[[Any], Any]] = None   # applied to the result once, by `outcome()`
        self._converted = False
        self.started = threading.Event()
        self.done = threading.Event()
        self.cancelled = threading.Event()
        self.answered = threading.Event()   # its front end has read its outcome, or stopped waiting for it
        # time.monotonic() when a backend took it, when it started running, when it ended (metrics)
        self.submitted_at: Optional[float] = None
        self.started_at: Optional[float] = None
        self.finished_at: Optional[float] = None
        self._events: "queue.Queue[Progress]" = queue.Queue()
        self._backend = None            # the backend that took it
        self._ending = threading.Lock()

    def start(self) -> None:
        """A backend began running it (left the queue)."""
        self.started_at = time.monotonic()
        self.started.set()

    def finish(self, result: Any = None, error: Optional[BaseException] = None) -> bool:
        """The one way a job ends, with its result or its error (neither: a RuntimeError), once: its waiter is
        woken. Returns False, changing nothing, when it had already ended (a run that outlived the deadline of
        a drain, which answered its users meanwhile); the backend counts the job in the metrics when True."""
        with self._ending:
            if self.done.is_set():
                return False
            if result is None and error is None:
                error = RuntimeError("the request ended without a result")
            self.result, self.error, self.finished_at = result, error, time.monotonic()
            self.done.set()
        return True

    def cancel(self) -> None:
        """Stop waiting for this job; its run stops too if no other job still needs it."""
        self.cancelled.set()
        self.answered.set()
        if self._backend is not None:
            self._backend.cancelled(self)

    def ahead(self) -> int:
        """How many jobs are waiting before this one (0 once it runs)."""
        return self._backend.position(self) if self._backend is not None else 0

    def running_before(self) -> int:
        """How many jobs are running while this one waits (0 once it runs): with `ahead()`, what it waits for."""
        if self._backend is None or self.started.is_set():
            return 0
        return self._backend.stats()["running"]

    def report(self, progress: Progress) -> None:
        """A backend's progress event for this job (dropped once the job is cancelled)."""
        if not self.cancelled.is_set():
            self._events.put(progress)

    def stream(self, poll: float = 0.1) -> Iterator[Optional[Progress]]:
        """Progress events until the job is done; yields None every `poll` seconds while nothing happens.

        Stops early (raising Cancelled) once the job is cancelled. The caller then reads `outcome()`.
        """
        while True:
            if self.cancelled.is_set():
                raise Cancelled("stopped")
            try:
                yield self._events.get(timeout=poll)
            except queue.Empty:
                if self.done.is_set() and self._events.empty():
                    return
                yield None

    def outcome(self, timeout: Optional[float] = None) -> Any:
        """The job's result (converted by `convert` the first time), or its error raised here; once this returns
        or raises, the job counts as answered."""
        if not self.done.wait(timeout):
            raise TimeoutError("job not finished")
        try:
            if self.error is not None:
                raise self.error
            if self.convert is not None and not self._converted:
                self.result, self._converted = self.convert(self.result), True
            return self.result
        finally:
            self.answered.set()

    def wait(self, still_wanted: Callable[[], bool] = lambda: True, poll: float = 0.1) -> Any:
        """Block until the job is done (API calls, which stream nothing) and return its outcome. Raises Cancelled
        once it is cancelled, or once `still_wanted()` says nobody waits for it any more (then cancels it)."""
        while not self.done.wait(poll):
            if not still_wanted():
                self.cancel()
            if self.cancelled.is_set():
                raise Cancelled("stopped")
        return self.outcome()


@dataclass
class Batch:
    """Jobs served by one run: image i is prompts[i] with seeds[i]; each job's images are contiguous."""

    kind: str
    jobs: List[Job]
    prompts: List[str]
    seeds: List[int]
