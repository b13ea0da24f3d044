"""Refresh cost: the daemon's per-interval refresh against the original's four counts and one `$group` scan."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient

from bench.common import DATABASE, median
from exporter.core import STATES, MongoSessions, State, Statistics, queries
from tests.support.stats import percentile

METHODS = ("ours", "original", "group", "stats", "active")
LABELS = {
    "ours": "exporter refresh (`aggregate_statistics(sums=False, fast_total=True)`, `count_active` included)",
    "stats": "  for callers: `aggregate_statistics()` with the sums (one pass over every document)",
    "active": "  for callers: `count_active()` alone",
    "original": "(a) original library: 4 x `count_documents` with `gather`",
    "group": "(b) one `$group` scan (5 states, sums, min times)",
}


@dataclass
class SizeResult:
    """Timings (seconds) of every method on one pool size, and the count check."""

    size: int
    times: dict[str, list[float]] = field(default_factory=dict)
    ours_states: dict[str, int] = field(default_factory=dict)
    group_states: dict[str, int] = field(default_factory=dict)
    seeded_states: dict[str, int] = field(default_factory=dict)
    count_active: int = -1
    counts_equal: bool = False
    sums_equal: bool = False
    times_equal: bool = False
    plans: dict[str, str] = field(default_factory=dict)
    count_active_examined: tuple[int, int] = (0, 0)
    held_examined: tuple[int, int] = (0, 0)

    def med(self, method: str) -> float:
        """Median of one method."""
        return median(self.times.get(method, []))

    def p95(self, method: str) -> float:
        """95th percentile of one method."""
        return percentile(self.times.get(method, []), 95)


def group_pipeline(pool: MongoSessions, now: datetime) -> list[dict[str, Any]]:
    """Baseline (b): one `$group` over every document classifying it like `exporter.core.classify`."""
    f = pool.fields
    live = {"$eq": [f"${f.active}", True]}
    held = {"$gt": [f"${f.next_use}", now]}
    valid = {"$eq": [f"${f.hold}.until", f"${f.next_use}"]}

    def marked(kind: str) -> dict[str, Any]:
        return {"$and": [valid, {"$eq": [f"${f.hold}.kind", kind]}]}

    state = {
        "$switch": {
            "branches": [
                {"case": {"$not": [live]}, "then": "inactive"},
                {"case": {"$not": [held]}, "then": "active"},
                {"case": marked("block"), "then": "blocked"},
                {"case": marked("lock"), "then": "locked"},
                {"case": marked("use"), "then": "in_use"},
                {"case": {"$gt": [f"${f.next_use}", now + pool.lock_time]}, "then": "blocked"},
                {"case": {"$gt": [f"${f.next_use}", now + pool.grace]}, "then": "locked"},
            ],
            "default": "in_use",
        }
    }
    oldest = {"$and": [live, {"$eq": [{"$type": f"${f.last_use}"}, "date"]}, {"$lte": [f"${f.next_use}", now]}]}
    return [
        {"$set": {"_state": state}},
        {
            "$group": {
                "_id": "$_state",
                "n": {"$sum": 1},
                "uses": {"$sum": f"${f.count_use}"},
                "successes": {"$sum": f"${f.count_success}"},
                "next_unlock": {
                    "$min": {"$cond": [{"$in": ["$_state", ["locked", "blocked"]]}, f"${f.next_use}", None]}
                },
                "oldest": {"$min": {"$cond": [oldest, f"${f.last_use}", None]}},
            }
        },
    ]


async def run_group(pool: MongoSessions, now: datetime) -> Statistics:
    """Run baseline (b) and fold its rows into a Statistics."""
    cursor = await pool.collection.aggregate(group_pipeline(pool, now))
    rows = await cursor.to_list(None)
    states = {s: 0 for s in STATES}
    uses = successes = 0
    unlocks: list[datetime] = []
    oldest: list[datetime] = []
    for row in rows:
        states[State(row["_id"])] = int(row["n"])
        uses += int(row["uses"])
        successes += int(row["successes"])
        if row.get("next_unlock") is not None:
            unlocks.append(row["next_unlock"])
        if row.get("oldest") is not None:
            oldest.append(row["oldest"])
    return Statistics(
        time=now,
        states=states,
        total=sum(states.values()),
        uses=uses,
        successes=successes,
        next_unlock=min(unlocks) if unlocks else None,
        oldest_active_last_use=min(oldest) if oldest else None,
    )


async def run_original(pool: MongoSessions, now: datetime) -> list[int]:
    """Baseline (a): the original library's four `count_documents` run with `gather`."""
    f = pool.fields
    coll = pool.collection
    return list(
        await asyncio.gather(
            coll.count_documents({f.active: {"$ne": False}, f.next_use: {"$not": {"$gt": now}}}),
            coll.count_documents({f.active: False}),
            coll.count_documents({f.next_use: {"$gt": now}}),
            coll.count_documents({}),
        )
    )


