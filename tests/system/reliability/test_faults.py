"""Faults with a real mongod: slow and failing commands, kill -9 mid-refresh and mid-write, restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import MongoClient

from exporter.mongod import Mongod
from tests.support.daemon import Daemon, running
from tests.support.figures import Report
from tests.support.metrics import value
from tests.support.poller import Poller, Probe
from tests.support.stats import latency_summary
from tests.system.reliability.harness import APP_NAME, base_config

SyncClient = MongoClient[dict[str, Any]]
POOL = "faulty"
DB = "rel_faults"
# Tolerance of the truth checks for the time between a poll starting and the daemon rendering it.
SLACK = 0.5


def seed(server: Mongod, n: int = 40, db: str = DB, coll: str = POOL) -> list[ObjectId]:
    """Insert `n` active sessions and return their ids."""
    client: SyncClient = MongoClient(server.uri)
    try:
        docs = [{"active": True, "count_use": 0, "count_success": 0, "last_use": None, "next_use": None,
                 "session": {"login": f"user{i}"}} for i in range(n)]  # fmt: skip
        return list(client[db][coll].insert_many(docs).inserted_ids)
    finally:
        client.close()


def fail_point(server: Mongod, mode: Any, **data: Any) -> None:
    """Configure failCommand for the daemon's connections only (matched by appName)."""
    client: SyncClient = MongoClient(server.uri, serverSelectionTimeoutMS=5000)
    try:
        if mode == "off":
            client.admin.command("configureFailPoint", "failCommand", mode="off")
        else:
            client.admin.command("configureFailPoint", "failCommand", mode=mode, data={"appName": APP_NAME, **data})
    finally:
        client.close()


def up(p: Probe) -> float | None:
    """session_pool_up of the pool in a probe."""
    return value(p.samples, "session_pool_up", pool=POOL)


def last_success(p: Probe) -> float | None:
    """session_pool_last_success_timestamp_seconds in a probe."""
    return value(p.samples, "session_pool_last_success_timestamp_seconds", pool=POOL)


def failures(p: Probe) -> float:
    """session_pool_refresh_failures_total in a probe."""
    return value(p.samples, "session_pool_refresh_failures_total", pool=POOL) or 0.0


def has_state_series(p: Probe) -> bool:
    """Whether the state-derived series are exported in a probe."""
    return value(p.samples, "session_pool_sessions", pool=POOL, state="active") is not None


def check_truth(probes: list[Probe], max_age: float) -> dict[str, int]:
    """Every probe must tell the truth about freshness; returns how many probes each rule checked."""
    checked = {"stale_hidden": 0, "fresh_shown": 0, "readyz_consistent": 0}
    for p in probes:
        assert p.error is None and p.metrics_status == 200, p
        ls = last_success(p)
        if ls is None:
            assert not has_state_series(p) and p.readyz_status == 503
            continue
        age = p.t - ls
        # /readyz is asked after /metrics: a refresh may succeed in between (recovery at that instant).
        ready_success = max((s.get("last_success") or 0 for s in (p.readyz or {}).get("pools", {}).values()), default=0)
        refreshed_between = ready_success > ls
        if age > max_age + SLACK:
            assert not has_state_series(p), f"stale series exported at age {age:.2f}"
            assert p.readyz_status == 503 or refreshed_between, f"/readyz {p.readyz_status} at age {age:.2f}"
            checked["stale_hidden"] += 1
        elif age < max_age - SLACK:
            assert has_state_series(p), f"fresh series missing at age {age:.2f}"
            checked["fresh_shown"] += 1
        if p.readyz_status == 200:
            assert p.readyz is not None and p.readyz["ready"] is True
            assert all(s["fresh"] for s in p.readyz["pools"].values())
            assert age <= max_age + SLACK or refreshed_between
            checked["readyz_consistent"] += 1
    return checked


def check_fault_window(probes: list[Probe], fault_at: float, cleared_at: float, in_flight: float) -> int:
    """During a fault nothing may claim success: up is 0 once a refresh failed, no new last-success."""
    base_failures = failures(probes[0]) if probes else 0.0
    checked = 0
    for p in probes:
        ls = last_success(p)
        # Only a refresh already under way when the fault began may still succeed.
        assert ls is None or ls <= fault_at + in_flight, f"success at {ls} during a fault from {fault_at}"
        if failures(p) > base_failures:
            assert up(p) == 0.0, f"up={up(p)} after a failed refresh during the fault"
            checked += 1
    assert checked > 0, "no probe saw a failed refresh during the fault"
    return checked


