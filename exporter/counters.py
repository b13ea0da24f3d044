"""Counters per pool kept compact: a float per series in one dict, no object per series (thousands of pools)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class Series:
    """One series of a PoolCounter, as `labels()` gives it: `inc()` it."""

    __slots__ = ("_counter", "_key")

    def __init__(self, counter: PoolCounter, key: tuple[str, ...]) -> None:
        self._counter = counter
        self._key = key

    def inc(self, amount: float = 1.0) -> None:
        """Add `amount` (never negative: a counter only goes up)."""
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self._counter.add(self._key, amount)


class PoolCounter(Collector):
    """A counter family whose first label is the pool, with prometheus_client's Counter calls (`labels().inc()`,
    `remove()`) and its `_total` samples (no `_created` ones).

    prometheus_client keeps an object, a value object and a lock per series: about 6 KiB a pool for the
    daemon's seven per-pool counters, 29 MiB at 5000 pools. Here a series is a dict entry.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        # With more labels than the pool: each pool's series (in order of creation), to find them by pool.
        self._by_pool: dict[str, dict[tuple[str, ...], None]] | None = {} if len(self.labelnames) > 1 else None
        self._lock = threading.Lock()  # Metrics.render() may collect from another thread

    def _key(self, values: tuple[object, ...], named: dict[str, object]) -> tuple[str, ...]:
        if values and named:
            raise ValueError("labels(): label values by position or by name, not both")
        key = tuple(str(v) for v in values) if values else tuple(str(named[n]) for n in self.labelnames if n in named)
        if len(key) != len(self.labelnames) or (named and set(named) != set(self.labelnames)):
            raise ValueError(f"{self.name}: expected the labels {list(self.labelnames)}")
        return key

    def labels(self, *values: object, **named: object) -> Series:
        """The series of these label values (exported at 0 from now on if new)."""
        key = self._key(values, named)
        with self._lock:
            if key not in self._values:
                self._values[key] = 0.0
                if self._by_pool is not None:
                    self._by_pool.setdefault(key[0], {})[key] = None
        return Series(self, key)

    def add(self, key: tuple[str, ...], amount: float) -> None:
        """Add to a series (made by `labels()`; one removed since is made again)."""
        with self._lock:
            if key not in self._values and self._by_pool is not None:
                self._by_pool.setdefault(key[0], {})[key] = None
            self._values[key] = self._values.get(key, 0.0) + amount

    def remove(self, *values: object) -> None:
        """Withdraw one series (KeyError if there is none)."""
        key = tuple(str(v) for v in values)
        with self._lock:
            del self._values[key]
            if self._by_pool is not None:
                self._by_pool.get(key[0], {}).pop(key, None)

    def remove_pool(self, pool: str) -> None:
        """Withdraw every series of the pool."""
        with self._lock:
            keys = list(self._by_pool.pop(pool, {})) if self._by_pool is not None else [(pool,)]
            for key in keys:
                self._values.pop(key, None)

    def of(self, pool: str) -> list[tuple[tuple[str, ...], float]]:
        """The pool's series: their label values and counts."""
        with self._lock:
            if self._by_pool is None:
                value = self._values.get((pool,))
                return [] if value is None else [((pool,), value)]
            return [(key, self._values[key]) for key in self._by_pool.get(pool, ())]

    def family(self, series: Iterable[tuple[tuple[str, ...], float]]) -> CounterMetricFamily:
        """A family of this counter with the given series."""
        family = CounterMetricFamily(self.name, self.documentation, labels=list(self.labelnames))
        for key, value in series:
            family.add_metric(list(key), value)
        return family

    def collect(self) -> Iterable[Metric]:
        """Every series (prometheus_client's registry and encoders call this)."""
        with self._lock:
            series = list(self._values.items())
        yield self.family(series)

    def describe(self) -> Iterable[Metric]:
        """The family without its series (the registry's check of names)."""
        yield self.family([])
