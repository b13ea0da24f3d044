"""Prometheus metrics on the daemon's own registry, rendered from the last in-memory snapshot."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Protocol

import pymongo
from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.core import STATES, Statistics

PREFIX = "session_pool_"
_EVERY = "Refreshed every session_pool_refresh_interval_seconds, not at scrape time."


class PoolView(Protocol):
    """What the metrics need to know about one pool (the collector's runtime state)."""

    @property
    def name(self) -> str:
        """Pool label value."""

    @property
    def stats(self) -> Statistics | None:
        """Last statistics, or None before the first successful refresh."""

    @property
    def active(self) -> int | None:
        """Last `count_active()` result."""

    @property
    def up(self) -> bool:
        """True when the last refresh succeeded."""

    @property
    def last_success(self) -> float | None:
        """Unix time of the last successful refresh."""

    @property
    def last_duration(self) -> float | None:
        """Seconds the last refresh took."""

    @property
    def interval(self) -> float:
        """Configured refresh interval in seconds."""

    @property
    def max_age(self) -> float:
        """Age in seconds after which the state series are no longer exported."""

    @property
    def min_active_sessions(self) -> int:
        """Configured alert threshold."""

    def age(self, now: float) -> float | None:
        """Seconds since the last successful refresh, or None before the first."""


def _ts(when: datetime | None) -> float | None:
    """Unix time of an aware datetime, or None."""
    return when.timestamp() if when is not None else None


class PoolCollector(Collector):
    """Renders the pool gauges from memory and applies the staleness rule (never touches MongoDB)."""

    def __init__(self, pools: Callable[[], Iterable[PoolView]]) -> None:
        self._pools = pools

    def describe(self) -> Iterable[Metric]:
        """Metric families without samples (lets the registry check for name clashes)."""
        return list(self._families())

    def _families(self) -> list[GaugeMetricFamily]:
        """Fresh, empty metric families of the pool gauges."""
        def gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
            """One pool gauge family with the refresh note in its HELP."""
            return GaugeMetricFamily(PREFIX + name, f"{doc} {_EVERY}", labels=labels or ["pool"])

        return [
            gauge("sessions", "Sessions per state (active, in_use, locked, blocked, inactive).", ["pool", "state"]),
            gauge("active_sessions", "Sessions a handler can take now: count_active() (default filter, not held)."),
            gauge("uses", "Sum of count_use over the pool; use deriv()/delta(), not rate()."),
            gauge("successes", "Sum of count_success over the pool; use deriv()/delta(), not rate()."),
            gauge(
                "next_unlock_timestamp_seconds",
                "Unix time of the earliest end of a lock or block (absent when none).",
            ),
            gauge(
                "oldest_active_last_use_timestamp_seconds",
                "Unix time of the oldest last_use among active sessions (absent when none).",
            ),
            gauge("min_active_sessions", "Configured alert threshold for active sessions."),
            gauge("refresh_interval_seconds", "Configured seconds between refreshes."),
            gauge("up", "1 when the pool's last refresh succeeded, else 0."),
            gauge("last_success_timestamp_seconds", "Unix time of the pool's last successful refresh."),
            gauge("refresh_duration_seconds", "Seconds the pool's last refresh took."),
        ]

    def collect(self) -> Iterator[Metric]:
        """Current samples for every pool."""
        (sessions, active, uses, successes, next_unlock, oldest, min_active, interval, up, last_ok,
         duration) = self._families()  # fmt: skip
        now = time.time()
        for pool in self._pools():
            name = pool.name
            min_active.add_metric([name], pool.min_active_sessions)
            interval.add_metric([name], pool.interval)
            up.add_metric([name], 1.0 if pool.up else 0.0)
            if pool.last_success is not None:
                last_ok.add_metric([name], pool.last_success)
            if pool.last_duration is not None:
                duration.add_metric([name], pool.last_duration)
            age = pool.age(now)
            stats = pool.stats
            # Staleness rule: state-derived series vanish once the last success is too old.
            if stats is None or age is None or age > pool.max_age:
                continue
            for state in STATES:
                sessions.add_metric([name, str(state)], stats.states.get(state, 0))
            if pool.active is not None:
                active.add_metric([name], pool.active)
            uses.add_metric([name], stats.uses)
            successes.add_metric([name], stats.successes)
            unlock = _ts(stats.next_unlock)
            if unlock is not None:
                next_unlock.add_metric([name], unlock)
            last_use = _ts(stats.oldest_active_last_use)
            if last_use is not None:
                oldest.add_metric([name], last_use)
        yield from (sessions, active, uses, successes, next_unlock, oldest, min_active, interval, up, last_ok,
                    duration)  # fmt: skip


class Metrics:
    """Every metric of the daemon, on a registry of its own (never prometheus_client's global one)."""

    def __init__(self, version: str = __version__) -> None:
        # `_created` series only add noise to an exporter's counters.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self._pools: Callable[[], Iterable[PoolView]] = list
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.build_info = Gauge(
            PREFIX + "build_info",
            "Always 1; labels carry the exporter, Python and PyMongo versions.",
            ["version", "python_version", "pymongo_version"],
            registry=self.registry,
        )
        self.build_info.labels(version, platform.python_version(), pymongo.version).set(1)
        self.refreshes = Counter(
            PREFIX + "refreshes", "Refreshes of the pool's statistics attempted.", ["pool"], registry=self.registry
        )
        self.refresh_failures = Counter(
            PREFIX + "refresh_failures", "Refreshes of the pool's statistics that failed.", ["pool"],
            registry=self.registry,
        )  # fmt: skip
        self.admin_actions = Counter(
            PREFIX + "admin_actions", "Admin API writes applied, per pool and action.", ["pool", "action"],
            registry=self.registry,
        )  # fmt: skip
        self.admin_action_failures = Counter(
            PREFIX + "admin_action_failures", "Admin API writes that failed, per pool and action.",
            ["pool", "action"], registry=self.registry,
        )  # fmt: skip
        self.registry.register(PoolCollector(lambda: self._pools()))

    def bind(self, pools: Callable[[], Iterable[PoolView]]) -> None:
        """Tell the pool collector where the runtime state of the pools lives."""
        self._pools = pools

    def add_pool(self, name: str) -> None:
        """Export the pool's counters at 0 from the start, so rate()/increase() see the first failure."""
        self.refreshes.labels(name)
        self.refresh_failures.labels(name)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition (Prometheus text, or OpenMetrics if `accept` asks for it) and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
