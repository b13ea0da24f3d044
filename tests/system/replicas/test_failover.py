"""Failover on a real 3-member replica set: primary step-down and kill -9 under refreshes, get_session, admin writes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import MongoClient

from exporter.core import MongoSessions, SessionPoolError
from tests.support.daemon import WRITE_TOKEN, running
from tests.support.daemon import config as daemon_config
from tests.support.figures import Report
from tests.support.metrics import value
from tests.support.poller import Poller
from tests.support.replset import ReplicaSet

DB, POOL = "spe_rs", "failover"
AUDIT_DB, AUDIT = "spe_rs_audit", "events"
WORKER_SESSIONS = 5_000
ADMIN_TARGETS = 400  # each gets one admin request: half deactivate, half unlock (they start locked)
CALLERS = 64
INTERVAL = 1.0
SyncClient = MongoClient[dict[str, Any]]


@dataclass
class Workload:
    """What the callers and the operator saw."""

    handed: Counter[str] = field(default_factory=Counter)
    empty: int = 0
    failed_calls: int = 0
    failure_times: list[float] = field(default_factory=list)
    admin: list[tuple[str, str, str, int, dict[str, Any] | None, float]] = field(default_factory=list)


def _seed(uri: str) -> tuple[list[ObjectId], list[ObjectId]]:
    """Worker sessions, then admin targets: deactivate ones (active) and unlock ones (locked for a day)."""
    client: SyncClient = MongoClient(uri, w="majority")
    try:
        coll = client[DB][POOL]
        blank = {"active": True, "count_use": 0, "count_success": 0, "last_use": None, "next_use": None}
        coll.insert_many([{**blank, "kind": "worker"} for _ in range(WORKER_SESSIONS)], ordered=False)
        half = ADMIN_TARGETS // 2
        deactivate = coll.insert_many([{**blank, "kind": "admin"} for _ in range(half)]).inserted_ids
        locked = {**blank, "kind": "admin", "next_use": datetime(2100, 1, 1, tzinfo=UTC)}
        unlock = coll.insert_many([dict(locked) for _ in range(half)]).inserted_ids
        return list(deactivate), list(unlock)
    finally:
        client.close()


async def _caller(pool: MongoSessions, stop: asyncio.Event, seen: Workload) -> None:
    """Take sessions until told to stop; each is held for an hour, so none may come back during the test."""
    while not stop.is_set():
        try:
            doc = await pool.get_session(next_use_delay=3600)
        except SessionPoolError:
            seen.failed_calls += 1
            seen.failure_times.append(time.time())
            await asyncio.sleep(0.05)
            continue
        if doc is None:
            seen.empty += 1
            await asyncio.sleep(0.05)
        else:
            seen.handed[str(doc["_id"])] += 1


async def _operator(url: str, targets: list[tuple[ObjectId, str]], stop: asyncio.Event, seen: Workload) -> None:
    """One admin request per target through the daemon's admin API, remembered with its answer."""
    headers = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=15) as http:
        for sid, action in targets:
            if stop.is_set():
                return
            rid = f"rs-{sid}"
            try:
                r = await http.post(
                    f"/admin/pools/{POOL}/sessions/{sid}/{action}", headers={"X-Request-ID": rid}, json={"reason": rid}
                )
                seen.admin.append((rid, str(sid), action, r.status_code, r.json(), time.time()))
            except (httpx.TransportError, ValueError):
                seen.admin.append((rid, str(sid), action, 0, None, time.time()))
            await asyncio.sleep(0.02)


def _check_admin(uri: str, seen: Workload) -> dict[str, int]:
    """Each request's session against the audit trail: acknowledged ones applied and audited, others all or nothing."""
    client: SyncClient = MongoClient(uri, tz_aware=True, readPreference="primary")
    try:
        docs = {str(d["_id"]): d for d in client[DB][POOL].find({"kind": "admin"})}
        events = {e["request_id"]: e for e in client[AUDIT_DB][AUDIT].find({"pool": POOL})}
    finally:
        client.close()
    lost = half = acknowledged = 0
    for rid, sid, action, status, _body, _t in seen.admin:
        doc = docs[sid]
        changed = (
            doc["active"] is False
            if action == "deactivate"
            else doc["next_use"] is None or (doc["next_use"] < datetime(2099, 1, 1, tzinfo=UTC))
        )
        audited = rid in events and events[rid].get("result") == "changed"
        if status == 200:
            acknowledged += 1
            lost += not (changed and audited)
        else:
            half += changed != audited
    return {"acknowledged": acknowledged, "lost_or_unaudited": lost, "half_changes": half,
            "failed_requests": sum(1 for a in seen.admin if a[3] != 200)}  # fmt: skip


def _expected(uri: str) -> dict[str, int]:
    """Independent counts with plain filters: total, inactive, and sessions a handler can take now."""
    client: SyncClient = MongoClient(uri, tz_aware=True)
    try:
        coll = client[DB][POOL]
        now = client.admin.command("hello")["localTime"]
        free = {"active": True, "$or": [{"next_use": None}, {"next_use": {"$lte": now}}]}
        return {
            "total": coll.count_documents({}),
            "inactive": coll.count_documents({"active": False}),
            "available": coll.count_documents(free),
            "workers_held": coll.count_documents({"kind": "worker", "next_use": {"$gt": now}}),
        }
    finally:
        client.close()


