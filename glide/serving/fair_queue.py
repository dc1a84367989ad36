"""The waiting room in front of a device: jobs taken round-robin across users, with bounds.

Fairness: jobs are taken round-robin across users (`Job.user`: the logged-in name or the client's
address, so five browser tabs or five API clients of one user are one user), not first come first
served, so one user who queues ten jobs does not hold another's single job behind all ten; each
user may have only `max_per_user` jobs waiting, all users together `max_pending`, and, when
`images_per_minute` is set, each user may ask for only that many images in any minute.
"""
import itertools
import math
import time
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

from ..errors import Cancelled, QueueFull, RateLimited
from .jobs import Job

RATE_WINDOW_S = 60.0


class FairQueue:
    """Jobs waiting for a device, taken round-robin across users (the user served longest ago, or never,
    first; each user's jobs in arrival order), with a bound on all waiting jobs, on each user's, and
    optionally on each user's images per minute. Jobs of no known user (None) are neither capped nor
    rate-limited. Not thread-safe: its owner holds a lock around every call."""

    def __init__(self, max_pending: int = 64, max_per_user: int = 4, images_per_minute: Optional[int] = None,
                 clock=time.monotonic):
        if max_pending < 1 or max_per_user < 1 or (images_per_minute is not None and images_per_minute < 1):
            raise ValueError("max_pending, max_per_user and images_per_minute must be at least 1")
        self.max_pending, self.max_per_user, self.images_per_minute = max_pending, max_per_user, images_per_minute
        self.jobs: List[Job] = []
        self._served: Dict[Optional[str], int] = {}   # user -> when it was last served (a tick count)
        self._ticks = itertools.count()
        self._asked: Dict[str, Deque[Tuple[float, int]]] = {}   # user -> (when, images) of the last minute
        self._clock = clock

    def add(self, job: Job) -> None:
        live = [j for j in self.jobs if not j.cancelled.is_set()]
        if len(live) >= self.max_pending:
            raise QueueFull(f"The queue is full ({len(live)} requests waiting): please try again in a minute.")
        mine = sum(1 for j in live if j.user is not None and j.user == job.user)
        if mine >= self.max_per_user:
            raise QueueFull(f"You already have {mine} requests waiting: wait for one to finish (or press Stop) "
                            "before asking for more.")
        if self.images_per_minute is not None and job.user is not None:
            self._charge(job.user, len(job.prompts))
        self.jobs.append(job)

    def _charge(self, user: str, images: int) -> None:
        """Count `images` against `user`'s last minute, or raise RateLimited saying when they would fit."""
        now = self._clock()
        asked = self._asked.setdefault(user, deque())
        while asked and asked[0][0] <= now - RATE_WINDOW_S:
            asked.popleft()
        used = sum(n for _, n in asked)
        if used + images > self.images_per_minute:
            # The earliest moment enough of the window's images have aged out for this request to fit.
            freed, wait = used + images - self.images_per_minute, RATE_WINDOW_S
            for when, n in asked:
                freed -= n
                if freed <= 0:
                    wait = when + RATE_WINDOW_S - now
                    break
            raise RateLimited(f"This server makes at most {self.images_per_minute} images a minute per user and you "
                              f"asked for {used} in the last minute: try again in {max(1, math.ceil(wait))} s"
                              + (" (or ask for fewer images)." if images > 1 else "."))
        asked.append((now, images))

    def drop_cancelled(self) -> None:
        """Cancelled jobs that never started leave the queue; their waiters are told."""
        for job in [j for j in self.jobs if j.cancelled.is_set()]:
            self.jobs.remove(job)
            job.finish(error=Cancelled("stopped before it started"))

    def order(self) -> List[Job]:
        """The live jobs in the order they will be taken."""
        queues: Dict[Optional[str], List[Job]] = {}
        for job in self.jobs:
            if not job.cancelled.is_set():
                queues.setdefault(job.user, []).append(job)
        users = sorted(queues, key=lambda u: self._served.get(u, -1))   # stable: ties keep arrival order
        order = []
        while any(queues.values()):
            for user in users:
                if queues[user]:
                    order.append(queues[user].pop(0))
        return order

    def take(self, jobs: List[Job]) -> None:
        """`jobs` leave the queue to run; their users count as served now."""
        tick = next(self._ticks)
        for job in jobs:
            self.jobs.remove(job)
            self._served[job.user] = tick
            job.start()

    def position(self, job: Job) -> int:
        order = self.order()
        return order.index(job) if job in order else 0

    def waiting(self) -> int:
        return sum(1 for j in self.jobs if not j.cancelled.is_set())
