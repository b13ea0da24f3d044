"""Several operations as one transaction: commit on success, abort on an exception (briefly when cancelled)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from exporter.core.errors import CANCELLED_ABORT_TIMEOUT, SessionPoolError, TransactionsUnsupported, budget, guard
from exporter.core.operations import Transaction
from exporter.core.options import TransactionsMode


@asynccontextmanager
async def transaction(
    client: AsyncMongoClient[Any],
    *,
    atomic: bool,
    mode: TransactionsMode,
    write_concern: WriteConcern,
    timeout: float,  # noqa: ASYNC109 - a driver (CSOT) timeout
) -> AsyncIterator[Transaction]:
    """A driver session, in a transaction when the server is `atomic`; without one only in "fallback" `mode`."""
    if not atomic and mode == "require":
        raise TransactionsUnsupported(
            "this MongoDB is a standalone server and cannot run transactions; "
            "run a replica set, or construct MongoSessions(transactions='fallback') "
            "to run the block without one",
            operation="transaction",
        )
    async with guard("transaction", timeout, client):
        session = client.start_session()
    try:
        if not atomic:
            yield Transaction(session, atomic=False)
            return
        async with guard("transaction", timeout, client):
            await session.start_transaction(read_concern=ReadConcern("snapshot"), write_concern=write_concern)
        try:
            yield Transaction(session, atomic=True)
        except BaseException as exc:
            if session.in_transaction:
                # Cancelled (a shutdown abandoning a request): abort briefly, never wait on a frozen server.
                cancelled = isinstance(exc, asyncio.CancelledError)
                try:
                    with budget("abort", CANCELLED_ABORT_TIMEOUT) if cancelled else nullcontext():
                        async with guard("abort_transaction", timeout, client):
                            await session.abort_transaction()
                except SessionPoolError:
                    pass  # the server aborts an unfinished transaction by itself
            raise
        async with guard("commit_transaction", timeout, client):
            await session.commit_transaction()
    finally:
        await session.end_session()
