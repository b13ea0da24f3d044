"""Metrics: own registry, every contract metric, the staleness rule, exposition formats (promtool-linted)."""

from __future__ import annotations

import gzip
import itertools
import subprocess
import time
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from exporter.clock import SYSTEM_CLOCK, Clock
from exporter.config import PoolDefinition
from exporter.core import STATES, MongoSessions, State, Statistics, Sums
from exporter.history import HISTORY_POINTS, HISTORY_STEP
from exporter.metrics import COUNTERS, Metrics
from exporter.state import PoolState, Underperformers
from tests.support.clock import ManualClock
from tests.support.metrics import parse_metrics, value
from tests.support.tools import require_binary

# A client that is never used: the metrics read only the pool's settings and last outcome.
SESSIONS = MongoSessions("mongodb://127.0.0.1:9/", "d", "c")


def new_pool(name: str, max_age: float = 45.0, min_active_sessions: int = 1, clock: Clock = SYSTEM_CLOCK) -> PoolState:
    """A pool's state before its first refresh (plain data, no MongoDB involved)."""
    config = PoolDefinition(
        name=name, database="d", collection="c", interval=15.0, max_age=max_age, min_active_sessions=min_active_sessions
    )
    return PoolState(config, SESSIONS, clock)


def stats(**counts: int) -> Statistics:
    """Statistics with the given per-state counts."""
    states = {s: counts.get(str(s), 0) for s in STATES}
    return Statistics(
        time=datetime.now(UTC),
        states=states,
        total=sum(states.values()),
        uses=None,
        successes=None,
        next_unlock=datetime(2030, 1, 1, tzinfo=UTC),
        oldest_active_last_use=None,
    )


def fresh(
    name: str, max_age: float = 45.0, min_active_sessions: int = 1, clock: Clock = SYSTEM_CLOCK, **counts: int
) -> PoolState:
    """A pool refreshed just now (in 10 ms), its sums read just now."""
    pool = new_pool(name, max_age=max_age, min_active_sessions=min_active_sessions, clock=clock)
    pool.succeeded(stats(**counts))
    pool.refresh.duration = 0.01
    total = sum(counts.values())
    pool.sums_read(Sums(time=datetime.now(UTC), total=total, uses=120, successes=80, metadata_total=total))
    return pool


def test_own_registry_and_several_instances() -> None:
    """Metrics never touch prometheus_client's global registry, so instances do not clash."""
    first, second = Metrics(), Metrics()
    first.refreshes.labels("a").inc()
    assert REGISTRY.get_sample_value("session_pool_refreshes_total", {"pool": "a"}) is None
    assert first.registry.get_sample_value("session_pool_refreshes_total", {"pool": "a"}) == 1
    assert second.registry.get_sample_value("session_pool_refreshes_total", {"pool": "a"}) is None


def test_fresh_pool_exports_every_series_with_zeros() -> None:
    """All five states always, zeros included; absent timestamps stay absent."""
    metrics = Metrics(version="9.9.9")
    pool = fresh("tg", min_active_sessions=5, active=3, locked=2)
    metrics.bind(lambda: [pool])
    metrics.add_pool("tg")
    samples = parse_metrics(metrics.render()[0].decode())
    got = {str(s): value(samples, "session_pool_sessions", pool="tg", state=str(s)) for s in STATES}
    assert got == {"active": 3.0, "in_use": 0.0, "locked": 2.0, "blocked": 0.0, "inactive": 0.0}
    assert value(samples, "session_pool_active_sessions", pool="tg") == 3
    assert value(samples, "session_pool_uses", pool="tg") == 120
    assert value(samples, "session_pool_successes", pool="tg") == 80
    assert (
        value(samples, "session_pool_next_unlock_timestamp_seconds", pool="tg")
        == datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    )
    assert value(samples, "session_pool_oldest_active_last_use_timestamp_seconds", pool="tg") is None
    assert value(samples, "session_pool_min_active_sessions", pool="tg") == 5
    assert value(samples, "session_pool_refresh_interval_seconds", pool="tg") == 15
    assert value(samples, "session_pool_up", pool="tg") == 1
    last = value(samples, "session_pool_last_success_timestamp_seconds", pool="tg")
    assert last == pytest.approx(time.time(), abs=60)
    assert value(samples, "session_pool_refresh_duration_seconds", pool="tg") == 0.01
    assert value(samples, "session_pool_refreshes_total", pool="tg") == 0
    assert value(samples, "session_pool_refresh_failures_total", pool="tg") == 0
    assert value(samples, "session_pool_lease_overruns_total", pool="tg") == 0
    build = [labels for (name, labels) in samples if name == "session_pool_build_info"]
    assert dict(build[0])["version"] == "9.9.9"
    assert {"python_version", "pymongo_version"} <= set(dict(build[0]))


