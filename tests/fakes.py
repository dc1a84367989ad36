"""Stand-ins shared by the backends' tests."""
import time
from dataclasses import dataclass
from typing import ClassVar

from glide.serving.jobs import Progress


@dataclass(frozen=True)
class Tag:
    """A stand-in job payload: a label the fake runner reads, and the images it stands for."""

    label: object
    prompts: tuple = ("p",)
    seeds: tuple = (0,)
    key: object = None
    kind: ClassVar[str] = "generate"

    def batch_key(self):
        return self.key


class FakeStream:
    """One request's response stream: a step every 20 ms after `start_s`, the result after `steps`; once
    cancelled it ends `cancel_takes_s` later (the round trip to the replica), unless `ignores_cancel`."""

    def __init__(self, steps: int, start_s: float, cancel_takes_s: float, ignores_cancel: bool):
        self.steps, self.start_s, self.cancel_takes_s, self.ignores_cancel = steps, start_s, cancel_takes_s, ignores_cancel
        self.cancelled_at, self.step, self.begun = None, 0, time.monotonic()

    def cancel(self):
        self.cancelled_at = self.cancelled_at or time.monotonic()

    def __iter__(self):
        return self

    def __next__(self):
        from ray.serve.exceptions import RequestCancelledError

        time.sleep(max(0.02, self.begun + self.start_s - time.monotonic()))
        if (self.cancelled_at is not None and not self.ignores_cancel
                and time.monotonic() >= self.cancelled_at + self.cancel_takes_s):
            raise RequestCancelledError()
        self.step += 1
        if self.step <= self.steps:
            return ("progress", Progress("base", self.step - 1, self.steps))
        if self.step == self.steps + 1:
            return ("result", "images", "fake:1")
        raise StopIteration


class FakeServe:
    """A stand-in for the Serve application's handle (`handle.options(stream=True).run.remote(request)`)."""

    def __init__(self, steps=10_000, start_s=0.0, cancel_takes_s=0.3, ignores_cancel=False):
        self.make = lambda: FakeStream(steps, start_s, cancel_takes_s, ignores_cancel)
        self.streams = []

    def options(self, **_):
        return self

    @property
    def run(self):
        return self

    def remote(self, request):
        self.streams.append(self.make())
        return self.streams[-1]
