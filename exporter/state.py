"""One pool's state at run time: its definition, its client and the outcome of its jobs (refresh, sums)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from exporter.clock import SYSTEM_CLOCK, Clock
from exporter.config import PoolDefinition
from exporter.core import MongoSessions, SessionPoolError, Statistics, Sums, budget
from exporter.history import StatesHistory


@dataclass
class Underperformers:
    """The last count of a pool's underperforming sessions, and what it compared against."""

    count: int
    threshold: float | None
    pool_ratio: float | None
    time: float


@dataclass
class Outcome:
    """What a job's runs came to so far: when it last succeeded, and why its last run failed (if it did)."""

    success: float | None = None  # Unix time of the last success
    success_monotonic: float | None = None
    error: str | None = None
    # The error without the step that met it: a new cause is logged, the same one again is not.
    cause: str | None = None

    def age(self, clock: Clock) -> float | None:
        """Seconds since the last success, None before the first."""
        if self.success_monotonic is None:
            return None
        return clock.monotonic() - self.success_monotonic

    def within(self, limit: float, clock: Clock) -> bool:
        """The staleness rule: the last success is at most `limit` seconds old."""
        age = self.age(clock)
        return age is not None and age <= limit

    def succeeded(self, clock: Clock) -> None:
        """Record a success now."""
        self.success = clock.time()
        self.success_monotonic = clock.monotonic()
        self.error = self.cause = None

    def failed(self, error: str, cause: str) -> None:
        """Record a failure (what the last success brought stays until it is stale)."""
        self.error, self.cause = error, cause


@dataclass
class RefreshOutcome(Outcome):
    """The refreshes: the last statistics read, whether the last run worked, how long it took."""

    stats: Statistics | None = None
    up: bool = False
    # The last refresh found no collection (a mistyped name, or a pool not created yet).
    collection_missing: bool = False
    duration: float | None = None
    wait: float | None = None  # for one of the max_concurrent_refreshes slots
    attempts: int = 0


@dataclass
class SumsOutcome(Outcome):
    """The sums over every document, read on their own slower cadence (sums_interval)."""

    sums: Sums | None = None


@dataclass
class IndexUpkeep:
    """The pool's index build running in the background, if any, and when to look for missing indexes again."""

    task: asyncio.Task[None] | None = None
    next_check: float = 0.0

    @property
    def running(self) -> bool:
        """A build is under way."""
        return self.task is not None and not self.task.done()


@dataclass
class PoolState:
    """Written by the collector's jobs; read by /metrics, /readyz and the admin API."""

    config: PoolDefinition
    sessions: MongoSessions
    clock: Clock = SYSTEM_CLOCK
    refresh: RefreshOutcome = field(default_factory=RefreshOutcome)
    sums_pass: SumsOutcome = field(default_factory=SumsOutcome)
    underperformers: Underperformers | None = None
    history: StatesHistory = field(default_factory=StatesHistory)
    # The state counts take the total from the collection's metadata count while it agrees with
    # the counted total of the last sums; otherwise they count the `_id` index.
    fast_total: bool = True
    connected: bool = False
    indexes: IndexUpkeep = field(default_factory=IndexUpkeep)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sums_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    connect_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # held only while connecting (see connect)
    connect_failure: SessionPoolError | None = None  # the last attempt's, for a job that waited for it
    # False when other daemons watch the pool (shard): no jobs, no series here; the admin API still acts on it.
    watched: bool = True
    watched_by: tuple[int, ...] = (0,)  # the shard indexes of the daemons that watch it
    added: float = field(init=False)  # monotonic: when the daemon began to watch the pool

    def __post_init__(self) -> None:
        self.added = self.clock.monotonic()

    async def connect(self) -> None:
        """Connect the pool's MongoSessions unless done: one job at a time (a pool's first refresh and first sums
        pass start together: one `hello` for each of thousands of pools, not two). Bounded by refresh_timeout
        whichever job connects; a job that waited for another's attempt which failed gets that failure (its
        cause, within its own time) rather than trying again."""
        if self.connected:
            return
        waited = self.connect_lock.locked()
        async with self.connect_lock:
            if self.connected:
                return
            if waited and self.connect_failure is not None:
                raise self.connect_failure
            try:
                with budget("refresh_timeout", self.config.refresh_timeout):
                    await self.sessions.connect()
            except SessionPoolError as exc:
                self.connect_failure = exc
                raise
            self.connect_failure = None
            self.connected = True

    @property
    def name(self) -> str:
        """The pool's label value."""
        return self.config.name

    @property
    def interval(self) -> float:
        """Seconds between scheduled refreshes."""
        return self.config.interval

    @property
    def max_age(self) -> float:
        """Age after which the pool's state series are stale."""
        return self.config.staleness_limit

    @property
    def min_active_sessions(self) -> int:
        """Alert threshold from the config."""
        return self.config.min_active_sessions

    # -- what the refreshes and the sums say, as the readers name it --

    @property
    def stats(self) -> Statistics | None:
        """The last statistics a refresh read (kept after failures until stale)."""
        return self.refresh.stats

    @property
    def active(self) -> int | None:
        """Sessions a handler can take now (count_active of the last statistics)."""
        return self.refresh.stats["count_active"] if self.refresh.stats is not None else None

    @property
    def up(self) -> bool:
        """The last refresh succeeded."""
        return self.refresh.up

    @property
    def last_success(self) -> float | None:
        """Unix time of the last successful refresh."""
        return self.refresh.success

    @property
    def last_error(self) -> str | None:
        """The last refresh's error, None once one succeeds."""
        return self.refresh.error

    @property
    def last_cause(self) -> str | None:
        """The last refresh's error without the step that met it."""
        return self.refresh.cause

    @property
    def collection_missing(self) -> bool:
        """The last refresh found no collection."""
        return self.refresh.collection_missing

    @property
    def sums(self) -> Sums | None:
        """The last sums read (kept after failures; the gauges withdraw them once stale)."""
        return self.sums_pass.sums

    def age(self) -> float | None:
        """Seconds since the last successful refresh (monotonic clock), None before the first."""
        return self.refresh.age(self.clock)

    @property
    def fresh(self) -> bool:
        """The last successful refresh is at most max_age old (else the state series are withdrawn)."""
        return self.refresh.within(self.max_age, self.clock)

    @property
    def sums_fresh(self) -> bool:
        """The last sums are at most their staleness limit old."""
        return self.sums_pass.within(self.config.sums_staleness_limit, self.clock)

    # -- recording outcomes --

    def succeeded(self, stats: Statistics) -> None:
        """Record a successful refresh."""
        self.refresh.stats = stats
        self.refresh.succeeded(self.clock)
        self.refresh.up = True
        self.refresh.collection_missing = False
        self.remember(stats)

    def failed(self, error: str, cause: str | None = None, *, collection_missing: bool = False) -> None:
        """Record a failed refresh (the last good statistics stay until they are stale)."""
        self.refresh.failed(error, cause or error)
        self.refresh.up = False
        self.refresh.collection_missing = collection_missing

    def sums_read(self, sums: Sums) -> None:
        """Record a successful reading of the sums."""
        self.sums_pass.sums = sums
        self.sums_pass.succeeded(self.clock)

    def remember(self, stats: Statistics) -> None:
        """Keep the refresh's state counts for the last hour (at most one point per HISTORY_STEP seconds)."""
        self.history.add(stats.time.timestamp(), stats.states)
