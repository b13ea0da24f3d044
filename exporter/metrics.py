"""Prometheus metrics on the daemon's own registry, declared as tables and rendered from memory."""

from __future__ import annotations

import gzip
import math
import platform
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import pymongo
from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.core import STATES
from exporter.core.clocks import Reading
from exporter.counters import PoolCounter
from exporter.exposition import Exposition
from exporter.pieces import Rendered
from exporter.state import PoolState

PREFIX = "session_pool_"
_EVERY = "Refreshed every session_pool_refresh_interval_seconds, not at scrape time."
_SUMS_EVERY = "Read every session_pool_sums_interval_seconds (one pass over the pool), not at scrape time."

Samples = Iterable[tuple[tuple[str, ...], float]]


def _ts(when: datetime | None) -> float | None:
    """Unix time of an aware datetime, or None."""
    return when.timestamp() if when is not None else None


def _one(value: float | None) -> Samples:
    """A single unlabelled sample, or none when the value is absent."""
    return [] if value is None else [((), float(value))]


@dataclass(frozen=True)
class PoolGauge:
    """One per-pool gauge: its name, help, extra labels, and how to read its samples from a pool.

    `stateful` gauges describe the pool's sessions and are withdrawn once the pool's last
    successful refresh is older than its max_age (the staleness rule).
    """

    name: str
    help: str
    samples: Callable[[PoolState], Samples]
    labels: tuple[str, ...] = ()
    stateful: bool = False
    every: str = _EVERY


POOL_GAUGES: tuple[PoolGauge, ...] = (
    PoolGauge(
        "sessions",
        "Sessions per state (active, in_use, locked, blocked, inactive).",
        lambda p: [((str(s),), p.stats.states.get(s, 0)) for s in STATES] if p.stats else [],
        labels=("state",),
        stateful=True,
    ),
    PoolGauge(
        "active_sessions",
        "Sessions a handler can take now: count_active() (default filter, not held).",
        lambda p: _one(p.active),
        stateful=True,
    ),
    PoolGauge(
        "uses",
        "Sum of count_use over the pool, read every sums_interval; use deriv()/delta(), not rate().",
        lambda p: _one(p.sums.uses if p.sums and p.sums_fresh else None),
        every=_SUMS_EVERY,
    ),
    PoolGauge(
        "successes",
        "Sum of count_success over the pool, read every sums_interval; use deriv()/delta(), not rate().",
        lambda p: _one(p.sums.successes if p.sums and p.sums_fresh else None),
        every=_SUMS_EVERY,
    ),
    PoolGauge(
        "sums_timestamp_seconds",
        "Unix time the pool's uses and successes were last read (every sums_interval).",
        lambda p: _one(p.sums_pass.success),
        every=_SUMS_EVERY,
    ),
    PoolGauge(
        "sums_interval_seconds",
        "Configured seconds between readings of the sums.",
        lambda p: _one(p.config.sums_interval),
        every="",
    ),
    PoolGauge(
        "next_unlock_timestamp_seconds",
        "Unix time of the earliest end of a lock or block (absent when none).",
        lambda p: _one(_ts(p.stats.next_unlock) if p.stats else None),
        stateful=True,
    ),
    PoolGauge(
        "oldest_active_last_use_timestamp_seconds",
        "Unix time of the oldest last_use among active sessions (absent when none).",
        lambda p: _one(_ts(p.stats.oldest_active_last_use) if p.stats else None),
        stateful=True,
    ),
    PoolGauge(
        "underperforming_sessions",
        "Active sessions with at least underperforming.min_uses uses whose success ratio is underperforming.below "
        "or more under the pool's.",
        lambda p: _one(p.underperformers.count if p.underperformers else None),
        stateful=True,
        every="Counted every underperforming.interval seconds (not every refresh); absent before the first count.",
    ),
    PoolGauge(
        "min_active_sessions",
        "Configured alert threshold for active sessions (min_active_sessions).",
        lambda p: _one(p.min_active_sessions),
        every="",
    ),
    PoolGauge(
        "refresh_interval_seconds", "Configured seconds between refreshes.", lambda p: _one(p.interval), every=""
    ),
    PoolGauge("up", "1 when the pool's last refresh succeeded, else 0.", lambda p: _one(1.0 if p.refresh.up else 0.0)),
    PoolGauge(
        "collection_missing",
        "1 when the pool's last refresh found its collection missing (a mistyped name, or a pool not created "
        "yet; nothing creates it), else 0.",
        lambda p: _one(1.0 if p.refresh.collection_missing else 0.0),
    ),
    PoolGauge(
        "last_success_timestamp_seconds",
        "Unix time of the pool's last successful refresh.",
        lambda p: _one(p.refresh.success),
    ),
    PoolGauge("refresh_duration_seconds", "Seconds the pool's last refresh took.", lambda p: _one(p.refresh.duration)),
    PoolGauge(
        "refresh_wait_seconds",
        "Seconds the pool's last refresh waited for one of max_concurrent_refreshes slots.",
        lambda p: _one(p.refresh.wait),
    ),
)


