"""Shared fixtures: one real mongod for the session, and typed factories on top of it."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from pymongo import MongoClient

from exporter.core import MongoSessions
from exporter.mongod import Mongod

PoolFactory = Callable[..., Awaitable[MongoSessions]]


def missing_tool(what: str) -> NoReturn:
    """A tool .ci/run installs is missing: a failure under CI=true, a skip on a developer machine."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is missing, but CI=true and .ci/run installs it")
    pytest.skip(f"{what} is missing")


def require_binary(name: str, package: str) -> str:
    """Path of a binary from PATH, the venv or /usr/bin; `missing_tool` when there is none."""
    for candidate in (shutil.which(name), Path(sys.executable).parent / name, Path("/usr/bin") / name):
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return str(candidate)
    missing_tool(f"{name} ({package})")


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
