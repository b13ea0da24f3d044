"""Each timeout setting governs one thing, measured against a stopped and a blackholed (frozen) real mongod.

- `mongodb.server_selection_timeout`: how long an operation waits for a usable server once none is known;
- `mongodb.timeout`: one operation in all (waiting for a server included);
- `defaults.refresh_timeout`: every MongoDB call of one refresh together;
- `admin.request_timeout`: every MongoDB call of one admin request together.

In each case the setting under test is the smallest; the others are far larger, so a failure that
arrives near the setting's value (and names it, with the cause) shows that it, and only it, governed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from exporter.core import MongoSessions, OperationTimeout, SessionPoolError, Unavailable
from exporter.mongod import Mongod
from tests.support.daemon import WRITE_TOKEN, InProcess, config, serving, write_config
from tests.support.faults import frozen
from tests.support.paths import ROOT

LARGE = 30.0  # every setting not under test
SMALL = 1.5  # the setting under test
# A measured failure must come after most of the setting and well before any other could end it.
EARLIEST, LATEST = SMALL * 0.8, SMALL + 2.0


def uri(server: Mongod) -> str:
    """The server's URI with a fast heartbeat, so the driver notices a frozen server in about a second."""
    return server.uri + "&heartbeatFrequencyMS=500"


def seeded(server: Mongod) -> Any:
    """One usable session in db.pool; its id."""
    client: MongoClient[dict[str, Any]] = MongoClient(server.uri)
    try:
        return client.db.pool.insert_one({"active": True, "next_use": None, "last_use": None}).inserted_id
    finally:
        client.close()


async def until(predicate: Callable[[], bool], what: str, deadline: float = 30.0) -> None:
    """Poll until true."""
    end = time.monotonic() + deadline
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def timed(call: Callable[[], Any]) -> tuple[float, BaseException | None, Any]:
    """Seconds a call took, the error it raised (if any), its result."""
    started = time.monotonic()
    try:
        result = await call()
    except SessionPoolError as exc:
        return time.monotonic() - started, exc, None
    return time.monotonic() - started, None, result


def no_server(pool: MongoSessions) -> bool:
    """The driver knows no usable server (it noticed the outage)."""
    return not pool.client.topology_description.has_readable_server()


@contextlib.asynccontextmanager
async def core_pool(server: Mongod, *, operation: float, selection: float) -> AsyncIterator[MongoSessions]:
    """A connected MongoSessions on the server, with a client made the way the daemon makes it."""
    pool = MongoSessions(
        uri(server), "db", "pool", timeout=operation, serverSelectionTimeoutMS=int(selection * 1000),
        connectTimeoutMS=int(min(selection, 10) * 1000),
    )  # fmt: skip
    try:
        await pool.connect()
        assert await pool.count_active() == 1
        yield pool
    finally:
        with contextlib.suppress(SessionPoolError):
            await pool.close()


# --- mongodb.server_selection_timeout ------------------------------------------------------------


async def test_server_selection_timeout_against_a_stopped_server(mongod_factory: Callable[..., Mongod]) -> None:
    """Once the driver knows the server is gone, an operation fails after server_selection_timeout, not timeout."""
    server = mongod_factory()
    seeded(server)
    async with core_pool(server, operation=LARGE, selection=SMALL) as pool:
        server.stop()
        await until(lambda: no_server(pool), "the driver to notice the stopped server")
        took, error, _ = await timed(pool.count_active)
    assert isinstance(error, Unavailable), error
    assert EARLIEST <= took <= LATEST, took
    assert "(no server within 1.5 s, server_selection_timeout): connection refused" in error.message


async def test_server_selection_timeout_against_a_blackholed_server(mongod_factory: Callable[..., Mongod]) -> None:
    """A frozen server, once noticed (heartbeats unanswered), also fails after server_selection_timeout."""
    server = mongod_factory()
    seeded(server)
    async with core_pool(server, operation=LARGE, selection=SMALL) as pool:
        with frozen(server):
            await until(lambda: no_server(pool), "the driver to notice the frozen server")
            took, error, _ = await timed(pool.count_active)
    assert isinstance(error, Unavailable), error
    assert EARLIEST <= took <= LATEST, took
    assert "(no server within 1.5 s, server_selection_timeout): no answer from the server" in error.message


# --- mongodb.timeout -------------------------------------------------------------------------------


async def test_timeout_against_a_stopped_server(mongod_factory: Callable[..., Mongod]) -> None:
    """With a larger server_selection_timeout, the operation's timeout ends the wait for a server."""
    server = mongod_factory()
    seeded(server)
    async with core_pool(server, operation=SMALL, selection=LARGE) as pool:
        server.stop()
        await until(lambda: no_server(pool), "the driver to notice the stopped server")
        took, error, _ = await timed(pool.count_active)
    assert isinstance(error, Unavailable), error
    assert EARLIEST <= took <= LATEST, took
    assert "(no server within 1.5 s, timeout): connection refused" in error.message


async def test_timeout_against_a_blackholed_server(mongod_factory: Callable[..., Mongod]) -> None:
    """A server that takes the request and never answers: the operation ends at its timeout, saying so."""
    server = mongod_factory()
    seeded(server)
    async with core_pool(server, operation=SMALL, selection=LARGE) as pool:
        with frozen(server):
            took, error, _ = await timed(pool.count_active)
    assert isinstance(error, OperationTimeout), error
    assert EARLIEST <= took <= LATEST, took
    assert error.message == "count_active timed out after 1.5 s (timeout): no answer from the server"