@dataclass(frozen=True)
class CounterSpec:
    """One counter of the daemon (exported with the `_total` suffix)."""

    name: str
    help: str
    labels: tuple[str, ...]


REFRESHES = CounterSpec("refreshes", "Refreshes of the pool's statistics attempted.", ("pool",))
REFRESH_FAILURES = CounterSpec("refresh_failures", "Refreshes of the pool's statistics that failed.", ("pool",))
SUMS_FAILURES = CounterSpec("sums_failures", "Readings of the pool's sums (uses, successes) that failed.", ("pool",))
METADATA_COUNT_MISMATCHES = CounterSpec(
    "metadata_count_mismatches",
    "Readings of the sums whose counted total differed from the collection's document count "
    "(the state counts then count the _id index until they agree again).",
    ("pool",),
)
LEASE_OVERRUNS = CounterSpec(
    "lease_overruns",
    "Reports (session_success, session_lock, session_block) that handlers made on a session already handed "
    "to another handler since their own hand-out: their work outlasted next_use_delay. Each was counted and "
    "changed no hold (a late lock or block only lengthens it). Read from the pool's count_overrun sum at each "
    "reading of the sums (every sums_interval); counts from the daemon's start.",
    ("pool",),
)
INDEX_BUILDS = CounterSpec("index_builds", "Times the pool's missing indexes were created by the daemon.", ("pool",))
INDEX_BUILD_FAILURES = CounterSpec(
    "index_build_failures", "Times creating the pool's missing indexes failed.", ("pool",)
)
ADMIN_ACTIONS = CounterSpec("admin_actions", "Admin API writes applied, per pool and action.", ("pool", "action"))
ADMIN_ACTION_FAILURES = CounterSpec(
    "admin_action_failures", "Admin API writes that failed, per pool and action.", ("pool", "action")
)
COUNTERS: tuple[CounterSpec, ...] = (
    REFRESHES,
    REFRESH_FAILURES,
    SUMS_FAILURES,
    METADATA_COUNT_MISMATCHES,
    LEASE_OVERRUNS,
    INDEX_BUILDS,
    INDEX_BUILD_FAILURES,
    ADMIN_ACTIONS,
    ADMIN_ACTION_FAILURES,
)


@dataclass(frozen=True)
class DaemonFamily:
    """One metric of the daemon as a whole (no pool label): its name, type, help and labels."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...] = ()


MONGODB_UP = DaemonFamily(
    "mongodb_up",
    "gauge",
    "1 when MongoDB answered the daemon's last check (a ping on the members the statistics may read, every few "
    "seconds, or a refresh), else 0; absent before the first check.",
)
HTTP_CONNECTIONS = DaemonFamily("http_connections", "gauge", "HTTP connections open now (both listeners).")
HTTP_CONNECTIONS_CLOSED = DaemonFamily(
    "http_connections_closed",
    "counter",
    "HTTP connections the daemon closed: reason slow_header (no request head within http.header_timeout), "
    "evicted (closed to make room at http.max_connections).",
    ("reason",),
)
BUILD_INFO = DaemonFamily(
    "build_info",
    "gauge",
    "Always 1; labels carry the exporter, Python and PyMongo versions.",
    ("version", "python_version", "pymongo_version"),
)
SHARD_INFO = DaemonFamily(
    "shard_info",
    "gauge",
    "Always 1; labels carry this daemon's place among those sharing the pools (the config's shard: index, "
    "count, replicas); the pools it watches are those with series from it.",
    ("index", "count", "replicas"),
)
MEMBER_CLOCK_OFFSET = DaemonFamily(
    "mongodb_member_clock_offset_seconds",
    "gauge",
    "Seconds the member's clock (hello.localTime) is ahead of the daemon's (negative: behind), read from "
    "the driver's heartbeats and corrected by half the round trip; absent once the member has not answered "
    "a heartbeat for 60 s. Holds end by the primary's clock, so members must agree within a share of the "
    "shortest hold (a quarter of a second for next_use_delay's 1 s): compare members with each other, "
    "the daemon's own clock does not matter.",
    ("member",),
)
DAEMON_FAMILIES: tuple[DaemonFamily, ...] = (
    MONGODB_UP,
    MEMBER_CLOCK_OFFSET,
    HTTP_CONNECTIONS,
    HTTP_CONNECTIONS_CLOSED,
    BUILD_INFO,
    SHARD_INFO,
)


class PoolCollector(Collector):
    """Renders the pool gauges from memory and applies the staleness rule (never touches MongoDB)."""

    def __init__(self, pools: Callable[[], Iterable[PoolState]]) -> None:
        self._pools = pools

    def describe(self) -> Iterable[Metric]:
        """Metric families without samples (lets the registry check for name clashes)."""
        return [self._family(gauge) for gauge in POOL_GAUGES]

    @staticmethod
    def _family(gauge: PoolGauge) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            PREFIX + gauge.name, f"{gauge.help} {gauge.every}".strip(), labels=["pool", *gauge.labels]
        )

    def collect(self) -> Iterator[Metric]:
        """Current samples for every pool."""
        pools = list(self._pools())
        for gauge in POOL_GAUGES:
            family = self._family(gauge)
            for pool in pools:
                self.add(family, gauge, pool)
            yield family

    @staticmethod
    def add(family: GaugeMetricFamily, gauge: PoolGauge, pool: PoolState) -> None:
        """The pool's samples of one gauge (none of a stateful one once the pool is not fresh)."""
        if gauge.stateful and not pool.fresh:
            return
        for labels, sample in gauge.samples(pool):
            family.add_metric([pool.name, *labels], sample)

    @classmethod
    def of(cls, pool: PoolState) -> list[Metric]:
        """One family per gauge, with the pool's samples only."""
        families: list[Metric] = []
        for gauge in POOL_GAUGES:
            family = cls._family(gauge)
            cls.add(family, gauge, pool)
            families.append(family)
        return families


