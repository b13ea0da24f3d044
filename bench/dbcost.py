"""Database cost: mongod's own CPU time per refresh, per sums pass and per `$group` scan (medians of repetitions)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient

from bench.common import DATABASE, median
from bench.refresh import run_group
from exporter.config import PoolOptions
from exporter.core import STATES, MongoSessions, queries

METHODS = ("group", "counts", "sums")
LABELS = {
    "group": "one `$group` classification scan (the old statistics)",
    "counts": "per-interval refresh: `aggregate_statistics(sums=False, fast_total=True)` (counts + `count_active`)",
    "sums": "sums pass: `aggregate_sums()`",
}
# The parts of the per-interval refresh, in the order of `queries.statistics_pipeline` (total="metadata").
PARTS = ("held sessions (marker kind x remaining time)", "inactive", "deactivated", "total (`$collStats`)", "oldest")
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (fields 14 and 15 of /proc/<pid>/stat), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        rest = fh.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / _TICK


def defaults() -> tuple[float, float]:
    """The daemon's default refresh interval and sums_interval (seconds), from the config schema."""
    options = PoolOptions()
    return float(options.interval), float(options.sums_interval)


@dataclass
class CostResult:
    """mongod CPU and wall time (seconds per call) of each method on one pool size, and the exactness check."""

    size: int
    interval: float
    sums_interval: float
    cpu: dict[str, list[float]] = field(default_factory=dict)
    wall: dict[str, list[float]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    parts: dict[str, float] = field(default_factory=dict)
    idle_rate: float = math.nan
    ours_states: dict[str, int] = field(default_factory=dict)
    group_states: dict[str, int] = field(default_factory=dict)
    count_active: int = -1
    total_equal: bool = False
    sums_equal: bool = False

    def cpu_med(self, method: str) -> float:
        """Median mongod CPU seconds per call."""
        return median(self.cpu.get(method, []))

    def wall_med(self, method: str) -> float:
        """Median wall seconds per call."""
        return median(self.wall.get(method, []))

    @property
    def per_sums(self) -> float:
        """Refresh intervals per sums pass (sums_interval / interval)."""
        return self.sums_interval / self.interval

    @property
    def per_interval(self) -> float:
        """mongod CPU per interval: the counts plus the sums pass spread over its intervals."""
        return self.cpu_med("counts") + self.cpu_med("sums") / self.per_sums

    @property
    def ratio(self) -> float:
        """Per-interval mongod CPU against one `$group` scan."""
        group = self.cpu_med("group")
        return self.per_interval / group if group > 0 else math.nan

    @property
    def exact(self) -> bool:
        """State counts, total and count_active equal the `$group` scan's at the same instant."""
        return (
            self.ours_states == self.group_states
            and self.total_equal
            and self.count_active == self.group_states.get("active")
        )


async def _batch(
    pid: int, call: Callable[[], Awaitable[Any]], calls: int, idle_rate: float
) -> tuple[float, list[float]]:
    """mongod CPU per call (net of its idle rate) over `calls` back-to-back calls, and each call's wall time."""
    walls = []
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        walls.append(time.perf_counter() - started)
    cpu = cpu_seconds(pid) - cpu0 - idle_rate * (time.monotonic() - t0)
    return max(cpu, 0.0) / calls, walls


async def idle_rate(pid: int, seconds: float) -> float:
    """mongod CPU seconds per second while nothing queries it (replication, checkpoints, TTL monitor)."""
    import asyncio

    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)