# --- defaults.refresh_timeout and admin.request_timeout: the daemon ------------------------------


@contextlib.asynccontextmanager
async def daemon(server: Mongod, tmp_path: Path, **settings: Any) -> AsyncIterator[InProcess]:
    """The daemon in-process, every MongoDB setting LARGE unless given, after one good refresh."""
    mongodb = {"timeout": LARGE, "server_selection_timeout": LARGE, **settings.pop("mongodb", {})}
    pools = [{"name": "p", "database": "db", "collection": "pool", "interval": 3600, "jitter": 0,
              "refresh_timeout": settings.pop("refresh_timeout", LARGE - 1)}]  # fmt: skip
    admin = {"listen": None, "request_timeout": settings.pop("request_timeout", LARGE)}
    data = config(uri(server), pools, mongodb=mongodb)
    data["admin"].update(admin)
    async with serving(write_config(tmp_path, data)) as running:
        await running.collector.refresh("p")
        assert running.collector.pools["p"].up, running.collector.pools["p"].last_error
        yield running


async def refresh(running: InProcess) -> tuple[float, str]:
    """One refresh now: seconds it took and its error."""
    started = time.monotonic()
    pool = await running.collector.refresh("p")
    assert not pool.up
    assert pool.last_error is not None
    return time.monotonic() - started, pool.last_error


async def test_refresh_timeout_against_a_stopped_server(mongod_factory: Callable[..., Mongod], tmp_path: Path) -> None:
    """A refresh against a stopped server fails at refresh_timeout, naming the cause."""
    server = mongod_factory()
    seeded(server)
    async with daemon(server, tmp_path, refresh_timeout=SMALL) as running:
        server.stop()
        sessions = running.collector.pools["p"].sessions
        await until(lambda: no_server(sessions), "the daemon's driver to notice the stopped server")
        took, error = await refresh(running)
    assert EARLIEST <= took <= LATEST, took
    assert "(no server within 1.5 s, refresh_timeout): connection refused" in error, error


async def test_refresh_timeout_against_a_blackholed_server(
    mongod_factory: Callable[..., Mongod], tmp_path: Path
) -> None:
    """A refresh against a frozen server fails at refresh_timeout: no answer, and which setting ended it."""
    server = mongod_factory()
    seeded(server)
    async with daemon(server, tmp_path, refresh_timeout=SMALL) as running:
        with frozen(server):
            took, error = await refresh(running)
    assert EARLIEST <= took <= LATEST, took
    assert error.endswith("timed out after 1.5 s (refresh_timeout): no answer from the server"), error


async def test_request_timeout_against_a_stopped_server(mongod_factory: Callable[..., Mongod], tmp_path: Path) -> None:
    """An admin read against a stopped server answers 503 at admin.request_timeout, naming the cause."""
    server = mongod_factory()
    sid = seeded(server)
    async with daemon(server, tmp_path, request_timeout=SMALL) as running, running.client(WRITE_TOKEN) as http:
        server.stop()
        sessions = running.collector.pools["p"].sessions
        await until(lambda: no_server(sessions), "the daemon's driver to notice the stopped server")
        started = time.monotonic()
        answer = await http.get(f"/admin/pools/p/sessions/{sid}")
        took = time.monotonic() - started
    assert answer.status_code == 503, answer.text
    assert EARLIEST <= took <= LATEST, took
    assert "(no server within 1.5 s, admin.request_timeout): connection refused" in answer.json()["message"]


async def test_request_timeout_against_a_blackholed_server(
    mongod_factory: Callable[..., Mongod], tmp_path: Path
) -> None:
    """An admin lock against a frozen server answers 504 at admin.request_timeout, and changes nothing."""
    server = mongod_factory()
    sid = seeded(server)
    async with daemon(server, tmp_path, request_timeout=SMALL) as running, running.client(WRITE_TOKEN) as http:
        with frozen(server):
            started = time.monotonic()
            answer = await http.post(f"/admin/pools/p/sessions/{sid}/lock", json={"reason": "timeout test"})
            took = time.monotonic() - started
    assert answer.status_code == 504, answer.text
    assert EARLIEST <= took <= LATEST, took
    assert "(admin.request_timeout)" in answer.json()["message"], answer.text
    # The lock ran in a transaction that never committed: the session and the audit trail are untouched.
    client: MongoClient[dict[str, Any]] = MongoClient(server.uri)
    try:
        doc = client.db.pool.find_one({"_id": sid})
        assert doc is not None and doc["next_use"] is None and "hold" not in doc, doc
        assert client.session_pool_exporter.audit.count_documents({"session_id": str(sid)}) == 0
    finally:
        client.close()


def test_the_settings_are_documented_with_their_precedence() -> None:
    """The manual's configuration page says which timeout wins when (the rule these tests check)."""
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert "\n## Timeouts\n" in page
    section = page.split("\n## Timeouts\n", 1)[1].split("\n## ", 1)[0]
    for setting in ("server_selection_timeout", "mongodb.timeout", "refresh_timeout", "admin.request_timeout"):
        assert setting in section, setting


pytestmark = pytest.mark.integration
