"""Leases under every fault of the lab: no session held twice, no acknowledged write lost, true gauges after.

For each fault a fresh lab (tests/support/faultlab.py) runs the workload (tests/system/faults/workload.py)
for a steady spell, injects the fault, keeps it `FAULTS_SECONDS`, heals it, runs on, stops, and
checks the recorded history (tests/system/faults/history.py): with the default write concern (majority)
nothing may be lost; with `w: 1` (FAULTS_WRITE_CONCERNS=majority,1) the figures say what it loses.
CI runs one short pass of each fault; the long run writes docs/faults.md (see its first lines).
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo import MongoClient
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from exporter import MongoSessions
from tests.support.daemon import READ_TOKEN, running
from tests.support.daemon import config as daemon_config
from tests.support.faultlab import FaultLab, Member
from tests.support.figures import Report
from tests.support.metrics import parse_metrics, value
from tests.system.faults.faults import FAULTS, Fault
from tests.system.faults.history import History, check_admin, double_holds, gaps, lost_holds, states
from tests.system.faults.workload import AUDIT, AUDIT_DB, DB, POOL, Plan, Served, handler, operator, seed

# CI: one short pass of each fault (about 25 s each); the long run sets these (docs/faults.md).
FAULT_SECONDS = float(os.environ.get("FAULTS_SECONDS", "6"))
AFTER_SECONDS = float(os.environ.get("FAULTS_AFTER_SECONDS", "4"))
STEADY_SECONDS = float(os.environ.get("FAULTS_STEADY_SECONDS", "2"))
# "majority": the default write concern (the server's, majority); "w1": w: 1 for the handlers and the daemon;
# "unwatched": majority, without the core's primary watch (`follow_primary=False`: the baseline).
VARIANTS = [v.strip() for v in os.environ.get("FAULTS_VARIANTS", "majority").split(",") if v.strip()]
INTERVAL = 1.0
LOCK_TIME, GRACE = timedelta(seconds=600), timedelta(seconds=60)  # the daemon's defaults
SyncClient = MongoClient[dict[str, Any]]


class Elections:
    """Watches the lab from a thread: when a member other than the old primary first says it is primary."""

    def __init__(self, lab: FaultLab, old: Member) -> None:
        self.lab, self.old = lab, old
        self.elected: float | None = None
        self.member: Member | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Elections:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set() and self.elected is None:
            others = [m for m in self.lab.members if m is not self.old]
            member = self.lab.primary(among=others)
            if member is not None:
                self.elected, self.member = time.monotonic(), member
            time.sleep(0.05)


def _final(uri: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], datetime, str]:
    """Every pool document and audit event, majority-committed, read from the primary, with its time."""
    client: SyncClient = MongoClient(uri, tz_aware=True, readPreference="primary")
    try:
        coll = client[DB].get_collection(POOL, read_concern=ReadConcern("majority"))
        events = client[AUDIT_DB].get_collection(AUDIT, read_concern=ReadConcern("majority"))
        docs = {str(d["_id"]): d for d in coll.find({})}
        audit = {str(e["_id"]): e for e in events.find({"pool": POOL})}
        now: datetime = client.admin.command("hello")["localTime"]
        now = now if now.tzinfo else now.replace(tzinfo=UTC)
        default = client.admin.command("getDefaultRWConcern").get("defaultWriteConcern", {})
        return docs, audit, now, str(default.get("w", "?"))
    finally:
        client.close()


def _settle(lab: FaultLab, timeout: float = 60.0) -> None:
    """Wait until every member answers as primary or secondary and all of them have every write so far."""
    deadline = time.monotonic() + timeout
    while sorted(lab.member_states().values()) != ["PRIMARY", "SECONDARY", "SECONDARY"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the set did not settle: {lab.member_states()}")
        time.sleep(0.2)
    client: SyncClient = MongoClient(lab.uri)
    try:
        # A write all three members must acknowledge: then every earlier write is on each of them.
        everyone = WriteConcern(w=len(lab.members), wtimeout=int(timeout * 1000))
        client[DB].get_collection("settle", write_concern=everyone).insert_one({"t": time.time()})
    finally:
        client.close()


async def _gauges_agree(url: str, docs: list[dict[str, Any]], deadline: float) -> tuple[float | None, str]:
    """Poll the daemon until its counts equal the documents classified at the refresh's own time; seconds waited."""
    started = time.monotonic()
    last = ""
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        while time.monotonic() < deadline:
            try:
                pools = (await http.get("/admin/pools", headers={"Authorization": f"Bearer {READ_TOKEN}"})).json()
                samples = parse_metrics((await http.get("/metrics")).text)
            except (httpx.TransportError, ValueError) as exc:
                last = repr(exc)
                await asyncio.sleep(0.1)
                continue
            (pool,) = [p for p in pools["pools"] if p["name"] == POOL]
            stats = pool.get("statistics")
            if stats:
                when = datetime.fromisoformat(stats["time"])
                want = states(docs, when, LOCK_TIME, GRACE)
                shown = {s: value(samples, "session_pool_sessions", pool=POOL, state=s) for s in want}
                active = value(samples, "session_pool_active_sessions", pool=POOL)
                if stats["states"] == want and shown == want and active == want["active"]:
                    return time.monotonic() - started, ""
                last = f"at {when}: want {want}, API {stats['states']}, gauges {shown}, active {active}"
            await asyncio.sleep(0.1)
    return None, last


