"""/metrics from per-pool pieces: equal to prometheus_client's own rendering, and a change costs its pool only."""

from __future__ import annotations

import asyncio
import gzip
import math
from collections.abc import Iterable

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import PoolDefinition
from exporter.exposition import INLINE_POOLS
from exporter.metrics import Metrics
from exporter.pieces import GROUP
from exporter.state import PoolState, Underperformers
from tests.support.clock import ManualClock
from tests.unit.test_metrics import SESSIONS, fresh, new_pool, stats

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
# Label values the encoders must escape (quote, backslash, newline) or pass through (UTF-8).
ODD = ['we"ird', "back\\slash", "new\nline", "ünïcødé ✓", "# HELP not a header"]


def families(body: bytes, accept: str | None) -> dict[str, tuple[str, str, list[tuple[str, str, str]]]]:
    """Every family as prometheus_client's parser reads it: type, help, samples (NaN compared as text)."""
    parse = openmetrics_families if accept else text_string_to_metric_families
    out = {}
    for family in parse(body.decode()):
        samples = sorted((s.name, repr(sorted(s.labels.items())), repr(s.value)) for s in family.samples)
        out[family.name] = (family.type, family.documentation, samples)
    return out


def pool_families(body: bytes, accept: str | None) -> dict[str, tuple[str, str, list[tuple[str, str, str]]]]:
    """The families of the pools (the daemon's own, such as process CPU, move between two renderings)."""
    skip = ("session_pool_http_", "session_pool_mongodb_", "session_pool_build", "session_pool_shard")
    return {
        name: family
        for name, family in families(body, accept).items()
        if name.startswith("session_pool_") and not name.startswith(skip)
    }


async def check_equal(metrics: Metrics) -> None:
    """Both formats, plain and gzipped, sample for sample what prometheus_client renders for the same state."""
    for accept in (None, OPENMETRICS):
        packed, _ = await metrics.exposition.latest(accept, gzipped=True)
        plain, content_type = await metrics.serve(accept, gzipped=False)
        assert gzip.decompress(packed) == plain
        stock, stock_type = metrics.render(accept)
        assert content_type == stock_type
        ours = pool_families(plain, accept)
        assert ours == pool_families(stock, accept)
        assert families(plain, accept).keys() == families(stock, accept).keys()
        if accept:
            assert plain.endswith(b"\n# EOF\n") and plain.count(b"# EOF") == 1


def odd(name: str, clock: ManualClock, max_age: float) -> PoolState:
    """A pool whose name needs escaping (names are checked by the config; the rendering must not care)."""
    config = PoolDefinition.model_construct(
        **{**PoolDefinition(name="x", database="d", collection="c", max_age=max_age).__dict__, "name": name}
    )
    return PoolState(config, SESSIONS, clock)


async def test_pieces_render_what_prometheus_client_renders() -> None:
    """Many pools (several groups), odd label values, NaN and infinities, stale pools, pools added and removed,
    counters: the served bytes equal prometheus_client's rendering of the same state in both formats."""
    clock = ManualClock()
    metrics = Metrics()
    pools: list[PoolState] = []
    metrics.bind(lambda: pools)
    actions = ["lock", *ODD]
    for i in range(3 * GROUP + 5):
        pool = fresh(f"p{i:03d}", max_age=30.0 if i % 7 == 0 else 3600.0, clock=clock, active=i, locked=i % 3)
        pools.append(pool)
        metrics.add_pool(pool.name, actions=actions)
    for i, name in enumerate(ODD):
        pool = odd(name, clock, 3600.0)
        pool.succeeded(stats(active=i))
        pools.append(pool)
        metrics.add_pool(name, actions=actions)
    pools[1].refresh.duration, pools[2].refresh.wait, pools[3].refresh.duration = math.nan, math.inf, -math.inf
    pools[4].underperformers = Underperformers(3, 0.5, 0.9, clock.time())
    pools.append(new_pool("never", clock=clock))  # no refresh yet: health series only
    metrics.add_pool("never")
    for pool in pools[::3]:
        metrics.refreshes.labels(pool.name).inc(2)
        metrics.admin_actions.labels(pool=pool.name, action=ODD[0]).inc()
    metrics.admin_action_failures.labels(pool="p005", action="not added before").inc()
    metrics.changed()
    await check_equal(metrics)

    # Time passes: every 7th pool is stale (max_age 30 s), without any changed(); then pools come and go.
    clock.advance(31)
    await check_equal(metrics)
    for gone in (pools.pop(0), pools.pop(GROUP), pools.pop(-1)):
        metrics.remove_pool(gone.name)
    for i in range(GROUP + 3):
        pool = fresh(f"new{i}", clock=clock, active=100 + i)
        pools.append(pool)
        metrics.add_pool(pool.name, actions=["unlock"])
    pools[5].succeeded(stats(active=777, blocked=1))
    metrics.lease_overruns.labels(pools[5].name).inc(5)
    metrics.changed(pools[5].name)
    await check_equal(metrics)
    assert b'session_pool_sessions{pool="p000"' not in (await metrics.serve(None, gzipped=False))[0]


