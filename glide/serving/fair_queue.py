"""The waiting room in front of a device: jobs taken round-robin across users, with bounds.

Fairness: jobs are taken round-robin across users (`Job.user`: the logged-in name or the client's
address, so five browser tabs or five API clients of one user are one user), not first come first
served, so one user who queues ten jobs does not hold another's single job behind all ten; each
user may have only `max_per_user` jobs waiting, all users together `max_pending`, and, when
`images_per_minute` is set, each user may ask for only that many images in any minute.

A job waits until it starts running, wherever it waits: here, or, once taken without starting
(`take(..., started=False)`: the Ray backend sends it to Serve, where it may queue at a replica), there
until its backend calls `job.start()`. It counts against its user's cap all that time.

What the queue keeps about a user lasts only while it matters: their turn while they have jobs waiting,
their images while they are in the last minute. A user with nothing waiting is forgotten, so a long-running
server remembers as many users as are waiting, not every address it ever saw; their next job counts as a
newcomer's, which round-robin would serve next anyway.
"""
import itertools
import math
import time
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

from ..errors import QueueFull, RateLimited
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
        self.jobs: List[Job] = []                     # waiting here, in arrival order
        self._elsewhere: List[Job] = []               # taken, not started yet (waiting in the backend's executor)
        self._served: Dict[Optional[str], int] = {}   # user with jobs waiting -> when last served (a tick count)
        self._ticks = itertools.count()
        self._asked: Dict[str, Deque[Tuple[float, int]]] = {}   # user -> (when, images) of the last minute
        self._clock = clock

    def _waiting(self) -> List[Job]:
        """Every job that has not started, here or elsewhere, and is still wanted."""
        self._elsewhere = [j for j in self._elsewhere if not (j.started.is_set() or j.done.is_set())]
        return [j for j in self.jobs + self._elsewhere if not j.cancelled.is_set()]

    def add(self, job: Job) -> None:
        live = self._waiting()
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
        self._forget_the_last_minute(now)
        asked = self._asked.setdefault(user, deque())
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

    def _forget_the_last_minute(self, now: float) -> None:
        """Requests older than the rate window leave every user's count; users with none left, the queue."""
        for user in list(self._asked):
            asked = self._asked[user]
            while asked and asked[0][0] <= now - RATE_WINDOW_S:
                asked.popleft()
            if not asked:
                del self._asked[user]

    def drop_cancelled(self) -> List[Job]:
        """Cancelled jobs that never started leave the queue; returns them (their backend tells their waiters)."""
        dropped = [j for j in self.jobs if j.cancelled.is_set()]
        self.jobs = [j for j in self.jobs if not j.cancelled.is_set()]
        return dropped

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

    def take(self, jobs: List[Job], started: bool = True) -> None:
        """`jobs` leave the queue; their users count as served now. `started`: they run now; else they wait in
        the backend's executor (and count against their users' caps) until the backend calls `job.start()`."""
        tick = next(self._ticks)
        for job in jobs:
            self.jobs.remove(job)
            self._served[job.user] = tick
            if started:
                job.start()
            else:
                self._elsewhere.append(job)
        waiting = {j.user for j in self._waiting()}
        for user in [u for u in self._served if u not in waiting]:
            del self._served[user]

    def position(self, job: Job) -> int:
        order = self.order()
        return order.index(job) if job in order else 0

    def waiting(self) -> int:
        """Jobs waiting to start, here or elsewhere."""
        return len(self._waiting())
