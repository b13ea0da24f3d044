"""Soak: workers of the original library and of this one share a pool; the daemon's gauges stay true.

Old workers (tests/support/legacy.py: naive local times, next_use alone, connect() dropping the
indexes) and new ones take, use, lock, block and deactivate sessions concurrently, in UTC and with
the old ones in Europe/Moscow (the daemon and new workers set stored_timezone). Every few seconds
everyone pauses; the daemon refreshes, and its states, count_active and /metrics must equal an
independent classification of every document by the README's rules at the daemon's own `now`.
Throughout, no session may be handed out while another hand-out or a lock of it is in force.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pymongo import MongoClient
from pymongo.write_concern import WriteConcern

from exporter import MongoSessions
from tests.support.daemon import config, serving, write_config
from tests.support.figures import Report
from tests.support.legacy import LegacyWorker
from tests.support.metrics import parse_metrics, value

# CI runs each variant this long; docs/reliability.md comes from a longer run.
DURATION = float(os.environ.get("RELIABILITY_SOAK_SECONDS", "40"))
SESSIONS = 120
WORKERS = 6  # of each kind
HOLD = 3.0  # pick-up hold; a worker's "work" is far shorter, so an overlap is a real double hand-out
LOCK_TIME = timedelta(seconds=12)  # the pool's lock_time: legacy holds longer than this count as blocked
GRACE = timedelta(seconds=3)
QUIET_EVERY = 6.0
SLACK = timedelta(milliseconds=5)  # same host, same clock: only BSON's millisecond rounding

Doc = dict[str, Any]
Verdict = Callable[[Doc], Awaitable[Any]]


@dataclass
class Ledger:
    """What happened: hand-outs, the holds they saw, quiet checks."""

    handouts: dict[str, int] = field(default_factory=lambda: {"old": 0, "new": 0})
    during_hold: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    out: dict[Any, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    checks: int = 0
    mismatches: list[str] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=dict)


def classify(doc: Doc, now: datetime, zone: ZoneInfo) -> str:
    """The README's rules, written independently of exporter.core (stored times are `zone` wall times)."""
    if doc.get("active") is not True:
        return "inactive"
    stored = doc.get("next_use")
    if not isinstance(stored, datetime):
        return "active"
    until = stored.replace(tzinfo=zone).astimezone(UTC)
    if until <= now:
        return "active"
    hold = doc.get("hold")
    if isinstance(hold, dict) and hold.get("until") == stored and hold.get("kind") in ("use", "lock", "block"):
        return {"use": "in_use", "lock": "locked", "block": "blocked"}[hold["kind"]]
    left = until - now
    return "blocked" if left > LOCK_TIME else "locked" if left > GRACE else "in_use"


class Gate:
    """Lets workers run, or stops them at their next step and tells when none is mid-operation."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.busy = 0
        self.idle = asyncio.Event()

    async def enter(self) -> None:
        """Wait until running is allowed, then count this worker as busy."""
        await self.open.wait()
        self.busy += 1
        self.idle.clear()

    def leave(self) -> None:
        """This worker's operation is complete."""
        self.busy -= 1
        if self.busy == 0:
            self.idle.set()

    async def pause(self) -> None:
        """Stop everyone and wait for the operations in flight to finish."""
        self.open.clear()
        if self.busy:
            await self.idle.wait()