@pytest.mark.parametrize(
    ("fault", "read_preference"),
    [("step_down", "primary"), ("kill", "primary"), ("kill", "secondaryPreferred")],
)
async def test_failover(replica_set: ReplicaSet, report: Report, fault: str, read_preference: str) -> None:
    """During the fault: 0 sessions handed out twice, 0 admin writes lost or half-applied, /readyz truthful;
    refreshes succeed again within two intervals of the new primary, with exact gauges once writes stop."""
    rs = replica_set
    deactivate, unlock = await asyncio.to_thread(_seed, rs.uri)
    targets = [t for pair in zip(((d, "deactivate") for d in deactivate), ((u, "unlock") for u in unlock), strict=True)
               for t in pair]  # fmt: skip
    config = daemon_config(
        rs.uri,
        [{"name": POOL, "database": DB, "collection": POOL}],
        mongodb={"timeout": 3, "server_selection_timeout": 2, "read_preference": read_preference},
        defaults={"interval": INTERVAL, "jitter": 0, "refresh_timeout": 3, "sums_interval": 60},
        admin={"audit": {"database": AUDIT_DB, "collection": AUDIT}},
        log={"level": "info", "format": "json"},
    )
    seen = Workload()
    stop = asyncio.Event()
    # w=majority: a get_session acknowledged by a primary that dies before replicating it would
    # otherwise be rolled back, and the session handed out again.
    pool = MongoSessions(rs.uri, DB, POOL, w="majority", default_filter={"active": True, "kind": "worker"},
                         tz_aware=True, create_indexes=False)  # fmt: skip
    await pool.connect()
    with running(config, ready=True) as daemon, Poller(daemon, period=0.1) as poller:
        tasks = [asyncio.create_task(_caller(pool, stop, seen)) for _ in range(CALLERS)]
        tasks += [asyncio.create_task(_operator(daemon.url, targets[i::4], stop, seen)) for i in range(4)]
        await asyncio.sleep(2)
        old = rs.primary()
        assert old is not None
        t_fault = time.time()
        if fault == "step_down":
            await asyncio.to_thread(rs.step_down, old)
        else:
            old.kill()  # SIGKILL of the mongod this test started, by its pid
        await asyncio.to_thread(rs.wait_primary, other_than=old)
        t_elected = time.time()
        await asyncio.sleep(4 * INTERVAL)
        stop.set()
        await asyncio.gather(*tasks)
        t_quiet = time.time()
        # One refresh that started after the last write, then the gauges must be exact.
        await asyncio.sleep(2 * INTERVAL + 0.3)
        samples = daemon.samples()
        expected = await asyncio.to_thread(_expected, rs.uri)
    await pool.close()
    probes = poller.probes

    # Sessions: none handed out twice, and every call that failed did so only around the fault.
    duplicates = sum(1 for n in seen.handed.values() if n > 1)
    assert duplicates == 0
    assert len(seen.handed) > 500
    assert all(t_fault - 0.5 <= t <= t_elected + 2 * INTERVAL for t in seen.failure_times), (
        t_fault, t_elected, seen.failure_times)  # fmt: skip

    # Admin writes: every acknowledged one applied and audited; a failed one all or nothing.
    verdict = await asyncio.to_thread(_check_admin, rs.uri, seen)
    assert verdict["lost_or_unaudited"] == 0 and verdict["half_changes"] == 0, verdict
    assert verdict["acknowledged"] > 20, verdict

    # Recovery: a refresh succeeds within two intervals of the election, with exact gauges after the writes.
    def last_success(p: Any) -> float:
        return value(p.samples, "session_pool_last_success_timestamp_seconds", pool=POOL) or 0.0

    recovered = next((p.t for p in probes if p.t >= t_elected and last_success(p) >= t_elected), None)
    assert recovered is not None
    recovery = recovered - t_elected
    assert recovery <= 2 * INTERVAL + 0.2, recovery
    assert value(samples, "session_pool_sessions", pool=POOL, state="inactive") == expected["inactive"]
    assert value(samples, "session_pool_active_sessions", pool=POOL) == expected["available"]
    assert sum(value(samples, "session_pool_sessions", pool=POOL, state=s) or 0 for s in
               ("active", "in_use", "locked", "blocked", "inactive")) == expected["total"]  # fmt: skip
    assert value(samples, "session_pool_up", pool=POOL) == 1

    # /readyz: with reads on the primary, not ready while there is none (after the 1 s ping cache);
    # with secondaryPreferred the statistics go on from a secondary, so it stays ready.
    outage = [p for p in probes if t_fault + 1.2 <= p.t and p.t + (p.readyz_latency or 0) < t_elected]
    if read_preference == "primary":
        assert all(p.readyz_status == 503 for p in outage), [(p.t, p.readyz_status) for p in outage]
    else:
        assert all(p.readyz_status == 200 for p in probes if p.t > t_fault), "not ready although secondaries answer"
    after = [p for p in probes if p.t >= t_elected + 2 * INTERVAL]
    assert after and all(p.readyz_status == 200 for p in after)
    not_ready = sum(1 for p in probes if p.t >= t_fault and p.readyz_status != 200)

    report.record("replica_set", f"{fault}-{read_preference}", {
        "election_s": round(t_elected - t_fault, 3),
        "recovery_after_election_s": round(recovery, 3),
        "get_session_calls": sum(seen.handed.values()) + seen.failed_calls + seen.empty,
        "get_session_failed": seen.failed_calls, "duplicates": duplicates,
        "held_without_caller": expected["workers_held"] - len(seen.handed),
        "admin": verdict, "readyz_not_ready_probes": not_ready, "quiet_s": round(t_quiet - t_elected, 3),
    })  # fmt: skip
    print(fault, read_preference, report.data["replica_set"][f"{fault}-{read_preference}"])
