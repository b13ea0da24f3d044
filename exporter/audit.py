"""The audit trail of admin actions: one MongoDB collection with TTL retention and a search API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from bson import ObjectId
from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure
from pymongo.write_concern import WriteConcern

from exporter.core import Document, InvalidInput

Order = Literal["asc", "desc"]
MAX_PAGE_SIZE = 1000


class Result(StrEnum):
    """What an audited action came to, stored as its value (the audit documents and the API show the string)."""

    CHANGED = "changed"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    # Recorded before the change on a server without transactions; settled once the change is known.
    PENDING = "pending"


@dataclass(frozen=True)
class AuditFilters:
    """Search criteria of the audit trail; None means "any"."""

    pool: str | None = None
    action: str | None = None
    session_id: str | None = None
    actor: str | None = None
    request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def query(self) -> dict[str, Any]:
        """The MongoDB filter for these criteria (values are plain strings, never operators)."""
        query: dict[str, Any] = {}
        exact: dict[str, object] = {
            "pool": self.pool,
            "action": self.action,
            "session_id": self.session_id,
            "actor": self.actor,
            "request_id": self.request_id,
        }
        for name, value in exact.items():
            if value is not None:
                if not isinstance(value, str):
                    raise InvalidInput(f"{name} must be a string", field=name)
                query[name] = value
        if self.since is not None or self.until is not None:
            if self.since and self.until and self.since > self.until:
                raise InvalidInput("since must not be later than until", field="since")
            bounds: dict[str, datetime] = {}
            if self.since is not None:
                bounds["$gte"] = _aware(self.since)
            if self.until is not None:
                bounds["$lt"] = _aware(self.until)
            query["time"] = bounds
        return query


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class AuditLog:
    """Stores audit events and searches them (the shape of an events store: filters, page, order)."""

    def __init__(
        self,
        client: AsyncMongoClient[Document],
        database: str = "session_pool_exporter",
        collection: str = "audit",
        retention: timedelta = timedelta(days=90),
        write_concern: WriteConcern | None = None,
    ) -> None:
        codec: CodecOptions[Document] = CodecOptions(tz_aware=True, tzinfo=UTC)
        self.retention = retention
        self.collection: AsyncCollection[Document] = client[database].get_collection(
            collection, codec_options=codec, write_concern=write_concern
        )

    async def ensure(self) -> None:
        """Create the collection's indexes: a TTL index for retention and the search indexes."""
        seconds = int(self.retention.total_seconds())
        try:
            await self.collection.create_index("time", expireAfterSeconds=seconds, name="ttl_time")
        except OperationFailure as exc:
            if exc.code not in (85, 86):
                raise
            # Retention changed in config: change the TTL in place instead of dropping the index.
            await self.collection.database.command(
                "collMod", self.collection.name, index={"name": "ttl_time", "expireAfterSeconds": seconds}
            )
        for field in ("pool", "session_id", "actor", "action", "request_id"):
            await self.collection.create_index([(field, 1), ("time", -1)])

    async def record(self, event: Mapping[str, Any], *, db_session: AsyncClientSession | None = None) -> ObjectId:
        """Insert one event and return its id."""
        result = await self.collection.insert_one(dict(event), session=db_session)
        inserted: ObjectId = result.inserted_id
        return inserted

    async def record_many(
        self, events: Sequence[Mapping[str, Any]], *, db_session: AsyncClientSession | None = None
    ) -> list[ObjectId]:
        """Insert several events in one round trip; their ids, in order."""
        if not events:
            return []
        result = await self.collection.insert_many([dict(e) for e in events], session=db_session)
        return list(result.inserted_ids)

    async def record_unchanged(
        self, event: Mapping[str, Any], *, within: timedelta, db_session: AsyncClientSession | None = None
    ) -> ObjectId:
        """Record an action that changed nothing, coalesced: a repeat of the same actor's same "unchanged"
        action on the same session with the same reason within `within` counts on the earlier event
        (`repeats`, `last_time`) instead of adding one, so repeating a harmless call cannot grow the trail
        without bound. Another reason is another event: no reason an operator gave is lost.
        """
        same = {key: event.get(key) for key in ("actor", "action", "pool", "session_id", "reason")}
        earlier = await self.collection.find_one_and_update(
            {**same, "result": Result.UNCHANGED.value, "time": {"$gte": event["time"] - within}},
            {"$inc": {"repeats": 1}, "$set": {"last_time": event["time"], "last_request_id": event.get("request_id")}},
            projection={"_id": 1},
            session=db_session,
        )
        if earlier is not None:
            found: ObjectId = earlier["_id"]
            return found
        return await self.record(event, db_session=db_session)

    async def settle(
        self,
        event_ids: Sequence[ObjectId],
        result: Result,
        *,
        state_after: str | None = None,
        error: str | None = None,
        db_session: AsyncClientSession | None = None,
    ) -> None:
        """Give pending events their result (and the state after, or the error), by their own ids (never by a
        request id a caller may have chosen)."""
        if event_ids:
            changes: dict[str, Any] = {"result": result.value}
            if state_after is not None:
                changes["state_after"] = state_after
            if error is not None:
                changes["error"] = error
            await self.collection.update_many({"_id": {"$in": list(event_ids)}}, {"$set": changes}, session=db_session)

    async def search(
        self, filters: AuditFilters, *, page: int = 1, page_size: int = 100, order: Order = "desc"
    ) -> tuple[list[Document], int]:
        """One page of matching events, newest first unless `order` is "asc", and the total."""
        if not isinstance(page, int) or page < 1:
            raise InvalidInput("page must be 1 or more", field="page")
        if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidInput(f"page_size must be between 1 and {MAX_PAGE_SIZE}", field="page_size")
        if order not in ("asc", "desc"):
            raise InvalidInput("order must be 'asc' or 'desc'", field="order")
        query = filters.query()
        direction = 1 if order == "asc" else -1
        cursor = (
            self.collection.find(query)
            .sort([("time", direction), ("_id", direction)])
            .skip((page - 1) * page_size)
            .limit(page_size)
        )
        events = await cursor.to_list(None)
        total = await self.collection.count_documents(query)
        return events, total


def event_document(
    *,
    time: datetime,
    actor: str,
    action: str,
    pool: str,
    session_id: str | None,
    state_before: str | None,
    state_after: str | None,
    result: Result,
    reason: str | None,
    request_id: str,
    details: Mapping[str, Any] | None = None,
) -> Document:
    """Build one audit event (never holds a token or credentials)."""
    return {
        "time": time,
        "actor": actor,
        "action": action,
        "pool": pool,
        "session_id": session_id,
        "state_before": state_before,
        "state_after": state_after,
        "result": result.value,
        "reason": reason,
        "request_id": request_id,
        **(dict(details) if details else {}),
    }
