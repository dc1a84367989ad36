"""The waiting room in front of a device: jobs taken round-robin across users, with bounds.

Fairness: jobs are taken round-robin across sessions (a user), not first come first served, so one
user who queues ten jobs does not hold another's single job behind all ten; each session may have
only `max_per_session` jobs waiting, and all sessions together `max_pending`.
"""
import itertools
from typing import Dict, List, Optional

from ..errors import Cancelled, QueueFull
from .jobs import Job


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
            job.error = Cancelled("stopped before it started")
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