async def worker(
    kind: str,
    take: Callable[[], Awaitable[Doc | None]],
    act: dict[str, Callable[[Doc], Awaitable[Any]]],
    instant: Callable[[datetime], datetime],
    gate: Gate,
    stop: asyncio.Event,
    ledger: Ledger,
    rng: random.Random,
) -> None:
    """Take a session, use it briefly, report a verdict; record what each hand-out saw."""
    while not stop.is_set():
        await gate.enter()
        try:
            doc = await take()
            taken = datetime.now(UTC)
            if doc is None:
                continue
            ledger.handouts[kind] += 1
            before = doc.get("next_use")
            if isinstance(before, datetime) and instant(before) > taken + SLACK:
                ledger.during_hold.append(f"{kind} took {doc['_id']} held until {instant(before)} at {taken}")
            await asyncio.sleep(rng.uniform(0, 0.1))  # the work
            roll = rng.random()
            verdict = (
                "success" if roll < 0.72 else "lock" if roll < 0.88 else "block" if roll < 0.96 else
                "inactive" if roll < 0.97 else "none"
            )  # fmt: skip
            if verdict != "none":
                await act[verdict](doc)
            ledger.actions[verdict] = ledger.actions.get(verdict, 0) + 1
            released = datetime.now(UTC)
            spans = ledger.out.setdefault(doc["_id"], [])
            # Out from when the hand-out returned until the verdict landed: two such spans of one session
            # overlapping means it was handed out twice.
            for other_start, other_end in spans:
                if taken < other_end and other_start < released:
                    ledger.overlaps.append(f"{doc['_id']}: {taken}-{released} overlaps {other_start}-{other_end}")
            spans.append((taken, released))
        finally:
            gate.leave()
        await asyncio.sleep(rng.uniform(0.01, 0.05))


def verdicts(client: LegacyWorker | MongoSessions, rng: random.Random) -> dict[str, Verdict]:
    """What a worker may report about a session it used, through its own library."""

    async def lock(doc: Doc) -> Any:
        return await client.session_lock(doc, {"seconds": rng.uniform(2, 10)})

    async def block(doc: Doc) -> Any:
        return await client.session_block(doc, {"seconds": rng.uniform(20, 60)})

    async def success(doc: Doc) -> Any:
        return await client.session_success(doc)

    async def inactive(doc: Doc) -> Any:
        return await client.session_inactive(doc)

    return {"success": success, "lock": lock, "block": block, "inactive": inactive}


