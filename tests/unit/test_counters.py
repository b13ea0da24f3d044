"""Compact per-pool counters: rendered exactly as prometheus_client's Counter renders the same calls, in less memory."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from exporter.counters import PoolCounter
from exporter.metrics import Metrics


def both(labels: tuple[str, ...]) -> tuple[CollectorRegistry, Counter, CollectorRegistry, PoolCounter]:
    """The reference Counter and ours, each on its own registry."""
    reference_registry, ours_registry = CollectorRegistry(), CollectorRegistry()
    reference = Counter("x_things", "Things.", list(labels), registry=reference_registry)
    ours = PoolCounter("x_things", "Things.", labels)
    ours_registry.register(ours)
    return reference_registry, reference, ours_registry, ours


def test_same_exposition_as_prometheus_clients_counter() -> None:
    Metrics()  # disables the `_created` series, as in the daemon
    ref_registry, reference, our_registry, ours = both(("pool", "action"))
    for counter in (reference, ours):
        counter.labels("a", "lock").inc()
        counter.labels(pool="a", action="unlock").inc(2.5)
        counter.labels("b", "lock")
        counter.labels("c", "lock").inc()
        counter.remove("c", "lock")
        counter.labels('q"uote\n', "lock").inc(3)
    assert generate_latest(our_registry) == generate_latest(ref_registry)
    assert openmetrics_latest(our_registry) == openmetrics_latest(ref_registry)  # type: ignore[no-untyped-call]
    assert ours.of("a") == [(("a", "lock"), 1.0), (("a", "unlock"), 2.5)]
    ours.remove_pool("a")
    assert ours.of("a") == [] and ours.of("b") == [(("b", "lock"), 0.0)]


def test_one_label_counters_by_pool() -> None:
    ours = PoolCounter("x_refreshes", "Refreshes.", ("pool",))
    ours.labels("p").inc()
    ours.labels(pool="p").inc(4)
    assert ours.of("p") == [(("p",), 5.0)] and ours.of("other") == []
    ours.remove_pool("p")
    assert ours.of("p") == []
    with pytest.raises(KeyError):
        ours.remove("p")


def test_misuse_is_refused_as_prometheus_client_refuses_it() -> None:
    ours = PoolCounter("x_things", "Things.", ("pool", "action"))
    with pytest.raises(ValueError, match="expected the labels"):
        ours.labels("only-one")
    with pytest.raises(ValueError, match="expected the labels"):
        ours.labels(pool="p", verb="lock")
    with pytest.raises(ValueError, match="non-negative"):
        ours.labels("p", "lock").inc(-1)


def test_seven_counters_of_5000_pools_take_under_2_kib_a_pool() -> None:
    """The reason for them: prometheus_client's children took about 6 KiB a pool (29 MiB at 5000 pools)."""
    metrics = Metrics()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(5000):
            metrics.add_pool(f"many_{i:04d}")
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown / 5000 < 2048
