"""Fixtures of the compat suite: the drop-in client and the original library's worker on one collection."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pymongo import MongoClient

from exporter import MongoSessions
from tests.support.legacy import LegacyWorker

DB = "spe_compat"
NewPool = Callable[..., Awaitable[MongoSessions]]
Legacy = Callable[..., LegacyWorker]


@pytest.fixture
def collection() -> str:
    """A collection no other test uses."""
    return f"c_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def new_pool(mongo_uri: str, collection: str) -> AsyncIterator[NewPool]:
    """MongoSessions as an original caller builds it (the drop-in defaults), connected; closed after."""
    made: list[MongoSessions] = []

    async def make(cls: type[MongoSessions] = MongoSessions, name: str | None = None, **options: Any) -> MongoSessions:
        pool = cls(mongo_uri, db=DB, collection=name or collection, **options)
        await pool.connect()
        made.append(pool)
        return pool

    yield make
    for pool in made:
        await pool.close()


@pytest.fixture
async def legacy(mongo_uri: str, collection: str) -> AsyncIterator[Legacy]:
    """Workers of the original library on the same collection; closed after."""
    made: list[LegacyWorker] = []

    def make(zone: str = "UTC", name: str | None = None) -> LegacyWorker:
        worker = LegacyWorker(mongo_uri, DB, name or collection, zone=zone)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        await worker.close()


@pytest.fixture
def raw(sync_client: MongoClient[dict[str, Any]], collection: str) -> Any:
    """The collection through plain synchronous PyMongo (aware datetimes), for independent checks."""
    return sync_client[DB][collection]
