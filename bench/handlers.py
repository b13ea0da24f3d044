"""Handlers: `get_session` against raw PyMongo `find_one_and_update`, 64 concurrent callers, no duplicates."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient, ReturnDocument

from bench.common import DATABASE, seed
from exporter.core import MongoSessions
from tests.support.stats import percentile

# Long enough that no session comes back during a run: any id handed out twice is a duplicate.
HOLD_SECONDS = 3600


@dataclass
class Run:
    """The outcome of one method over one or more timed rounds."""

    ops: int = 0
    seconds: float = 0.0
    empty: int = 0
    latencies: list[float] = field(default_factory=list)
    ids: list[ObjectId] = field(default_factory=list)
    duplicates: int = 0
    keys_after: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Operations per second."""
        return self.ops / self.seconds if self.seconds else float("nan")

    @property
    def p50(self) -> float:
        """Median latency (s)."""
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        """99th percentile latency (s)."""
        return percentile(self.latencies, 99)


def raw_call(coll: Any) -> Any:
    """Raw PyMongo doing exactly what `get_session` does: same filter, sort, update, projection."""
    update = [
        {
            "$set": {
                "last_use": "$$NOW",
                "next_use": {"$add": ["$$NOW", HOLD_SECONDS * 1000]},
                "hold": {"$mergeObjects": [{"kind": "use", "until": {"$add": ["$$NOW", HOLD_SECONDS * 1000]}}]},
                "count_use": {"$add": [{"$ifNull": ["$count_use", 0]}, 1]},
            }
        }
    ]
    query = {"active": True, "$expr": {"$lte": ["$next_use", "$$NOW"]}}

    async def call() -> Any:
        return await coll.find_one_and_update(
            query,
            update,
            sort=[("last_use", 1)],
            projection={"session": 1},
            return_document=ReturnDocument.BEFORE,
        )

    return call


async def _round(call: Any, callers: int, duration: float, run: Run) -> None:
    deadline = time.perf_counter() + duration

    async def caller() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            doc = await call()
            run.latencies.append(time.perf_counter() - started)
            if doc is None:
                run.empty += 1
            else:
                run.ids.append(doc["_id"])
            run.ops += 1

    before = len(run.ids)
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    run.seconds += time.perf_counter() - started
    taken = run.ids[before:]
    # Within a round every session stays held (HOLD_SECONDS), so an id seen twice was handed out twice.
    run.duplicates += len(taken) - len(set(taken))


async def head_keys(client: AsyncMongoClient[dict[str, Any]], collection: str) -> int:
    """Index keys the next `get_session` query examines right now (explain, `$$NOW` as a literal)."""
    query = {"active": True, "$expr": {"$lte": ["$next_use", datetime.now(UTC)]}}
    plan = await client[DATABASE].command(
        "explain",
        {"find": collection, "filter": query, "sort": {"last_use": 1}, "limit": 1},
        verbosity="executionStats",
    )
    return int(plan["executionStats"]["totalKeysExamined"])


async def compare(
    mongo_uri: str, collection: str, *, size: int, callers: int, duration: float, rounds: int
) -> dict[str, Run]:
    """Alternate raw and ours for `rounds` rounds of `duration` s, each on a freshly seeded pool; count duplicates."""

    async def reseed() -> None:
        # Every round starts from the same documents: taking sessions moves them to the end of the
        # LRU order and leaves held ones at its head, so a reused pool would get slower round by round.
        await asyncio.to_thread(seed, mongo_uri, collection, size, seed_value=3)

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True, tzinfo=UTC, maxPoolSize=100)
    try:
        pool = MongoSessions(
            client=client, db=DATABASE, collection=collection, next_use_delay=HOLD_SECONDS, create_indexes=False
        )
        await pool.connect()
        calls = {"raw": raw_call(client[DATABASE][collection]), "ours": pool.get_session}
        runs = {name: Run() for name in calls}
        for call in calls.values():  # warm-up: connections, plan cache
            await reseed()
            await _round(call, callers, min(duration, 1.0), Run())
        for rep in range(rounds):
            for name in ("raw", "ours") if rep % 2 == 0 else ("ours", "raw"):
                await reseed()
                if rep == 0 and name == "raw":
                    runs[name].keys_after.append(await head_keys(client, collection))
                await _round(calls[name], callers, duration, runs[name])
                runs[name].keys_after.append(await head_keys(client, collection))
        return runs
    finally:
        await client.close()