def recovery(poller: Poller, daemon: Daemon, since: float, deadline: float = 30) -> float:
    """Seconds from `since` until a probe shows up=1 with a last success after `since`."""
    daemon.wait_for(
        lambda: any(up(p) == 1.0 and (last_success(p) or 0) > since for p in poller.probes[-5:]),
        "statistics to recover", deadline,
    )  # fmt: skip
    first = next(p for p in poller.probes if p.t >= since and up(p) == 1.0 and (last_success(p) or 0) > since)
    return max(0.0, (last_success(first) or since) - since)


@pytest.fixture
def server(mongod_factory: Callable[..., Mongod]) -> Mongod:
    """A private single-node replica set with test commands enabled."""
    return mongod_factory()


def test_slow_and_failing_commands(server: Mongod, report: Report) -> None:
    """blockConnection and error fail points on aggregate/count: up, timestamps and /readyz stay true."""
    seed(server)
    interval, refresh_timeout, max_age = 1.0, 1.0, 3.0
    defaults = {"interval": interval, "refresh_timeout": refresh_timeout, "max_age": max_age}
    config = base_config(server.uri, [{"name": POOL, "database": DB, "collection": POOL}], defaults=defaults)
    with running(config, ready=True) as daemon, Poller(daemon) as poller:
        time.sleep(1.5)
        # 1. Slow: every aggregation and count blocks 4 s, longer than refresh_timeout.
        slow_at = time.time()
        fail_point(server, "alwaysOn", failCommands=["aggregate", "count"], blockConnection=True, blockTimeMS=4000)
        time.sleep(max_age + 3)
        slow_end = time.time()
        fail_point(server, "off")
        slow_recovery = recovery(poller, daemon, slow_end)
        time.sleep(1)
        # 2. Failing: every aggregation and count answers an error at once.
        fail_at = time.time()
        fail_point(server, "alwaysOn", failCommands=["aggregate", "count"], errorCode=2,
                   errorLabels=[])  # fmt: skip
        time.sleep(max_age + 2)
        fail_end = time.time()
        fail_point(server, "off")
        fail_recovery = recovery(poller, daemon, fail_end)
        time.sleep(1)
        assert daemon.alive()
    probes = poller.probes
    assert not poller.failures(), poller.failures()[:3]
    truth = check_truth(probes, max_age)
    slow_checked = check_fault_window(poller.between(slow_at, slow_end), slow_at, slow_end, refresh_timeout)
    fail_checked = check_fault_window(poller.between(fail_at, fail_end), fail_at, fail_end, refresh_timeout)
    # The stale rule really applied during both faults, and /readyz said so.
    for start, end in ((slow_at, slow_end), (fail_at, fail_end)):
        window = poller.between(start + max_age + refresh_timeout + SLACK, end)
        assert window and all(not has_state_series(p) and p.readyz_status == 503 for p in window)
    # Recovery within two intervals of the fault ending (plus, for the slow server, the refresh
    # that was stuck on it, abandoned at refresh_timeout).
    assert fail_recovery <= 2 * interval, fail_recovery
    assert slow_recovery <= 2 * interval + refresh_timeout, slow_recovery
    logs = daemon.logs()
    assert "Traceback" not in logs
    assert daemon.process is not None and daemon.process.returncode == 0  # clean SIGTERM after the faults
    report.record("faults", "slow_commands", {
        "fault": "failCommand blockConnection 4 s on aggregate+count (refresh_timeout 1 s), 6 s",
        "recovery_s": round(slow_recovery, 2), "probes_in_fault": slow_checked,
    })  # fmt: skip
    report.record("faults", "failing_commands", {
        "fault": "failCommand errorCode 2 on aggregate+count, 5 s",
        "recovery_s": round(fail_recovery, 2), "probes_in_fault": fail_checked,
    })  # fmt: skip
    report.record("faults", "slow_failing_metrics_latency", latency_summary(poller.metrics_latencies()))
    report.record("faults", "slow_failing_truth_checks", truth)


