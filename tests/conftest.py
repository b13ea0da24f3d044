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
from tests.support.image import Image, built_image
from tests.support.machine import Share, turn
from tests.support.replset import ReplicaSet

PoolFactory = Callable[..., Awaitable[MongoSessions]]


@pytest.fixture(scope="session")
def report() -> Iterator[Report]:
    """Figures of the reliability and security suites; written to $RELIABILITY_REPORT at the end (.md and .json)."""
    figures = Report()
    yield figures
    target = os.environ.get("RELIABILITY_REPORT")
    # Under xdist only the worker that ran the suites holds figures; the others must not overwrite them.
    if target and figures.data:
        from tests.system.reliability.report import write_report

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


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    """The image built from this checkout, once per test session (the image and release tests of tests/system/ops/)."""
    yield from built_image(tmp_path_factory.mktemp("podman"))


# Tests that need a real server or a process: `pytest -m "not integration"` runs the rest in seconds.
_SERVER_FIXTURES = {"mongo_uri", "sync_client", "pool_factory", "mongod_factory", "replica_set"}
_SLOW = (
    "system/reliability/",
    "system/replicas/",
    "system/faults/",
    "system/e2e/test_e2e_prometheus.py",
    "system/ops/test_bench_smoke.py",
    "system/ops/test_image.py",
    "unit/test_demo.py",
)


# Suites that run on one xdist worker each: the manual's examples use the documented fixed ports; the
# image is built once for its tests and the release; the reliability and security suites write one
# report (RELIABILITY_REPORT) from one session.
_GROUPS = {
    "system/docs/test_examples.py": "docs",
    "system/ops/test_image.py": "image",
    "system/ops/test_release.py": "image",
    "system/reliability/": "reliability",
    "system/security/": "reliability",
    "system/faults/": "faults",
}
# Tests asserting times or throughput get the machine without heavy neighbours (tests/support/machine.py).
_MEASURES = (
    "system/replicas/",
    "system/faults/",
    "system/reliability/test_load.py",
    "system/reliability/test_faults.py",
    "system/security/test_slow_clients.py",
    "system/e2e/test_shutdown.py",
    "system/e2e/test_timeouts.py",
    "system/e2e/test_e2e_prometheus.py",
)
_HEAVY = (
    "system/ops/test_image.py",
    "system/ops/test_release.py",
    "system/ops/test_bench_smoke.py",
    "system/docs/test_examples.py",
    "system/e2e/test_sharding.py",
    "system/reliability/test_mixed_pool.py",
    "system/reliability/test_hostile.py",
    "unit/console/",
    "unit/test_demo.py",
)


def _share(item: pytest.Item) -> Share:
    """How a test shares the machine with the other workers."""
    where = os.path.relpath(str(item.path), os.path.dirname(__file__))
    if where.startswith(_MEASURES):
        return "measures"
    return "heavy" if where.startswith(_HEAVY) else "light"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Run each test (its fixtures' setup and teardown included) in its turn on the machine."""
    with turn(_share(item)):
        yield


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks it schedules by
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `integration` every test using a real server, and `slow` (and integration) the long suites;
    put the suites of _GROUPS on one worker each."""
    root = os.path.dirname(__file__)
    for item in items:
        where = os.path.relpath(str(item.path), root)
        group = next((name for prefix, name in _GROUPS.items() if where.startswith(prefix)), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
        if where.startswith(_SLOW):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slow") or _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
