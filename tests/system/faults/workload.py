"""The fault lab's workload: 64 handlers with the client core, operators through the daemon's admin API.

Handlers take a session (a short hold, or a long one for long jobs), work, and report success, a
lock or a block; a few work past their hold on purpose (late reports). Operators lock sessions the
handlers are using (one hour), deactivate active ones and unlock ones locked until 2100. Every call
is recorded in a `History` with the test's monotonic clock around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from bson import ObjectId
from pymongo import MongoClient, monitoring

from exporter import MongoSessions
from exporter.core import SessionPoolError
from tests.support.daemon import WRITE_TOKEN
from tests.system.faults.history import AdminCall, Handout, History, Report

DB, POOL = "spe_faults", "pool"
AUDIT_DB, AUDIT = "spe_faults_audit", "events"
SyncClient = MongoClient[dict[str, Any]]


@dataclass(frozen=True)
class Plan:
    """How the handlers and operators behave."""

    handlers: int = 64
    # Few enough that every session comes round again within seconds: a hold that ends early, or a
    # hand-out that is rolled back, shows up as a second hand-out while the first holder still works.
    sessions: int = 200
    admin_targets: int = 300  # half to deactivate, half to unlock
    short_hold: float = 2.0
    long_hold: float = 20.0  # a long job: holds that span the fault
    long_share: float = 0.3
    overrun_share: float = 0.04  # work past the hold on purpose: late reports
    cooldown: float = 0.5  # next_use_delay of a success
    lock: float = 5.0
    block: float = 10.0
    admin_lock: float = 3600.0
    operators: int = 2
    operator_pause: float = 0.4
    admin_lock_share: float = 0.3


class Served(monitoring.CommandListener):
    """Which member answered each successful findAndModify (a hand-out), by the driver's own events."""

    def __init__(self, history: History) -> None:
        self.history = history

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Nothing before the answer."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Only successes count."""

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Remember when and where a hand-out succeeded."""
        if event.command_name == "findAndModify":
            host, port = event.connection_id
            self.history.served.append((time.monotonic(), f"{host}:{port}"))


def seed(uri: str, plan: Plan) -> tuple[list[str], list[str], list[str]]:
    """Worker sessions, then admin targets (active ones, and ones locked until 2100), majority-committed."""
    client: SyncClient = MongoClient(uri, w="majority")
    try:
        coll = client[DB][POOL]
        blank = {"active": True, "count_use": 0, "count_success": 0, "last_use": None, "next_use": None}
        workers = coll.insert_many([{**blank, "kind": "worker"} for _ in range(plan.sessions)]).inserted_ids
        half = plan.admin_targets // 2
        active = coll.insert_many([{**blank, "kind": "admin"} for _ in range(half)]).inserted_ids
        locked = {**blank, "kind": "admin", "next_use": datetime(2100, 1, 1, tzinfo=UTC)}
        held = coll.insert_many([dict(locked) for _ in range(half)]).inserted_ids
        return [str(i) for i in workers], [str(i) for i in active], [str(i) for i in held]
    finally:
        client.close()


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, cut short by `stop`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def handler(
    index: int, pool: MongoSessions, plan: Plan, history: History, stop: asyncio.Event, rng: random.Random
) -> None:
    """Take, work, report, until told to stop (a job under way is cut short and reported)."""
    while not stop.is_set():
        hold = plan.long_hold if rng.random() < plan.long_share else plan.short_hold
        handout = Handout(index, time.monotonic(), hold)
        history.handouts.append(handout)
        try:
            doc = await pool.get_session(next_use_delay=hold)
        except SessionPoolError as exc:
            handout.ended = time.monotonic()
            handout.error = f"{type(exc).__name__}: {exc.message[:120]}"
            await _pause(stop, 0.05)
            continue
        handout.ack = handout.ended = time.monotonic()
        if doc is None:
            await _pause(stop, 0.05)
            continue
        handout.session = str(doc["_id"])
        overrun = rng.random() < plan.overrun_share
        work = hold * (rng.uniform(1.2, 1.8) if overrun else rng.uniform(0.05, 0.6))
        await _pause(stop, work)
        handout.released = time.monotonic()
        roll = rng.random()
        op, period = ("success", plan.cooldown) if roll < 0.8 else ("lock", plan.lock) if roll < 0.92 else (
            "block", plan.block)  # fmt: skip
        report = Report(index, handout.session, op, period, time.monotonic(), handout.released > handout.invoke + hold)
        history.reports.append(report)
        try:
            if op == "success":
                await pool.session_success(doc, next_use_delay=period)
            elif op == "lock":
                await pool.session_lock(doc, {"seconds": period})
            else:
                await pool.session_block(doc, {"seconds": period})
            report.ack = report.ended = time.monotonic()
        except SessionPoolError as exc:
            report.ended = time.monotonic()
            report.error = f"{type(exc).__name__}: {exc.message[:120]}"


async def operator(
    url: str,
    plan: Plan,
    workers: list[str],
    targets: list[tuple[str, str]],
    history: History,
    stop: asyncio.Event,
    rng: random.Random,
) -> None:
    """Admin requests through the daemon: a one-hour lock of a worker session (often one a handler holds), or
    the next target's deactivate / unlock; each remembered with its answer."""
    headers = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=15) as http:
        while not stop.is_set():
            if targets and rng.random() >= plan.admin_lock_share:
                session, action = targets.pop()
            else:
                session, action = rng.choice(workers), "lock"
            rid = f"lab-{ObjectId()}"
            period = plan.admin_lock if action == "lock" else None
            call = AdminCall(rid, session, action, period, time.monotonic())
            history.admin.append(call)
            body: dict[str, Any] = {"reason": rid}
            if period is not None:
                body["period"] = {"seconds": period}
            try:
                response = await http.post(
                    f"/admin/pools/{POOL}/sessions/{session}/{action}", headers={"X-Request-ID": rid}, json=body
                )
                call.status = response.status_code
                call.ack = time.monotonic()
                if response.status_code == 200:
                    call.result = response.json().get("result")
            except (httpx.TransportError, ValueError):
                call.status = 0
            await _pause(stop, plan.operator_pause)
