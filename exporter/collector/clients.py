"""The daemon's MongoDB client (one, shared by every pool), each pool's MongoSessions on it, and their closing."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC
from typing import Any

import pymongo
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from exporter.config import Config, PoolDefinition
from exporter.core import MongoSessions
from exporter.core.clocks import MemberClocks

# Connections of the shared MongoDB client: refreshes and admin writes are few at a time; the
# HTTP connection guard keeps this many file descriptors free for them.
MONGO_POOL = 32
# Closing the client ends its server sessions first, a courtesy the server does without (it
# expires them); this bounds that part, and again the closing of sockets and monitors.
CLOSE_WITHIN = 0.2


async def close_client(client: AsyncMongoClient[dict[str, Any]]) -> None:
    """Close the client within about 2 x CLOSE_WITHIN, whatever the server does (answering, frozen, dead).

    Closing ends the server sessions first, which waits for a server: server_selection_timeout for
    one that is down (PyMongo rounds even a short timeout up to 0.5 s), the operation's timeout
    for a frozen one. Past CLOSE_WITHIN that wait is given up; the sessions were taken from the
    client already, so a second close() goes straight to closing the sockets and monitors.
    """
    with contextlib.suppress(TimeoutError, PyMongoError), pymongo.timeout(CLOSE_WITHIN):
        try:
            await asyncio.wait_for(client.close(), timeout=CLOSE_WITHIN)
        except TimeoutError:
            await asyncio.wait_for(client.close(), timeout=CLOSE_WITHIN)


def mongo_client(
    config: Config, *, appname: str = "session-pool-exporter", clocks: MemberClocks | None = None
) -> AsyncMongoClient[dict[str, Any]]:
    """The one MongoDB client the daemon's pools share (aware UTC times, the configured timeouts).

    `clocks` reads every member's clock from the client's heartbeats.
    """
    return AsyncMongoClient(
        config.mongodb.uri_value(),
        tz_aware=True,
        tzinfo=UTC,
        appname=appname,
        maxPoolSize=MONGO_POOL,  # counted in the connection guard's file-descriptor reserve
        serverSelectionTimeoutMS=int(config.mongodb.server_selection_timeout * 1000),
        connectTimeoutMS=int(min(config.mongodb.server_selection_timeout, 10) * 1000),
        event_listeners=[clocks] if clocks is not None else None,
    )


def pool_sessions(
    config: Config,
    settings: PoolDefinition,
    client: AsyncMongoClient[dict[str, Any]],
    *,
    timeout: float | None = None,
    clocks: MemberClocks | None = None,
) -> MongoSessions:
    """The MongoSessions of a pool's refreshes and admin writes (`timeout` per operation; default: mongodb.timeout).

    `clocks`: the members' clocks read from `client`'s heartbeats, so an operator's lock stays whole.
    """
    wc = config.mongodb.write_concern
    return MongoSessions(
        db=settings.database,
        collection=settings.collection,
        client=client,
        fields=settings.fields.as_fields(),
        lock_time=settings.lock_time,
        block_time=settings.block_time,
        grace=settings.grace,
        stored_timezone=settings.stored_timezone,
        timeout=config.mongodb.timeout if timeout is None else timeout,
        w=wc.w,
        j=wc.j,
        wtimeout=wc.wtimeout,
        tz_aware=True,
        statistics_read_preference=config.mongodb.read_preference,
        # The collector keeps the indexes itself, in the background (see exporter.collector.indexes).
        create_indexes=False,
        console_indexes=settings.session_fields.search,
        clocks=clocks,
    )