class FromMemory(Collector):
    """Families of the daemon as a whole, built at each scrape from what a reader returns."""

    def __init__(self, families: Callable[[bool], Iterable[Metric]]) -> None:
        # families(True): with the current samples; families(False): without (for describe()).
        self._families = families

    def describe(self) -> Iterable[Metric]:
        """The families, without samples."""
        return list(self._families(False))

    def collect(self) -> Iterator[Metric]:
        """Current samples."""
        yield from self._families(True)


class Metrics:
    """Every metric of the daemon, on a registry of its own (never prometheus_client's global one)."""

    def __init__(self, version: str = __version__) -> None:
        # `_created` series only add noise to an exporter's counters.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        # Everything, as prometheus_client renders it (render(), tests, the stock server of the bench) ...
        self.registry = CollectorRegistry(auto_describe=True)
        # ... and the daemon's own families only: /metrics renders these at scrape time, the pools apart.
        self._daemon = CollectorRegistry(auto_describe=True)
        self._pools: Callable[[], Iterable[PoolState]] = list
        for collector in (ProcessCollector(registry=None), PlatformCollector(registry=None)):
            self._register(collector)
        self._daemon.register(GCCollector(registry=self.registry))
        self.build_info = Gauge(PREFIX + BUILD_INFO.name, BUILD_INFO.help, list(BUILD_INFO.labels), registry=None)
        self.build_info.labels(version, platform.python_version(), pymongo.version).set(1)
        self.shard_info = Gauge(PREFIX + SHARD_INFO.name, SHARD_INFO.help, list(SHARD_INFO.labels), registry=None)
        self._register(self.build_info)
        self._register(self.shard_info)
        self.refreshes = self._counter(REFRESHES)
        self.refresh_failures = self._counter(REFRESH_FAILURES)
        self.sums_failures = self._counter(SUMS_FAILURES)
        self.metadata_count_mismatches = self._counter(METADATA_COUNT_MISMATCHES)
        self.lease_overruns = self._counter(LEASE_OVERRUNS)
        self.index_builds = self._counter(INDEX_BUILDS)
        self.index_build_failures = self._counter(INDEX_BUILD_FAILURES)
        self.admin_actions = self._counter(ADMIN_ACTIONS)
        self.admin_action_failures = self._counter(ADMIN_ACTION_FAILURES)
        self._per_pool = (
            self.refreshes,
            self.refresh_failures,
            self.sums_failures,
            self.metadata_count_mismatches,
            self.lease_overruns,
            self.index_builds,
            self.index_build_failures,
        )
        self._per_action = (self.admin_actions, self.admin_action_failures)
        self._counters: tuple[PoolCounter, ...] = tuple(getattr(self, spec.name) for spec in COUNTERS)
        self.registry.register(PoolCollector(lambda: self._pools()))
        headers = [*PoolCollector(list).describe(), *(Metric(PREFIX + c.name, c.help, "counter") for c in COUNTERS)]
        self.exposition: Exposition[PoolState] = Exposition(
            lambda encode: encode(self._daemon), lambda: self._pools(), self._pool, headers
        )

    def _register(self, collector: Collector) -> None:
        """A family of the daemon as a whole: in both registries."""
        self.registry.register(collector)
        self._daemon.register(collector)

    def _pool(self, pool: PoolState) -> Rendered:
        """One pool's series (gauges, then counters, in the order of the headers), and when its freshness lapses."""
        families = PoolCollector.of(pool)
        families.extend(counter.family(counter.of(pool.name)) for counter in self._counters)
        lapses = [math.inf]
        if pool.fresh and pool.refresh.success_monotonic is not None:
            lapses.append(pool.refresh.success_monotonic + pool.max_age)
        if pool.sums_fresh and pool.sums_pass.success_monotonic is not None:
            lapses.append(pool.sums_pass.success_monotonic + pool.config.sums_staleness_limit)
        return Rendered(families, min(lapses))

    def _counter(self, spec: CounterSpec) -> PoolCounter:
        counter = PoolCounter(PREFIX + spec.name, spec.help, spec.labels)
        self.registry.register(counter)
        return counter

    def bind_connections(self, read: Callable[[], tuple[int, int, int]]) -> None:
        """Export the HTTP connection counts `read` returns (open, closed slow, evicted)."""

        def families(sampled: bool) -> Iterator[Metric]:
            open_now, slow, evicted = read() if sampled else (0, 0, 0)
            yield GaugeMetricFamily(PREFIX + HTTP_CONNECTIONS.name, HTTP_CONNECTIONS.help, value=open_now)
            closed = CounterMetricFamily(
                PREFIX + HTTP_CONNECTIONS_CLOSED.name,
                HTTP_CONNECTIONS_CLOSED.help,
                labels=list(HTTP_CONNECTIONS_CLOSED.labels),
            )
            closed.add_metric(["slow_header"], slow)
            closed.add_metric(["evicted"], evicted)
            yield closed

        self._register(FromMemory(families))

    def bind_mongodb(self, read: Callable[[], bool | None]) -> None:
        """Export whether MongoDB answers, as `read` says (None: not known yet): the daemon's own check every
        few seconds, and every refresh's outcome."""

        def families(sampled: bool) -> Iterator[Metric]:
            family = GaugeMetricFamily(PREFIX + MONGODB_UP.name, MONGODB_UP.help)
            up = read() if sampled else None
            if up is not None:
                family.add_metric([], 1.0 if up else 0.0)
            yield family

        self._register(FromMemory(families))

    def bind_clocks(self, read: Callable[[], Mapping[str, Reading]]) -> None:
        """Export each replica-set member's clock offset from the daemon's, as `read` returns it (from the
        driver's heartbeats)."""

        def families(sampled: bool) -> Iterator[Metric]:
            family = GaugeMetricFamily(
                PREFIX + MEMBER_CLOCK_OFFSET.name, MEMBER_CLOCK_OFFSET.help, labels=list(MEMBER_CLOCK_OFFSET.labels)
            )
            for member, reading in (read() if sampled else {}).items():
                family.add_metric([member], reading.offset)
            yield family

        self._register(FromMemory(families))

    def bind(self, pools: Callable[[], Iterable[PoolState]]) -> None:
        """Tell the pool collector where the pools' states (PoolState) live."""
        self._pools = pools
        self.exposition.members_changed()

    def add_pool(self, name: str, actions: Iterable[str] = ()) -> None:
        """Export the pool's counters at 0 from the start, so rate()/increase() see the first failure."""
        for counter in self._per_pool:
            counter.labels(name)
        for action in actions:
            for counter in self._per_action:
                counter.labels(pool=name, action=action)

    def remove_pool(self, name: str) -> None:
        """Withdraw a pool's counters (its gauges go with its state): a vanished pool leaves no series."""
        for counter in (*self._per_pool, *self._per_action):
            counter.remove_pool(name)
        self.exposition.members_changed()
        self.changed(name)

    def changed(self, pool: str | None = None) -> None:
        """Something a pool's series show changed (a refresh, the sums, an admin action): that pool's part is
        rendered again; with no name, every pool's."""
        self.exposition.changed(pool)

    def daemon_changed(self) -> None:
        """Only the daemon's own families changed (e.g. mongodb_up): no pool is rendered again."""
        self.exposition.daemon_changed()

    def render(self, accept: str | None = None, gzipped: bool = False) -> tuple[bytes, str]:
        """One rendering now: Prometheus text, or OpenMetrics if `accept` asks for it, gzipped on demand;
        and its content type. Thread-safe: the collectors only read the pools' current objects."""
        encoder, content_type = choose_encoder(accept or "")
        body = encoder(self.registry)
        return (gzip.compress(body, compresslevel=6) if gzipped else body), content_type

    async def serve(self, accept: str | None, gzipped: bool) -> tuple[bytes, str]:
        """What a scrape of /metrics gets (see Exposition.serve)."""
        return await self.exposition.serve(accept, gzipped)