def test_never_refreshed_pool_exports_only_health_series() -> None:
    """Before the first success there is no state to report: up 0, config gauges, counters."""
    metrics = Metrics()
    metrics.bind(lambda: [new_pool("new")])
    samples = parse_metrics(metrics.render()[0].decode())
    assert value(samples, "session_pool_up", pool="new") == 0
    assert value(samples, "session_pool_refresh_interval_seconds", pool="new") == 15
    assert value(samples, "session_pool_last_success_timestamp_seconds", pool="new") is None
    assert not [name for (name, labels) in samples if name == "session_pool_sessions"]


def test_staleness_rule_drops_state_series_only() -> None:
    """Older than max_age: sessions, active, next_unlock, oldest vanish; the rest stays."""
    metrics = Metrics()
    clock = ManualClock()
    pool = fresh("old", max_age=30, clock=clock, active=4)
    pool.failed("MongoDB unreachable: connection refused")
    metrics.bind(lambda: [pool])
    # Within max_age the last values stay, even while up is 0.
    clock.advance(29)
    samples = parse_metrics(metrics.render()[0].decode())
    assert value(samples, "session_pool_sessions", pool="old", state=str(State.ACTIVE)) == 4
    clock.advance(2)
    samples = parse_metrics(metrics.render()[0].decode())
    for name in ("session_pool_sessions", "session_pool_active_sessions",
                 "session_pool_next_unlock_timestamp_seconds",
                 "session_pool_oldest_active_last_use_timestamp_seconds"):  # fmt: skip
        assert not [n for (n, labels) in samples if n == name], name
    # The sums follow their own cadence: still fresh, still exported.
    assert value(samples, "session_pool_uses", pool="old") == 120
    assert value(samples, "session_pool_up", pool="old") == 0
    assert value(samples, "session_pool_last_success_timestamp_seconds", pool="old") is not None
    assert value(samples, "session_pool_min_active_sessions", pool="old") == 1


def test_sums_have_their_own_staleness() -> None:
    """Sums older than 3 x sums_interval vanish while the state series stay; their timestamp stays."""
    metrics = Metrics()
    clock = ManualClock()
    pool = fresh("p", clock=clock, active=2)
    metrics.bind(lambda: [pool])
    samples = parse_metrics(metrics.render()[0].decode())
    assert value(samples, "session_pool_sums_interval_seconds", pool="p") == 300
    read_at = value(samples, "session_pool_sums_timestamp_seconds", pool="p")
    assert read_at == pytest.approx(time.time(), abs=60)
    assert pool.sums_pass.success_monotonic is not None
    clock.advance(3 * 300 + 1)
    pool.succeeded(stats(active=2))  # the states are refreshed again; the sums are 3 x 300 s + 1 old
    samples = parse_metrics(metrics.render()[0].decode())
    assert value(samples, "session_pool_uses", pool="p") is None
    assert value(samples, "session_pool_successes", pool="p") is None
    assert value(samples, "session_pool_sums_timestamp_seconds", pool="p") == read_at
    assert value(samples, "session_pool_sessions", pool="p", state="active") == 2


def test_every_counter_of_the_table_is_a_field_exported_per_pool() -> None:
    """Each row of COUNTERS is a counter of Metrics: exported at 0 once the pool is added, withdrawn with it."""
    metrics = Metrics()
    metrics.add_pool("p", actions=["lock"])
    samples = parse_metrics(metrics.render()[0].decode())
    for spec in COUNTERS:
        labels = {"pool": "p", "action": "lock"} if "action" in spec.labels else {"pool": "p"}
        assert value(samples, f"session_pool_{spec.name}_total", **labels) == 0, spec.name
    metrics.remove_pool("p")
    assert 'pool="p"' not in metrics.render()[0].decode()


