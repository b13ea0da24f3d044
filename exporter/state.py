"""One pool's state at run time: its definition, its client and the outcome of its last refreshes."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from exporter.config import PoolDefinition
from exporter.core import MongoSessions, State, Statistics, Sums

# The overview's chart: the last hour of state counts, one point every 5 s at most (720 points per pool).
HISTORY_SECONDS = 3600.0
HISTORY_STEP = 5.0
HISTORY_POINTS = int(HISTORY_SECONDS / HISTORY_STEP)


@dataclass(frozen=True)
class StatesPoint:
    """The state counts of one successful refresh, for the overview's chart."""

    time: float
    states: dict[State, int]


@dataclass
class Underperformers:
    """The last count of a pool's underperforming sessions, and what it compared against."""

    count: int
    threshold: float | None
    pool_ratio: float | None
    time: float


@dataclass
class PoolState:
    """Written by the collector's refreshes; read by /metrics, /readyz and the admin API."""

    config: PoolDefinition
    sessions: MongoSessions
    stats: Statistics | None = None
    active: int | None = None
    up: bool = False
    last_success: float | None = None
    last_success_monotonic: float | None = None
    last_error: str | None = None
    last_cause: str | None = None
    last_duration: float | None = None
    last_wait: float | None = None
    # The last refresh found no collection (a mistyped name, or a pool not created yet).
    collection_missing: bool = False
    refreshes: int = 0
    added: float = field(default_factory=time.monotonic)
    connected: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    index_task: asyncio.Task[None] | None = None
    next_index_check: float = 0.0
    # The sums over every document, read on their own slower cadence (sums_interval).
    sums: Sums | None = None
    sums_success: float | None = None
    sums_success_monotonic: float | None = None
    sums_error: str | None = None
    sums_cause: str | None = None
    sums_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The state counts take the total from the collection's metadata count while it agrees with
    # the counted total of the last sums; otherwise they count the `_id` index.
    fast_total: bool = True
    history: deque[StatesPoint] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    underperformers: Underperformers | None = None

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

    def age(self) -> float | None:
        """Seconds since the last successful refresh (monotonic clock), None before the first."""
        if self.last_success_monotonic is None:
            return None
        return time.monotonic() - self.last_success_monotonic

    @property
    def fresh(self) -> bool:
        """True when the last success is younger than max_age."""
        age = self.age()
        return age is not None and age <= self.max_age

    @property
    def sums_fresh(self) -> bool:
        """True when the last sums are younger than their staleness limit."""
        if self.sums_success_monotonic is None:
            return False
        return time.monotonic() - self.sums_success_monotonic <= self.config.sums_staleness_limit

    def sums_read(self, sums: Sums) -> None:
        """Record a successful reading of the sums."""
        self.sums = sums
        self.sums_success = time.time()
        self.sums_success_monotonic = time.monotonic()
        self.sums_error = self.sums_cause = None

    def succeeded(self, stats: Statistics, active: int) -> None:
        """Record a successful refresh."""
        self.stats, self.active = stats, active
        self.last_success = time.time()
        self.last_success_monotonic = time.monotonic()
        self.up = True
        self.last_error = None
        self.collection_missing = False
        self.remember(stats)

    def remember(self, stats: Statistics) -> None:
        """Keep the refresh's state counts for the last hour (at most one point per HISTORY_STEP seconds)."""
        now = stats.time.timestamp()
        if self.history and now - self.history[-1].time < HISTORY_STEP:
            return
        self.history.append(StatesPoint(now, dict(stats.states)))
        while self.history and now - self.history[0].time > HISTORY_SECONDS:
            self.history.popleft()

    def failed(self, error: str, *, collection_missing: bool = False) -> None:
        """Record a failed refresh (the last good statistics stay until they are stale)."""
        self.up = False
        self.last_error = error
        self.collection_missing = collection_missing
