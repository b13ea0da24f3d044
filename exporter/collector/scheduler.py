"""The daemon's periodic jobs on APScheduler: the handle of every job kept, runs that a shutdown may abandon."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from apscheduler.events import JobEvent
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from exporter.clock import Clock

# The shutdown (SIGTERM/SIGINT) ends within 2 s whatever MongoDB does (README). Of that, jobs running
# when it begins (refreshes, sums, counts, listings: reads only) get STOP_GRACE seconds to finish,
# counted from begin_stop(), while the HTTP requests drain; then they are abandoned.
STOP_GRACE = 0.3

Run = Callable[[], Awaitable[Any]]
PoolRun = Callable[[str], Awaitable[Any]]

# A job's second run comes at least this share of its interval after its first (never at once).
PHASE_MIN = 0.05


class PoolJob(StrEnum):
    """The periodic jobs of one pool."""

    REFRESH = "refresh"
    SUMS = "sums"
    UNDERPERFORMERS = "underperformers"


class Scheduler:
    """Runs jobs every so many seconds: never two runs of one job at once, missed runs coalesced, none dropped.

    Jobs are known by the handles `every()` returns, never by an id made of names.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.stopping = False
        self._aps: AsyncIOScheduler | None = None
        self._pools: dict[str, dict[PoolJob, Job]] = {}
        self._owners: dict[str, tuple[str, PoolJob]] = {}
        self._listeners: list[tuple[Callable[[JobEvent], None], int]] = []
        self._stop_began: float | None = None
        self.running: set[asyncio.Task[Any]] = set()

    def now(self) -> datetime:
        """The clock's time, as the scheduler takes it."""
        return datetime.fromtimestamp(self.clock.time(), UTC)

    def open(self) -> None:
        """A new scheduler, not running yet: jobs added now start with `start()`."""
        self.stopping = False
        self._stop_began = None
        self._aps = AsyncIOScheduler(timezone=UTC)
        for listener, mask in self._listeners:
            self._aps.add_listener(listener, mask)

    def start(self) -> None:
        """Start running the jobs (needs a running event loop)."""
        assert self._aps is not None
        self._aps.start()

    def listen(self, listener: Callable[[JobEvent], None], mask: int) -> None:
        """Call `listener` on the scheduler's events in `mask` (APScheduler's EVENT_* flags), also after a restart."""
        self._listeners.append((listener, mask))
        if self._aps is not None:
            self._aps.add_listener(listener, mask)

    def every(
        self,
        seconds: float,
        run: Run,
        *,
        name: str,
        first: datetime,
        jitter: float | None = None,
        phase: bool = False,
    ) -> Job | None:
        """Run `run` every `seconds` from `first` on (None once stopped: nothing is scheduled any more).

        `phase`: after the first run, the next one comes at a random point of the interval (see add_pool).
        """
        if self._aps is None:
            return None
        scheduled = _Run(self, run, seconds if phase else None)
        job = self._aps.add_job(
            scheduled.execute,
            IntervalTrigger(seconds=seconds, jitter=jitter, timezone=UTC),
            name=name,
            next_run_time=first,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        scheduled.job = job
        return job

    def add_pool(
        self, pool: str, runs: Mapping[PoolJob, tuple[float, PoolRun]], *, spread: float, jitter: float | None
    ) -> None:
        """A pool's jobs (each: its interval, what it runs, given the pool's name).

        The first refresh and sums pass come within `spread` seconds of now (the refresh goes first: see
        slots.Priority); the first underperformers' count at a random point of its first interval (the sums
        pass makes the pool's first count: collector.sums). After its first run, each job's next run comes at
        a random point of its interval, so that thousands of pools started together run spread over the
        interval, not in step. `jitter`: each later run's own (not the underperformers').
        """
        first = self.now() + timedelta(seconds=random.uniform(0, spread))  # noqa: S311
        jobs: dict[PoolJob, Job] = {}
        for kind, (seconds, run) in runs.items():
            counts = kind is PoolJob.UNDERPERFORMERS
            delay = random.uniform(PHASE_MIN, 1.0) * seconds if counts else 0.0  # noqa: S311
            job = self.every(
                seconds,
                _PoolCall(run, pool),
                name=f"{kind} {pool}",
                first=first + timedelta(seconds=delay),
                jitter=None if counts else jitter,
                phase=not counts,
            )
            if job is not None:
                jobs[kind] = job
                self._owners[job.id] = (pool, kind)
        if jobs:
            self._pools[pool] = jobs

    def jobs(self, pool: str) -> Mapping[PoolJob, Job]:
        """The pool's scheduled jobs (none before start() or after stop())."""
        return self._pools.get(pool, {})

    def owner(self, job_id: str) -> tuple[str, PoolJob] | None:
        """Which pool's which job an id (as in the scheduler's events) belongs to."""
        return self._owners.get(job_id)

    def remove_pool(self, pool: str) -> None:
        """Drop the pool's jobs."""
        for job in self._pools.pop(pool, {}).values():
            self._owners.pop(job.id, None)
            with contextlib.suppress(JobLookupError):
                job.remove()

    def begin_stop(self) -> None:
        """The shutdown has begun: start no job, let those running go on for STOP_GRACE (see stop())."""
        if self._stop_began is None:
            self._stop_began = time.monotonic()  # real time: the grace is waited for by asyncio
        self.stopping = True
        if self._aps is not None and self._aps.running:
            self._aps.pause()

    async def stop(self, also: Callable[[], Iterable[asyncio.Task[Any]]]) -> int:
        """Give running jobs STOP_GRACE from begin_stop(), then cancel them and the tasks `also` returns then
        (that are not done); how many were abandoned."""
        self.begin_stop()
        assert self._stop_began is not None
        aps, self._aps = self._aps, None
        running = {task for task in self.running if not task.done()}
        if running:
            await asyncio.wait(running, timeout=max(0.0, self._stop_began + STOP_GRACE - time.monotonic()))
        abandoned = [task for task in running if not task.done()]
        abandoned += [task for task in also() if not task.done()]
        for task in abandoned:
            task.cancel()
        if abandoned:
            # A cancelled job ends at its next await; nothing in the core waits on a cancelled call.
            await asyncio.wait(abandoned, timeout=STOP_GRACE)
        if aps is not None:
            aps.shutdown(wait=False)
        self._pools.clear()
        self._owners.clear()
        return len(abandoned)


class _PoolCall:
    """A pool's job as it runs: `run(pool)` (a small object: thousands of pools have three jobs each)."""

    __slots__ = ("pool", "run")

    def __init__(self, run: PoolRun, pool: str) -> None:
        self.run = run
        self.pool = pool

    def __call__(self) -> Awaitable[Any]:
        return self.run(self.pool)


class _Run:
    """One job as the scheduler runs it: known to stop(), which may abandon it quietly (no traceback); with
    `phase` (its interval), its next run moved to a random point of the interval once its first run ends."""

    __slots__ = ("job", "phase", "run", "scheduler")

    def __init__(self, scheduler: Scheduler, run: Run, phase: float | None) -> None:
        self.scheduler = scheduler
        self.run = run
        self.phase = phase
        self.job: Job | None = None

    async def execute(self) -> None:
        """Run the job once (APScheduler calls this)."""
        scheduler = self.scheduler
        if scheduler.stopping:
            return
        task = asyncio.current_task()
        assert task is not None
        scheduler.running.add(task)
        try:
            await self.run()
        except asyncio.CancelledError:
            if not scheduler.stopping:
                raise
            task.uncancel()  # abandoned by stop(): the scheduler would log the cancellation as a crash
        finally:
            scheduler.running.discard(task)
        if self.phase is not None and self.job is not None and not scheduler.stopping:
            seconds, self.phase = self.phase, None
            later = scheduler.now() + timedelta(seconds=random.uniform(PHASE_MIN, 1.0) * seconds)  # noqa: S311
            with contextlib.suppress(JobLookupError):
                self.job.modify(next_run_time=later)
