"""Hand-outs and the handlers' reports: a session taken under a lease, each report tied to the hand-out it is about."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.results import UpdateResult

from exporter.core import queries
from exporter.core.clocks import TOLERANCE
from exporter.core.failover import PrimaryReplaced, PrimaryWatch, on_primary
from exporter.core.leases import Leases
from exporter.core.model import Document, Fields, session_filter
from exporter.core.operations import IndexList, MongoOperations
from exporter.core.server import ServerView
from exporter.core.timeframe import TimeFrame

# A report's update from its hand-out's lease (None: a report this client cannot tie to one) and the frames
# of a hold's end as read and as written (see ServerView.frames).
ReportUpdate = Callable[[ObjectId | None, TimeFrame, TimeFrame], Any]


class HandOuts:
    """Takes sessions and writes the reports on them, following a replaced primary; remembers each hand-out's lease."""

    def __init__(self, operations: MongoOperations, server: ServerView, watch: PrimaryWatch | None) -> None:
        self._operations = operations
        self._server = server
        self._watch = watch
        self._leases = Leases()

    async def take(
        self,
        selectable: Callable[[TimeFrame], Mapping[str, Any]],
        fields: Fields,
        count: int,
        delay: float,
        sort: IndexList,
        projection: Mapping[str, Any] | None,
        session: AsyncClientSession | None,
    ) -> Document | None:
        """Take the first session `selectable` (given the read frame) matches in `sort` order, held `delay` seconds."""
        watch = self._watch if session is None else None

        async def take() -> Document | None:
            # The hand-out's lease: the reports on this document are checked against it (see report).
            lease = ObjectId()
            primary, shift = self._server.primary(), self._server.shift()
            read, write = self._server.frames(shift)
            doc = await on_primary(watch, "get_session", lambda: self._operations.find_one_and_update(
                selectable(read),
                queries.take_update(fields, write, count, timedelta(seconds=delay), lease),
                sort=sort,
                projection=projection,
                session=session,
                comment="get_session",
            ))  # fmt: skip
            if doc is not None and self._server.shift().read > shift.read + TOLERANCE:
                # A new primary whose clock runs further ahead came meanwhile: the driver may have retried this
                # hand-out there, reading with the old shift a hold as ended that is not. Never hand it out
                # (the session stays held by this lease until its hold ends).
                now = self._server.primary() or "another member"
                raise PrimaryReplaced("get_session", primary or "the primary", now)
            if doc is not None:
                self._leases.remember(doc, lease)
            return doc

        try:
            return await take()
        except PrimaryReplaced:
            # Abandoned on a deposed primary (its result is never handed out): once more, on the new one.
            return await take()

    async def report(
        self, operation: str, session: Any, update_of: ReportUpdate, db_session: AsyncClientSession | None
    ) -> UpdateResult:
        """A handler's report, abandoned on a primary the set has replaced and sent once more to the new one.

        A report the old primary had already replicated then lands twice: a success counts twice; a
        lock or block, which only lengthens a hold, changes nothing more. The hand-out the report was
        about is forgotten once it landed (a second report on it carries no lease).
        """
        found = self._leases.find(session)
        read, write = self._server.frames()
        update = update_of(found[1] if found is not None else None, read, write)
        selector = session_filter(session)
        watch = self._watch if db_session is None else None

        def send() -> Awaitable[UpdateResult]:
            return self._operations.update_one(selector, update, session=db_session, comment=operation)

        try:
            result = await on_primary(watch, operation, send)
        except PrimaryReplaced:
            result = await on_primary(watch, operation, send)
        if found is not None:
            self._leases.forget(found[0])
        return result