async def run_ours(pool: MongoSessions) -> tuple[Statistics, int]:
    """What the daemon does every interval (exporter.collector.refresh): both at once."""
    # As the daemon does: one aggregation without the sums (their own cadence, `aggregate_sums`);
    # count_active comes with it (derived from the same snapshot).
    stats = await pool.aggregate_statistics(sums=False, fast_total=True)
    active = stats["count_active"]
    return stats, active


async def explain(client: AsyncMongoClient[dict[str, Any]], coll: str, pipeline: list[dict[str, Any]]) -> Any:
    """`explain` with executionStats of one aggregation."""
    return await client[DATABASE].command(
        "explain", {"aggregate": coll, "pipeline": pipeline, "cursor": {}}, verbosity="executionStats"
    )


def plan_summary(plan: Any) -> str:
    """Winning plan stages of every branch, e.g. `COUNT_SCAN; IXSCAN>FETCH; COLLSCAN`."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            winning = node.get("winningPlan")
            if isinstance(winning, dict):
                found.append(_chain(winning.get("queryPlan", winning)))
            for key, value in node.items():
                if key != "winningPlan":
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(plan)
    return "; ".join(found)


def _chain(stage: dict[str, Any]) -> str:
    names = []
    node: Any = stage
    while isinstance(node, dict):
        names.append(str(node.get("stage", "?")))
        node = node.get("inputStage") or (node.get("inputStages") or [None])[0]
    return "<".join(names)


async def bench_size(
    client: AsyncMongoClient[dict[str, Any]],
    collection: str,
    size: int,
    reps: int,
    seeded: dict[str, int],
    log: Callable[[str], None],
) -> SizeResult:
    """Time every method `reps` times, interleaved, on one seeded collection; check the counts."""
    pool = MongoSessions(client=client, db=DATABASE, collection=collection, timeout=900, create_indexes=False)
    await pool.connect()
    result = SizeResult(size=size, times={m: [] for m in METHODS}, seeded_states=seeded)

    async def timed(method: str) -> float:
        started = time.perf_counter()
        now = datetime.now(UTC)
        runs: dict[str, Callable[[], Awaitable[Any]]] = {
            "ours": lambda: run_ours(pool),
            "original": lambda: run_original(pool, now),
            "group": lambda: run_group(pool, now),
            "stats": lambda: pool.aggregate_statistics(),
            "active": lambda: pool.count_active(),
        }
        await runs[method]()
        return time.perf_counter() - started

    for method in METHODS:  # one warm-up each: the first read pulls the collection into the cache
        await timed(method)
    for rep in range(reps):
        shift = rep % len(METHODS)
        order = METHODS[shift:] + METHODS[:shift]
        for method in order:
            result.times[method].append(await timed(method))
    log(
        f"  {size:>9,}: ours {result.med('ours') * 1000:.1f} ms, original {result.med('original') * 1000:.1f} ms,"
        f" group {result.med('group') * 1000:.1f} ms (median of {reps})"
    )
    stats, active = await run_ours(pool)
    group = await run_group(pool, stats.time)
    result.ours_states = {str(s): stats.states[s] for s in STATES}
    result.group_states = {str(s): group.states[s] for s in STATES}
    result.count_active = active
    result.counts_equal = result.ours_states == result.group_states and stats.total == group.total
    sums = await pool.aggregate_sums()
    result.sums_equal = sums.uses == group.uses and sums.successes == group.successes
    result.times_equal = _same_time(stats.next_unlock, group.next_unlock) and _same_time(
        stats.oldest_active_last_use, group.oldest_active_last_use
    )
    for method, pipeline in (
        ("ours", queries.statistics_pipeline(pool.rules, pool.collection.name, stats.time, total="metadata")),
        ("group", group_pipeline(pool, stats.time)),
    ):
        plan = await explain(client, collection, pipeline)
        result.plans[method] = plan_summary(plan)
    # The held sessions' counts alone (the first stages): index keys read, documents fetched.
    held = queries.held_groups(pool.rules, stats.time)
    held_plan = await client[DATABASE].command(
        "explain", {"aggregate": collection, "pipeline": held, "cursor": {}}, verbosity="executionStats"
    )
    result.held_examined = _examined(held_plan)
    count_plan = await client[DATABASE].command(
        "explain",
        {
            "count": collection,
            "query": {"active": True, "next_use": {"$not": {"$gt": stats.time}}},
        },
        verbosity="executionStats",
    )
    # count_active's filter: the server's time as a literal, exactly as MongoSessions.count_active sends it.
    es = count_plan.get("executionStats", {})
    result.plans["count_active"] = _chain(count_plan["queryPlanner"]["winningPlan"])
    result.count_active_examined = (int(es.get("totalKeysExamined", 0)), int(es.get("totalDocsExamined", 0)))
    return result


def _examined(plan: Any) -> tuple[int, int]:
    """Total index keys examined and documents fetched anywhere in an explain document."""
    keys = docs = 0
    stack = [plan]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("totalKeysExamined"), int):
                keys = max(keys, int(node["totalKeysExamined"]))
                docs = max(docs, int(node.get("totalDocsExamined", 0)))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return keys, docs


def _same_time(a: datetime | None, b: datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) < timedelta(milliseconds=1)