def test_kill_mid_refresh_and_restart(server: Mongod, report: Report) -> None:
    """kill -9 while a refresh is waiting on the server, twice; restart; the daemon survives and recovers."""
    seed(server)
    interval, refresh_timeout, max_age = 1.0, 3.0, 3.0
    defaults = {"interval": interval, "refresh_timeout": refresh_timeout, "max_age": max_age}
    config = base_config(server.uri, [{"name": POOL, "database": DB, "collection": POOL}], defaults=defaults)
    recoveries: list[float] = []
    windows: list[tuple[float, float]] = []
    with running(config, ready=True) as daemon, Poller(daemon) as poller:
        time.sleep(1.5)
        for _ in range(2):
            # Hold the next aggregation on the server, wait until a refresh is stuck on it, then kill.
            fail_point(server, {"times": 1}, failCommands=["aggregate"], blockConnection=True, blockTimeMS=2500)
            started = value(daemon.samples(), "session_pool_refreshes_total", pool=POOL) or 0

            def refresh_started(base: float = started) -> bool:
                return (value(daemon.samples(), "session_pool_refreshes_total", pool=POOL) or 0) > base

            daemon.wait_for(refresh_started, "a refresh to start")
            time.sleep(0.3)
            server.kill()
            killed_at = time.time()
            time.sleep(max_age + 2)
            assert daemon.alive()
            # The outage ends when mongod starts: start() returns only after it answers, and a
            # refresh may already have succeeded by then.
            restarted_at = time.time()
            server.start()
            back_at = time.time()
            windows.append((killed_at, restarted_at))
            recoveries.append(recovery(poller, daemon, back_at))
            time.sleep(1)
    assert not poller.failures(), poller.failures()[:3]
    truth = check_truth(poller.probes, max_age)
    down_checked = 0
    for killed_at, back_at in windows:
        down = poller.between(killed_at, back_at)
        down_checked += check_fault_window(down, killed_at, back_at, 0.0)
        # /readyz pings MongoDB (1 s timeout, cached 1 s): 503 from then on, whatever the pool age.
        late = [p for p in down if p.t > killed_at + 2 + SLACK]
        assert late and all(p.readyz_status == 503 for p in late)
        assert all(any("unreachable" in r for r in (p.readyz or {}).get("reasons", [])) for p in late)
    assert all(r <= 2 * interval for r in recoveries), recoveries
    assert "Traceback" not in daemon.logs()
    assert daemon.process is not None and daemon.process.returncode == 0
    report.record("faults", "kill_mid_refresh", {
        "fault": "kill -9 mongod while a refresh waits on a blocked aggregate, server down 5 s, restart; twice",
        "recovery_s": [round(r, 2) for r in recoveries], "probes_while_down": down_checked,
    })  # fmt: skip
    report.record("faults", "kill_metrics_latency", latency_summary(poller.metrics_latencies()))
    report.record("faults", "kill_truth_checks", truth)


# --- admin writes while the server dies --------------------------------------------------------

ACTIONS = ("lock", "unlock", "deactivate", "activate")