def test_help_types_and_admin_counters() -> None:
    """HELP says values are refreshed on an interval; types and names follow the contract."""
    metrics = Metrics()
    metrics.bind(lambda: [fresh("p")])
    metrics.admin_actions.labels("p", "lock").inc()
    metrics.admin_action_failures.labels("p", "unlock").inc(2)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render()[0].decode())}
    for name in ("session_pool_sessions", "session_pool_active_sessions", "session_pool_uses", "session_pool_up"):
        assert families[name].type == "gauge"
        # Each says how often it is read (the sums on their own, slower cadence), and never at scrape time.
        every = "Read every session_pool_sums_interval_seconds" if name == "session_pool_uses" else "Refreshed every"
        assert every in families[name].documentation and "not at scrape time" in families[name].documentation
    for name in ("session_pool_refreshes", "session_pool_refresh_failures", "session_pool_admin_actions",
                 "session_pool_admin_action_failures", "session_pool_lease_overruns"):  # fmt: skip
        assert families[name].type == "counter"
    assert "next_use_delay" in families["session_pool_lease_overruns"].documentation
    samples = parse_metrics(metrics.render()[0].decode())
    assert value(samples, "session_pool_admin_actions_total", pool="p", action="lock") == 1
    assert value(samples, "session_pool_admin_action_failures_total", pool="p", action="unlock") == 2
    assert not [n for (n, labels) in samples if n.endswith("_created")]


def test_openmetrics_negotiation() -> None:
    """Prometheus text by default; OpenMetrics when the scraper asks for it."""
    metrics = Metrics()
    metrics.bind(lambda: [fresh("p")])
    body, content_type = metrics.render(None)
    assert content_type.startswith("text/plain; version=0.0.4")
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().endswith("# EOF\n")


@pytest.mark.integration
def test_exposition_passes_promtool_lint(tmp_path: object) -> None:
    """`promtool check metrics` accepts the exposition (names, units, HELP, counters)."""
    promtool = require_binary("promtool", "Debian package prometheus")
    metrics = Metrics()
    metrics.bind(lambda: [fresh("a", active=1), new_pool("b")])
    metrics.add_pool("a")
    metrics.admin_actions.labels("a", "lock").inc()
    body, _ = metrics.render()
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


async def test_exposition_is_rendered_once_until_something_changes() -> None:
    """Scrapes reuse one rendering per content type (gzip included) until changed() or the TTL."""
    metrics = Metrics()
    pool = fresh("p", active=2)
    metrics.bind(lambda: [pool])
    first, content_type = await metrics.serve(None, gzipped=False)
    again, _ = await metrics.serve(None, gzipped=False)
    assert again is first and content_type.startswith("text/plain")
    packed, _ = await metrics.serve(None, gzipped=True)
    assert gzip.decompress(packed) == first
    openmetrics, om_type = await metrics.serve("application/openmetrics-text; version=1.0.0", gzipped=False)
    assert om_type.startswith("application/openmetrics-text") and openmetrics.rstrip().endswith(b"# EOF")
    # A refresh changes the pool; until changed() the old bytes are served, then new ones.
    pool.succeeded(stats(active=7))
    assert (await metrics.serve(None, gzipped=False))[0] is first
    metrics.changed()
    fresh_bytes, _ = await metrics.serve(None, gzipped=False)
    assert value(parse_metrics(fresh_bytes.decode()), "session_pool_sessions", pool="p", state="active") == 7


def test_underperforming_gauge_follows_its_own_count() -> None:
    """Absent until the first count; then the count, with HELP naming its own cadence; withdrawn when stale."""
    metrics = Metrics()
    clock = ManualClock()
    pool = fresh("p", clock=clock, active=3)
    metrics.bind(lambda: [pool])
    samples = parse_metrics(metrics.render()[0].decode())
    assert value(samples, "session_pool_underperforming_sessions", pool="p") is None
    pool.underperformers = Underperformers(count=7, threshold=0.5, pool_ratio=0.625, time=time.time())
    samples = parse_metrics(metrics.render()[0].decode())
    assert value(samples, "session_pool_underperforming_sessions", pool="p") == 7
    families = {f.name: f for f in text_string_to_metric_families(metrics.render()[0].decode())}
    assert "underperforming.interval" in families["session_pool_underperforming_sessions"].documentation
    clock.advance(46)  # older than max_age: withdrawn with the state series
    samples = parse_metrics(metrics.render()[0].decode())
    assert value(samples, "session_pool_underperforming_sessions", pool="p") is None


def test_the_last_hour_of_states_is_bounded() -> None:
    """The overview's memory keeps at most one point per 5 s and nothing older than an hour."""
    pool = fresh("p")
    start = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    for second in range(0, 3 * 3600, 1):
        snapshot = stats(active=second % 7)
        snapshot.time = datetime.fromtimestamp(start + second, UTC)
        pool.remember(snapshot)
    times = [p.time for p in pool.history]
    assert len(times) <= HISTORY_POINTS
    assert times[-1] - times[0] <= 3600
    assert all(b - a >= HISTORY_STEP for a, b in itertools.pairwise(times))
