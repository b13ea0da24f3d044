"""Stopping is always quick: SIGTERM and SIGINT end `run` within 2 s whatever MongoDB does, exit 0, no traceback.

Two seconds is the product's promise (README: "within 2 s even while MongoDB is down"), asserted as
such. Margin note: the shutdown's own bounds add up to about 1 s at worst (requests and running
refreshes get 0.3 s together, the client's close at most 0.4 s, uvicorn's 0.1 s ticks, the
interpreter's exit; docs/shutdown.md has the measured times); the rest absorbs a busy CI machine.
The daemons run with the default MongoDB timeouts (10 s per operation, 5 s server selection), so
refreshes are waiting on MongoDB when the signal comes, as in production.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import MongoClient

from exporter.mongod import Mongod, free_port
from tests.support.daemon import WRITE_TOKEN, Daemon, config, running
from tests.support.faults import frozen

PROMISE = 2.0  # seconds from the signal to the exit (README)
AUDIT = ("session_pool_exporter", "audit")  # admin.audit's default database and collection


def _config(uri: str, admin_listen: str | None = None) -> dict[str, Any]:
    """One pool, the admin API (on the main listener unless given), production timeouts, refreshes every 0.5 s."""
    return config(
        uri,
        [{"name": "p", "database": "db", "collection": "pool"}],
        mongodb={"timeout": 10, "server_selection_timeout": 5},
        defaults={"interval": 0.5, "jitter": 0, "refresh_timeout": 10},
        admin={"listen": admin_listen},
    )


def _client(server: Mongod) -> MongoClient[dict[str, Any]]:
    """A plain PyMongo client for independent checks."""
    return MongoClient(server.uri)


def _find(server: Mongod, sid: ObjectId) -> dict[str, Any] | None:
    """The session document as stored now."""
    with _client(server) as client:
        return client.db.pool.find_one({"_id": sid})


def _seeded(server: Mongod) -> ObjectId:
    """One usable session in db.pool; its id."""
    with _client(server) as client:
        oid: ObjectId = client.db.pool.insert_one({"active": True, "next_use": None, "last_use": None}).inserted_id
        return oid


def _stop(daemon: Daemon, sig: signal.Signals) -> tuple[float, int]:
    """Send `sig`; the seconds until the process exited, and its exit code."""
    assert daemon.process is not None
    started = time.monotonic()
    daemon.process.send_signal(sig)
    code = daemon.process.wait(timeout=30)
    return time.monotonic() - started, code


def _events(daemon: Daemon) -> list[dict[str, Any]]:
    """The daemon's JSON log events."""
    return [json.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")]


def _assert_stopped_quickly(daemon: Daemon, sig: signal.Signals, *, abandoned: bool = True) -> None:
    """`sig` ends the daemon within the promise, exit 0, no traceback; a waiting refresh was abandoned."""
    took, code = _stop(daemon, sig)
    print(f"{sig.name}: stopped in {took:.2f} s")  # the figures of docs/shutdown.md (pytest -s)
    logs = daemon.logs()
    assert code == 0, logs[-3000:]
    assert took < PROMISE, f"{sig.name}: {took:.2f} s from the signal to the exit"
    assert "Traceback" not in logs and "CancelledError" not in logs, logs[-5000:]
    events = _events(daemon)
    assert events[-1]["event"] == "shutdown_complete"
    if abandoned:
        # The case under test: the daemon did not wait for the refresh that was waiting on MongoDB.
        (stopped,) = [e for e in events if e["event"] == "collector_stopped"]
        assert stopped["abandoned"] >= 1, stopped


def _request(method: str, url: str) -> httpx.Response:
    """One admin request with the write token (a reason for a POST), in the caller's thread."""
    body = {"reason": "shutdown test"} if method == "POST" else None
    return httpx.request(method, url, json=body, headers={"Authorization": f"Bearer {WRITE_TOKEN}"}, timeout=20)


def test_run_stops_quickly_while_mongodb_is_stopped(mongod_factory: Callable[..., Mongod]) -> None:
    """MongoDB stopped (connections refused): SIGTERM and SIGINT each end `run` within 2 s, exit 0."""
    server = mongod_factory()
    _seeded(server)
    with running(_config(server.uri)) as term, running(_config(server.uri)) as intr:
        term.wait_ready()
        intr.wait_ready()
        server.stop()
        time.sleep(1.0)  # refreshes started since, each waiting for a server (server_selection_timeout 5 s)
        _assert_stopped_quickly(term, signal.SIGTERM)
        _assert_stopped_quickly(intr, signal.SIGINT)


def test_run_stops_quickly_while_mongodb_is_frozen(mongod_factory: Callable[..., Mongod]) -> None:
    """MongoDB frozen (SIGSTOP: connections open, no answer): SIGTERM ends `run` within 2 s and answers the
    admin request in flight 503 without applying anything; SIGINT likewise; a second SIGINT ends at once."""
    server = mongod_factory()
    sid = _seeded(server)
    admin = f"127.0.0.1:{free_port()}"  # SIGINT's daemon has the admin API on a listener of its own
    with contextlib.ExitStack() as stack:
        term, intr, twice = (stack.enter_context(running(_config(server.uri, a))) for a in (None, admin, None))
        for daemon in (term, intr, twice):
            daemon.wait_ready()
        original = _find(server, sid)
        with frozen(server):
            time.sleep(1.0)  # refreshes started since, each waiting for its refresh_timeout (10 s)
            for daemon, sig, method, url in (
                (term, signal.SIGTERM, "POST", f"{term.url}/admin/pools/p/sessions/{sid}/lock"),
                (intr, signal.SIGINT, "GET", f"http://{admin}/admin/pools/p/sessions/{sid}"),
            ):
                with ThreadPoolExecutor(1) as pool:
                    answer = pool.submit(_request, method, url)
                    time.sleep(0.5)  # the request is waiting on the frozen server
                    _assert_stopped_quickly(daemon, sig)
                    response = answer.result(timeout=10)
                assert response.status_code == 503, response.text
                assert response.json()["error"] == "shutting_down"
                assert "request_stopped" in {e["event"] for e in _events(daemon)}

            # A second Ctrl-C while the first shutdown waits on the frozen server: out at once.
            assert twice.process is not None
            started = time.monotonic()
            twice.process.send_signal(signal.SIGINT)
            time.sleep(0.2)
            twice.process.send_signal(signal.SIGINT)
            code = twice.process.wait(timeout=30)
            took = time.monotonic() - started
            assert code == 128 + signal.SIGINT, twice.logs()[-3000:]
            assert took < PROMISE, f"{took:.2f} s"
            names = [e["event"] for e in _events(twice)]
            assert "shutdown_forced" in names and "shutdown_complete" not in names, names[-10:]
            assert "Traceback" not in twice.logs()
    # Thawed: the write the shutdown stopped was never committed, and has no audit event.
    assert _find(server, sid) == original
    with _client(server) as client:
        assert client[AUDIT[0]][AUDIT[1]].count_documents({"session_id": str(sid)}) == 0


@pytest.mark.parametrize(
    ("replica_set", "blocked"),
    [("rs0", "commitTransaction"), (None, "update")],
    ids=["transaction", "standalone"],
)
def test_an_admin_write_cut_short_keeps_the_audit_rules(
    mongod_factory: Callable[..., Mongod], replica_set: str | None, blocked: str
) -> None:
    """A write already sent when SIGTERM comes (the transaction's commit; on a standalone server the
    change after its "pending" event): the daemon still stops within 2 s, the request answers 503,
    and once the server finished, the change and its audit event are there together or not at all
    (standalone: never a change without its event, the event "pending" as after a crash)."""
    server = mongod_factory(replica_set=replica_set)
    sid = _seeded(server)
    with _client(server) as client, running(_config(server.uri)) as daemon:
        daemon.wait_ready()
        original = client.db.pool.find_one({"_id": sid})
        # The server takes the command and sits on it for 2 s before running it.
        point = client.admin.command(
            "configureFailPoint", "failCommand", mode={"times": 1},
            data={"failCommands": [blocked], "blockConnection": True, "blockTimeMS": 2000,
                  "appName": "session-pool-exporter"},
        )  # fmt: skip
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(_request, "POST", f"{daemon.url}/admin/pools/p/sessions/{sid}/lock")
            client.admin.command("waitForFailPoint", "failCommand", timesEntered=point["count"] + 1, maxTimeMS=20_000)
            _assert_stopped_quickly(daemon, signal.SIGTERM, abandoned=False)
            response = answer.result(timeout=10)
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "shutting_down"
        deadline = time.monotonic() + 20
        while client.admin.command({"currentOp": True, f"command.{blocked}": {"$exists": True}})["inprog"]:
            assert time.monotonic() < deadline, "the blocked command never finished"
            time.sleep(0.1)
        changed = client.db.pool.find_one({"_id": sid}) != original
        events = list(client[AUDIT[0]][AUDIT[1]].find({"session_id": str(sid)}))
    if replica_set:
        assert [e["result"] for e in events] == (["changed"] if changed else []), (changed, events)
    else:
        # Intent first: the event was recorded before the change was sent, and never settled.
        assert [e["result"] for e in events] == ["pending"], events
