"""The console's fixtures: one seeded pool watched by a real daemon subprocess, and one real chromium."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.collection import Collection

from tests.support.browser import browser
from tests.support.console import Seeded, pool_entry, seed
from tests.support.daemon import Daemon, config, running

DB = "spe_console_ui"


@dataclass
class Console:
    """The daemon serving the console, the pool it watches and what was seeded into it."""

    daemon: Daemon
    pool: str
    sessions: Collection[dict[str, Any]]
    audit: Collection[dict[str, Any]]
    seeded: Seeded

    @property
    def url(self) -> str:
        """The console's address on the admin listener."""
        return f"{self.daemon.url}/admin/ui/"


@pytest.fixture(scope="module")
def console(mongo_uri: str, sync_client: MongoClient[dict[str, Any]]) -> Iterator[Console]:
    """A pool of 60 sessions in every state, and the daemon (admin API on) watching it."""
    # A database of its own, so the pool keeps the readable name the screenshots show.
    database, pool = f"{DB}_{uuid.uuid4().hex[:8]}", "telegram"
    sessions = sync_client[database][pool]
    seeded = seed(sessions)
    audit = {"database": database, "collection": "audit"}
    # The cap sits between the blocked (6) and the locked (8): one bulk unlock goes through, one is refused.
    data = config(mongo_uri, [pool_entry(pool, database)], admin={"audit": audit, "bulk_unlock_cap": 6})
    try:
        with running(data, ready=True) as daemon:
            yield Console(daemon, pool, sessions, sync_client[database]["audit"], seeded)
    finally:
        sync_client.drop_database(database)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's chromium, headless, for the whole module."""
    with browser() as launched:
        yield launched