async def bench_size(
    client: AsyncMongoClient[dict[str, Any]],
    pid: int,
    collection: str,
    size: int,
    *,
    reps: int,
    batch_seconds: float,
    log: Callable[[str], None],
) -> CostResult:
    """Every method `reps` times (interleaved), each a batch of calls lasting about `batch_seconds` of wall time."""
    interval, sums_interval = defaults()
    pool = MongoSessions(client=client, db=DATABASE, collection=collection, timeout=3600, create_indexes=False)
    await pool.connect()
    out = CostResult(size=size, interval=interval, sums_interval=sums_interval)
    out.idle_rate = await idle_rate(pid, min(2.0, max(0.5, batch_seconds)))
    runs: dict[str, Callable[[], Awaitable[Any]]] = {
        # Exactly what the daemon runs (exporter.collector.refresh and exporter.collector.sums).
        "counts": lambda: pool.aggregate_statistics(sums=False, fast_total=True),
        "sums": lambda: pool.aggregate_sums(),
        "group": lambda: _group(pool),
    }
    for method in METHODS:  # a warm-up each (pulls the collection into the cache), which sizes the batches
        started = time.perf_counter()
        await runs[method]()
        took = time.perf_counter() - started
        out.calls[method] = max(1, min(500, math.ceil(batch_seconds / max(took, 1e-4))))
        out.cpu[method], out.wall[method] = [], []
    for rep in range(reps):
        order = METHODS[rep % len(METHODS) :] + METHODS[: rep % len(METHODS)]
        for method in order:
            cpu, walls = await _batch(pid, runs[method], out.calls[method], out.idle_rate)
            out.cpu[method].append(cpu)
            out.wall[method].extend(walls)
    await _check(pool, out)
    out.parts = await _profile(client, pid, pool, collection, batch_seconds, out.idle_rate)
    log(
        f"  {size:>10,}: mongod CPU group {out.cpu_med('group') * 1000:.0f} ms,"
        f" counts {out.cpu_med('counts') * 1000:.1f} ms,"
        f" sums {out.cpu_med('sums') * 1000:.0f} ms -> {out.ratio:.3f}x per interval; exact {out.exact}"
    )
    return out


async def _group(pool: MongoSessions) -> None:
    now = await pool.server_time("bench_group")
    await run_group(pool, now)


async def _check(pool: MongoSessions, out: CostResult) -> None:
    """The daemon's counts against the `$group` scan at the same instant, and its sums pass against the scan's."""
    stats = await pool.aggregate_statistics(sums=False, fast_total=True)
    group = await run_group(pool, stats.time)
    out.ours_states = {str(s): stats.states[s] for s in STATES}
    out.group_states = {str(s): group.states[s] for s in STATES}
    out.count_active = int(stats["count_active"])
    out.total_equal = stats.total == group.total
    sums = await pool.aggregate_sums()
    out.sums_equal = sums.uses == group.uses and sums.successes == group.successes and sums.total == group.total


async def _profile(
    client: AsyncMongoClient[dict[str, Any]],
    pid: int,
    pool: MongoSessions,
    collection: str,
    batch_seconds: float,
    idle: float,
) -> dict[str, float]:
    """mongod CPU per call of each part of the per-interval pipeline, run alone (median of 3 batches)."""
    now = await pool.server_time("bench_profile")
    pipeline = queries.statistics_pipeline(pool.rules, collection, now, total="metadata")
    held = len(queries.held_groups(pool.rules, now))
    # Each later stage is a $unionWith: run it after a match on no document (an empty _id index range).
    pieces = [pipeline[:held], *([{"$match": {"_id": {"$in": []}}}, stage] for stage in pipeline[held:])]
    coll = client[DATABASE][collection]
    out: dict[str, float] = {}
    for i, piece in enumerate(pieces):
        name = PARTS[i] if i < len(PARTS) else f"stage {held + i}"

        async def run(p: list[dict[str, Any]] = piece) -> None:
            cursor = await coll.aggregate(p)
            await cursor.to_list(None)

        started = time.perf_counter()
        await run()
        calls = max(1, min(500, math.ceil(batch_seconds / max(time.perf_counter() - started, 1e-4))))
        out[name] = median([(await _batch(pid, run, calls, idle))[0] for _ in range(3)])
    return out
