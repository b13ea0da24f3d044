"""Shared fixtures: one real mongod for the session, and typed factories on top of it."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from exporter.core import MongoSessions
from exporter.mongod import Mongod
from tests.support.figures import Report
from tests.support.replset import ReplicaSet

PoolFactory = Callable[..., Awaitable[MongoSessions]]


@pytest.fixture(scope="session")
def report() -> Iterator[Report]:
    """Figures of the reliability and security suites; written to $RELIABILITY_REPORT at the end (.md and .json)."""
    figures = Report()
    yield figures
    target = os.environ.get("RELIABILITY_REPORT")
    if target:
        from tests.reliability.report import write_report

        write_report(figures.data, Path(target))


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """A real single-node replica set: $MONGODB_URI, or a mongod started for this test session."""
    env = os.environ.get("MONGODB_URI")
    if env:
        yield env
        return
    server = Mongod().start()
    try:
        yield server.uri
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def sync_client(mongo_uri: str) -> Iterator[MongoClient[dict[str, Any]]]:
    """A plain PyMongo client for independent checks of what the code under test wrote."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, tz_aware=True)
    yield client
    client.close()


@pytest.fixture
def unique_name() -> str:
    """A collection name no other test uses."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def pool_factory(mongo_uri: str) -> AsyncIterator[PoolFactory]:
    """Make connected MongoSessions on fresh collections; all are closed after the test."""
    made: list[MongoSessions] = []

    async def make(collection: str | None = None, db: str = "spe_test", **options: Any) -> MongoSessions:
        # Aware datetimes unless a test asks otherwise: the drop-in default (naive) has tests of its own.
        options.setdefault("tz_aware", True)
        pool = MongoSessions(mongo_uri, db, collection or f"t_{uuid.uuid4().hex[:12]}", **options)
        await pool.connect()
        made.append(pool)
        return pool

    yield make
    for pool in made:
        await pool.close()


@pytest.fixture
def mongod_factory() -> Iterator[Callable[..., Mongod]]:
    """Start private mongod servers a test may stop, kill or restart; all cleaned up after."""
    servers: list[Mongod] = []

    def make(**options: Any) -> Mongod:
        server = Mongod(**options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.cleanup()


@pytest.fixture
def replica_set() -> Iterator[ReplicaSet]:
    """A fresh real 3-member replica set (member 0 primary) a test may step down or kill; removed after."""
    members = ReplicaSet().start()
    try:
        yield members
    finally:
        members.cleanup()


# Tests that need a real server or a process: `pytest -m "not integration"` runs the rest in seconds.
_SERVER_FIXTURES = {"mongo_uri", "sync_client", "pool_factory", "mongod_factory", "replica_set"}
_SLOW = (
    "reliability/",
    "replicas/",
    "faults/",
    "test_e2e_prometheus.py",
    "test_bench_smoke.py",
    "test_demo.py",
    "test_image.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `integration` every test using a real server, and `slow` (and integration) the long suites."""
    root = os.path.dirname(__file__)
    for item in items:
        where = os.path.relpath(str(item.path), root)
        if where.startswith(_SLOW):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slow") or _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