async def test_a_change_renders_its_pool_only() -> None:
    """A refresh, a counter or the staleness rule re-render one pool's part, per content type served."""
    clock = ManualClock()
    metrics = Metrics()
    pools = [fresh(f"p{i}", max_age=60.0 if i == 3 else 3600.0, clock=clock, active=2) for i in range(200)]
    metrics.bind(lambda: pools)
    for accept in (None, OPENMETRICS):
        await metrics.exposition.latest(accept, gzipped=True)
    before = metrics.exposition.pool_renders
    assert before == 2 * len(pools)
    pools[7].succeeded(stats(active=9))
    metrics.refreshes.labels("p7").inc()
    metrics.changed("p7")
    for accept in (None, OPENMETRICS):
        body, _ = await metrics.exposition.latest(accept, gzipped=True)
        assert b'session_pool_sessions{pool="p7",state="active"} 9' in gzip.decompress(body)
    assert metrics.exposition.pool_renders == before + 2
    # p3 goes stale (max_age 60 s) with no change at all: its state series leave, the others stay.
    clock.advance(61)
    for accept in (None, OPENMETRICS):
        body, _ = await metrics.exposition.latest(accept, gzipped=False)
        assert b'session_pool_sessions{pool="p3"' not in body and b'session_pool_sessions{pool="p4"' in body
    assert metrics.exposition.pool_renders == before + 4
    # Only the daemon's families changed (a MongoDB check): no pool is rendered.
    metrics.daemon_changed()
    await metrics.exposition.latest(None, gzipped=True)
    assert metrics.exposition.pool_renders == before + 4


async def test_with_many_pools_a_pass_is_made_aside_while_the_last_bytes_are_served() -> None:
    """Beyond INLINE_POOLS a scrape after a change gets the previous bytes at once (nothing rendered on its
    way); the change shows as soon as the pass made aside, in short steps, is done."""
    metrics = Metrics()
    pools = [fresh(f"p{i}", active=2) for i in range(4 * INLINE_POOLS)]
    metrics.bind(lambda: pools)
    first, _ = await metrics.serve(None, gzipped=False)
    renders = metrics.exposition.pool_renders
    pools[0].succeeded(stats(active=7))
    metrics.changed("p0")
    stale, _ = await metrics.serve(None, gzipped=False)
    assert stale is first and metrics.exposition.pool_renders == renders  # not rendered on the scrape's way
    shown = await shown_within(metrics, lambda body: b'session_pool_sessions{pool="p0",state="active"} 7' in body)
    assert shown
    packed, _ = await metrics.serve(None, gzipped=True)
    assert b"session_pool_sessions" in gzip.decompress(packed)


async def shown_within(metrics: Metrics, seen: object, tries: Iterable[int] = range(200)) -> bool:
    """Scrape until `seen(body)` holds (a pass made aside shows within a few of them)."""
    assert callable(seen)
    for _ in tries:
        body, _ = await metrics.serve(None, gzipped=False)
        if seen(body):
            return True
        await asyncio.sleep(0.02)
    return False