async def run_soak(mongo_uri: str, zone_name: str, tmp_path: Path) -> tuple[Ledger, dict[str, Any]]:
    """One soak run; the ledger and the figures."""
    zone = ZoneInfo(zone_name)
    stored_timezone = None if zone_name == "UTC" else zone_name
    db, name = "rel_mixed", f"pool_{uuid.uuid4().hex[:10]}"
    sync: MongoClient[Doc] = MongoClient(mongo_uri, tz_aware=False)
    raw = sync[db][name]
    fence = sync[db].get_collection("fence", write_concern=WriteConcern(w="majority"))
    ledger = Ledger()
    gate, stop = Gate(), asyncio.Event()
    olds = [LegacyWorker(mongo_uri, db, name, zone=zone_name, appname=f"old{i}") for i in range(WORKERS)]
    news = [
        MongoSessions(mongo_uri, db, name, stored_timezone=stored_timezone, next_use_delay=HOLD, tz_aware=True,
                      projection={"session": 1, "next_use": 1}, max_allowed_reconnect=5)
        for _ in range(WORKERS)
    ]  # fmt: skip
    for old in olds:
        old.next_use_delay = int(HOLD)
        old.projection = {"session": 1, "next_use": 1}
    for i in range(SESSIONS):
        await (olds[0].add if i % 2 else news[0].add)({"session": {"login": f"u{i}"}})
    for new in news:
        await new.connect()
    await olds[0].connect()  # drops the new library's indexes, as an old worker's start-up does
    path = write_config(
        tmp_path,
        config(mongo_uri, [{"name": "p", "database": db, "collection": name, "stored_timezone": stored_timezone}],
               defaults={"interval": 3600, "jitter": 0, "refresh_timeout": 10, "lock_time": LOCK_TIME.total_seconds(),
                         "grace": GRACE.total_seconds()}),
    )  # fmt: skip

    def old_instant(value: datetime) -> datetime:
        return value.replace(tzinfo=zone).astimezone(UTC)

    def new_instant(value: datetime) -> datetime:
        return value.astimezone(UTC)

    async with serving(path) as daemon:
        tasks = []
        clients: list[LegacyWorker | MongoSessions] = [*olds, *news]
        for i, client in enumerate(clients):
            kind = "old" if isinstance(client, LegacyWorker) else "new"
            instant = old_instant if kind == "old" else new_instant
            rand = random.Random(100 + i)
            job = worker(kind, client.get_session, verdicts(client, rand), instant, gate, stop, ledger, rand)
            tasks.append(asyncio.create_task(job))
        deadline = asyncio.get_running_loop().time() + DURATION
        async with daemon.client(None) as http:
            while asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(QUIET_EVERY)
                await gate.pause()
                # Quiet means every acknowledged write is majority-committed: the daemon reads a snapshot
                # (read concern "snapshot"), which may trail the newest w:1 writes by a journal flush.
                fence.insert_one({"at": datetime.now(UTC)})
                pool = await daemon.collector.refresh("p")
                assert pool.up and pool.stats is not None, pool.last_error
                stats = pool.stats
                expected = dict.fromkeys(["active", "in_use", "locked", "blocked", "inactive"], 0)
                for doc in raw.find({}):
                    expected[classify(doc, stats.time, zone)] += 1
                got = {str(k): v for k, v in stats.states.items()}
                samples = parse_metrics((await http.get("/metrics")).text)
                exported = {s: value(samples, "session_pool_sessions", pool="p", state=s) for s in expected}
                if got != expected or exported != {k: float(v) for k, v in expected.items()}:
                    ledger.mismatches.append(f"at {stats.time}: daemon {got}, /metrics {exported}, rules {expected}")
                if stats["count_active"] != expected["active"]:
                    ledger.mismatches.append(f"count_active {stats['count_active']} != {expected['active']}")
                ledger.checks += 1
                # Deactivated sessions come back now and then, so the pool never runs dry.
                revived = raw.update_many({"active": False}, {"$set": {"active": True}})
                ledger.actions["reactivated"] = ledger.actions.get("reactivated", 0) + revived.modified_count
                gate.open.set()
        stop.set()
        gate.open.set()
        await asyncio.gather(*tasks)
        await daemon.collector.wait_indexes("p")
        builds = daemon.metrics.registry.get_sample_value("session_pool_index_builds_total", {"pool": "p"})
        indexes = sorted(raw.index_information())
    for old in olds:
        await old.close()
    for new in news:
        await new.close()
    sync.drop_database(db)
    sync.close()
    figures = {
        "zone": zone_name,
        "seconds": DURATION,
        "workers": f"{WORKERS} original + {WORKERS} new",
        "sessions": SESSIONS,
        "handouts": dict(ledger.handouts),
        "actions": dict(sorted(ledger.actions.items())),
        "quiet_checks": ledger.checks,
        "mismatches": len(ledger.mismatches),
        "handed_out_during_a_hold": len(ledger.during_hold),
        "handed_out_twice": len(ledger.overlaps),
        "index_builds": builds,
        "indexes_after": indexes,
    }
    return ledger, figures


@pytest.mark.parametrize("zone", ["UTC", "Europe/Moscow"])
@pytest.mark.timeout(DURATION + 240)  # the soak itself, plus seeding and the checks
async def test_mixed_pool_reports_true_states(mongo_uri: str, zone: str, tmp_path: Path, report: Report) -> None:
    """Gauges equal the rules at every quiet moment; no double hand-out, none during a lock; indexes rebuilt."""
    ledger, figures = await run_soak(mongo_uri, zone, tmp_path)
    report.record("mixed_pool", zone, figures)
    assert ledger.checks >= 3, figures
    assert not ledger.mismatches, ledger.mismatches[:5]
    assert not ledger.during_hold, ledger.during_hold[:5]
    assert not ledger.overlaps, ledger.overlaps[:5]
    assert ledger.handouts["old"] > DURATION and ledger.handouts["new"] > DURATION, figures
    assert figures["index_builds"] and figures["index_builds"] >= 1, figures
    assert "active_1_next_use_1_hold.kind_1_hold.until_1__id_1" in figures["indexes_after"]