class Operator(threading.Thread):
    """Applies admin actions in a loop to its own sessions (one at a time per session)."""

    def __init__(self, daemon: Daemon, index: int, ids: list[ObjectId], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.daemon_ = daemon
        self.index = index
        self.ids = ids
        self.stop_ = stop
        self.results: list[tuple[str, str, str, int, dict[str, Any] | None]] = []

    def run(self) -> None:
        """Fire actions until told to stop; remember (request id, session, action, status, body)."""
        n = 0
        with self.daemon_.client(timeout=15) as http:
            while not self.stop_.is_set():
                sid = self.ids[n % len(self.ids)]
                action = ACTIONS[(n // len(self.ids)) % len(ACTIONS)]
                rid = f"op{self.index}-{n}"
                url = f"/admin/pools/{POOL}/sessions/{sid}/{action}"
                try:
                    r = http.post(url, headers={"X-Request-ID": rid}, json={"reason": rid})
                    body = r.json()
                    self.results.append((rid, str(sid), action, r.status_code, body))
                except httpx.TransportError:
                    self.results.append((rid, str(sid), action, 0, None))
                n += 1


def test_admin_writes_survive_kill(server: Mongod, report: Report) -> None:
    """Many admin writes while mongod is killed twice: each is applied with its audit event or not at all."""
    ids = seed(server, 24)
    audit_db, audit_coll = "rel_audit", "events"
    config = base_config(server.uri, [{"name": POOL, "database": DB, "collection": POOL}],
                         mongodb={"timeout": 3, "server_selection_timeout": 1},
                         admin={"audit": {"database": audit_db, "collection": audit_coll}})  # fmt: skip
    client: SyncClient = MongoClient(server.uri, tz_aware=True)
    start_ts = client.local["oplog.rs"].find().sort("$natural", -1).limit(1).next()["ts"]
    client.close()
    stop = threading.Event()
    kills = 0
    with running(config, ready=True) as daemon:
        operators = [Operator(daemon, i, ids[i::6], stop) for i in range(6)]
        for op in operators:
            op.start()
        time.sleep(1.5)
        # Kill 1: while commits are held on the server, so transactions are mid-commit.
        fail_point(server, "alwaysOn", failCommands=["commitTransaction"], blockConnection=True, blockTimeMS=1500)
        time.sleep(0.7)
        server.kill()
        kills += 1
        time.sleep(2)
        server.start()
        time.sleep(2)
        # Kill 2: at whatever point the writes are.
        server.kill()
        kills += 1
        time.sleep(2)
        server.start()
        time.sleep(2)
        stop.set()
        for op in operators:
            op.join(timeout=60)
        assert daemon.alive()
        # Every session's state as the daemon reports it now.
        with daemon.client() as http:
            final = {str(sid): http.get(f"/admin/pools/{POOL}/sessions/{sid}").json()["state"] for sid in ids}
    results = [r for op in operators for r in op.results]
    verdict = verify_atomic(server, start_ts, results, final, f"{DB}.{POOL}", f"{audit_db}.{audit_coll}")
    statuses: dict[str, int] = {}
    for _, _, _, status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    assert verdict["writes_lost"] == 0, verdict
    assert verdict["unaudited_changes"] == 0, verdict
    assert verdict["events_without_change"] == 0, verdict
    assert verdict["state_mismatches"] == 0, verdict
    # Errors while the server was down are the documented ones, never a 500.
    assert set(statuses) <= {"200", "409", "502", "503", "504", "0"}, statuses
    assert statuses.get("200", 0) > 20
    report.record("faults", "admin_writes_under_kill", {
        "fault": "6 operators firing lock/unlock/deactivate/activate; kill -9 mongod twice (once mid-commit), restart",
        "kills": kills, "requests": len(results), "statuses": statuses, **verdict,
    })  # fmt: skip


def _entries(client: SyncClient, start_ts: Any) -> Iterator[tuple[bool, list[dict[str, Any]]]]:
    """Oplog entries after start_ts as (is_transaction, operations)."""
    for entry in client.local["oplog.rs"].find({"ts": {"$gt": start_ts}}).sort("$natural", 1):
        if entry["op"] == "c" and "applyOps" in entry.get("o", {}):
            yield True, entry["o"]["applyOps"]
        else:
            yield False, [entry]


def verify_atomic(
    server: Mongod,
    start_ts: Any,
    results: list[tuple[str, str, str, int, dict[str, Any] | None]],
    final: dict[str, str],
    pool_ns: str,
    audit_ns: str,
) -> dict[str, int]:
    """Compare the oplog (what really committed), the audit trail and the answers the operators got."""
    client: SyncClient = MongoClient(server.uri, tz_aware=True)
    try:
        unaudited = phantom = 0
        committed_rids: dict[str, str] = {}  # request id -> result of its committed audit event
        last_after: dict[str, str] = {}
        for in_txn, ops in _entries(client, start_ts):
            changes = [o for o in ops if o.get("ns") == pool_ns and o["op"] in ("u", "i", "d")]
            events = [o["o"] for o in ops if o.get("ns") == audit_ns and o["op"] == "i"]
            changed_events = {e["session_id"]: e for e in events if e["result"] == "changed"}
            if changes and not in_txn:
                unaudited += len(changes)  # an admin change outside a transaction
                continue
            for change in changes:
                sid = str(change.get("o2", change.get("o", {})).get("_id"))
                if sid not in changed_events:
                    unaudited += 1
            changed_ids = {str(c.get("o2", {}).get("_id")) for c in changes}
            for sid, event in changed_events.items():
                if sid not in changed_ids:
                    phantom += 1
                last_after[sid] = event["state_after"]
            for e in events:
                committed_rids[e["request_id"]] = e["result"]
            # A repeated action that changed nothing counts on the earlier event (AuditLog.record_unchanged):
            # its request id is committed as that event's last_request_id.
            for o in ops:
                if o.get("ns") == audit_ns and o["op"] == "u":
                    diff = o["o"].get("diff", {})
                    rid = {**diff.get("i", {}), **diff.get("u", {})}.get("last_request_id")
                    if rid is not None:
                        committed_rids[rid] = "unchanged"
        stored = {e["request_id"]: e for e in client[audit_ns.split(".")[0]][audit_ns.split(".", 1)[1]].find()}
    finally:
        client.close()
    lost = 0
    acknowledged = 0
    for rid, _sid, _action, status, body in results:
        if status == 200 and body is not None:
            acknowledged += 1
            repeat = body["result"] == "unchanged" and committed_rids.get(rid) == "unchanged"
            if committed_rids.get(rid) != body["result"] or (rid not in stored and not repeat):
                lost += 1
    mismatches = sum(1 for sid, state in final.items() if state != last_after.get(sid, "active"))
    return {
        "acknowledged_writes": acknowledged,
        "committed_events": len(committed_rids),
        "writes_lost": lost,
        "unaudited_changes": unaudited,
        "events_without_change": phantom,
        "state_mismatches": mismatches,
    }