def _first_after(times: list[float], after: float) -> float | None:
    return next((t for t in sorted(times) if t > after), None)


def _handlers_pool(uri: str, variant: str, history: History) -> MongoSessions:
    """The handlers' MongoSessions for a variant."""
    options: dict[str, Any] = {"tz_aware": True, "default_filter": {"active": True, "kind": "worker"}}
    if variant == "w1":
        options["w"] = 1
    # The baseline: the same client core, waiting on a replaced primary as the driver does.
    options["follow_primary"] = variant != "unwatched"
    return MongoSessions(uri, DB, POOL, event_listeners=[Served(history)], **options)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", list(FAULTS))
@pytest.mark.timeout(FAULT_SECONDS + AFTER_SECONDS + 240)
async def test_leases_under_the_fault(name: str, variant: str, fault_figures: Report) -> None:
    """0 sessions held twice, 0 holds lost, 0 acknowledged admin writes lost or unaudited (majority); the gauges
    equal the database within two intervals once the writes stop; how long hand-outs stopped, and why."""
    fault: Fault = FAULTS[name]
    plan = Plan()
    rng = random.Random(f"{name}-{variant}")
    history = History()
    with FaultLab(skews=fault.skews) as lab:
        workers, active, held = await asyncio.to_thread(seed, lab.uri, plan)
        targets = [(s, "deactivate") for s in active] + [(s, "unlock") for s in held]
        rng.shuffle(targets)
        concern = {"w": 1} if variant == "w1" else {}
        config = daemon_config(
            lab.uri,
            [{"name": POOL, "database": DB, "collection": POOL}],
            mongodb={"timeout": 10, "server_selection_timeout": 5, "write_concern": concern},
            defaults={"interval": INTERVAL, "jitter": 0, "refresh_timeout": 3, "sums_interval": 5},
            admin={"audit": {"database": AUDIT_DB, "collection": AUDIT}},
            log={"level": "info", "format": "json"},
        )
        pool = _handlers_pool(lab.uri, variant, history)
        await pool.connect()
        stop = asyncio.Event()
        try:
            with running(config, ready=True) as daemon:
                tasks = [asyncio.create_task(handler(i, pool, plan, history, stop, rng)) for i in range(plan.handlers)]
                tasks += [asyncio.create_task(operator(daemon.url, plan, workers, targets, history, stop, rng))
                          for _ in range(plan.operators)]  # fmt: skip
                await asyncio.sleep(STEADY_SECONDS)
                old = await asyncio.to_thread(lab.primary)
                assert old is not None
                with Elections(lab, old) as elections:
                    t_fault = time.monotonic()
                    await asyncio.to_thread(fault.inject, lab, old)
                    rules = lab.rules()
                    await asyncio.sleep(max(0.0, t_fault + FAULT_SECONDS - time.monotonic()))
                    t_heal = time.monotonic()
                    await asyncio.to_thread(fault.heal, lab, old)
                    await asyncio.sleep(AFTER_SECONDS)
                    stop.set()
                    await asyncio.gather(*tasks)
                    t_quiet = time.monotonic()
                await asyncio.to_thread(_settle, lab)
                docs, audit, now, default_w = await asyncio.to_thread(_final, lab.uri)
                waited, mismatch = await _gauges_agree(daemon.url, list(docs.values()), time.monotonic() + 15)
            rollbacks = lab.count_in_logs(os.environ.get("FAULTS_ROLLBACK_TEXT", "Rollback complete"))
        finally:
            await pool.close()

    # --- the verdicts, from the history alone (and the final documents) ---
    doubles = double_holds(history.handouts)
    lost = lost_holds(history)
    admin = check_admin(history.admin, docs, audit.values(), now)
    handed = [h for h in history.handouts if h.session is not None and h.ack is not None]
    failed = [h for h in history.handouts if h.error is not None]
    elected = elections.elected
    first_new = _first_after([t for t, member in history.served if member != old.host], t_fault)
    # Every call, answered or failed, that was under way during the fault: how long a handler waited on it.
    calls = [(h.invoke, h.ended) for h in history.handouts if h.ended is not None]
    calls += [(r.invoke, r.ended) for r in history.reports if r.ended is not None]
    hung = [ended - invoke for invoke, ended in calls if invoke <= t_heal and ended >= t_fault]
    during = sum(1 for h in handed if t_fault <= (h.ack or 0) < t_heal) / max(t_heal - t_fault, 0.1)
    settled = t_heal + min(2.0, AFTER_SECONDS / 2)
    after = sum(1 for h in handed if settled <= (h.ack or 0) < t_quiet) / max(t_quiet - settled, 0.1)
    figures = {
        "fault": fault.title,
        "variant": variant,
        "write_concern": f"default ({default_w})" if variant != "w1" else "w: 1",
        "fault_s": round(t_heal - t_fault, 2),
        "election_s": round(elected - t_fault, 2) if elected else None,
        "new_primary": elections.member.index if elections.member else None,
        "first_handout_on_new_primary_s": round(first_new - t_fault, 2) if first_new else None,
        "handouts_stopped_s": round(gaps([h.ack for h in handed if h.ack is not None], t_fault, t_quiet), 2),
        "longest_call_during_fault_s": round(max(hung, default=0.0), 2),
        "handouts_per_s_during": round(during, 1),
        "handouts_per_s_after": round(after, 1),
        "handouts": len(handed),
        "handout_failures": len(failed),
        "reports": len(history.reports),
        "late_reports": sum(1 for r in history.reports if r.stale),
        "report_failures": sum(1 for r in history.reports if r.error is not None),
        "held_twice": len(doubles),
        "handed_out_during_a_lock": len(lost),
        "admin_requests": len(history.admin),
        "admin_acknowledged": admin.acknowledged,
        "admin_lost": len(admin.lost),
        "admin_half": len(admin.half),
        "overruns_counted": sum(int(d.get("count_overrun") or 0) for d in docs.values()),
        "gauges_equal_after_quiet_s": round(waited, 2) if waited is not None else None,
        "rules": len(rules),
        "rollbacks": rollbacks,
    }
    fault_figures.record("faults", f"{name}/{variant}", figures)
    print(name, variant, figures)

    assert len(handed) > 100, figures
    assert waited is not None and waited <= 2 * INTERVAL + 0.5, mismatch
    if variant != "w1":
        assert not doubles, [(d.session, d.first, d.second) for d in doubles[:3]]
        assert not lost, [(x.session, x.by, x.handout) for x in lost[:3]]
        assert not admin.lost and not admin.half, admin
        assert admin.acknowledged > 10, admin
