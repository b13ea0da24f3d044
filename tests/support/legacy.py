"""A worker of the original mongo_client 10.2.0, reproduced from its published behaviour for shared-pool tests.

It writes exactly what the original writes: naive local `datetime.now()` of its machine's zone
(stored by the driver as if UTC), `next_use` alone for every hold, `{active: true}` as the
default filter, `connect()` dropping every index but `_id_` and `last_use_1`. Written here from
the FIELD-NOTES' description; none of the original's code is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.results import DeleteResult, InsertOneResult, UpdateResult

Doc = dict[str, Any]


class LegacyWorker:
    """One handler process running the original library, on a machine whose clock is in `zone`."""

    def __init__(self, uri: str, db: str, collection: str, *, zone: str = "UTC", appname: str = "legacy") -> None:
        # The original's client: motor with the driver's default codec, so naive datetimes both ways.
        self.client: AsyncMongoClient[Doc] = AsyncMongoClient(uri, appname=appname, serverSelectionTimeoutMS=5000)
        self.sessions: AsyncCollection[Doc] = self.client[db][collection]
        self.zone = ZoneInfo(zone)
        self.lock_time = timedelta(minutes=10)
        self.block_time = timedelta(hours=8)
        self.next_use_delay = 1
        self.default_filter: Doc = {"active": True}
        self.default_sort = [("last_use", 1)]
        self.projection: Doc | None = {"session": 1}

    def now(self) -> datetime:
        """`datetime.now()` on the worker's machine: naive local wall time."""
        return datetime.now(UTC).astimezone(self.zone).replace(tzinfo=None)

    async def close(self) -> None:
        """Close the client."""
        await self.client.close()

    async def connect(self) -> None:
        """The original's connect(): drop every index but `_id_` and `last_use_1`, then create `last_use_1`."""
        info = await self.sessions.index_information()
        for name in info:
            if name not in ("_id_", "last_use_1"):
                await self.sessions.drop_index(name)
        if "last_use_1" not in info:
            await self.sessions.create_index([("last_use", 1)])

    def _not_held(self, offset: float = 0) -> Doc:
        return {"$or": [{"next_use": {"$lt": self.now() + timedelta(seconds=offset)}}, {"next_use": None}]}

    def _held(self, offset: float = 0) -> Doc:
        return {"next_use": {"$gt": self.now() + timedelta(seconds=offset)}}

    async def add(self, data: Mapping[str, Any]) -> InsertOneResult:
        """A new session document in the original's shape."""
        doc = {
            "active": True,
            "count_use": 0,
            "count_success": 0,
            "created": self.now(),
            "last_use": None,
            "next_use": None,
            **data,
        }
        return await self.sessions.insert_one(doc)

    async def get_session(self, count_use: int = 1, next_use_delay: float | None = None) -> Doc | None:
        """The least recently used free session, held `next_use_delay` s; the document as it was."""
        delay = self.next_use_delay if next_use_delay is None else next_use_delay
        update = {
            "$set": {"last_use": self.now(), "next_use": self.now() + timedelta(seconds=delay)},
            "$inc": {"count_use": count_use},
        }
        return await self.sessions.find_one_and_update(
            {**self.default_filter, **self._not_held()},
            update,
            sort=self.default_sort,
            projection=self.projection or None,
        )

    async def session_success(self, session: Doc, count_success: int = 1) -> UpdateResult:
        """Count a success and hold the session `next_use_delay` s."""
        update = {
            "$inc": {"count_success": count_success},
            "$set": {"next_use": self.now() + timedelta(seconds=self.next_use_delay)},
        }
        return await self.sessions.update_one({"_id": session["_id"]}, update)

    async def session_lock(self, session: Doc, period: Mapping[str, float] | None = None) -> UpdateResult:
        """next_use = now + period (default lock_time); nothing records that it was a lock."""
        until = self.now() + (timedelta(**period) if period else self.lock_time)
        return await self.sessions.update_one({"_id": session["_id"]}, {"$set": {"next_use": until}})

    async def session_block(self, session: Doc, period: Mapping[str, float] | None = None) -> UpdateResult:
        """next_use = now + period (default block_time): indistinguishable from a lock in the document."""
        until = self.now() + (timedelta(**period) if period else self.block_time)
        return await self.sessions.update_one({"_id": session["_id"]}, {"$set": {"next_use": until}})

    async def session_inactive(self, session: Doc) -> UpdateResult:
        """active = false."""
        return await self.sessions.update_one({"_id": session["_id"]}, {"$set": {"active": False}})

    async def session_update(self, session: Doc, payload: Doc, unset_payload: Doc | None = None) -> UpdateResult:
        """$set the payload (and $unset)."""
        update: Doc = {"$set": payload, **({"$unset": unset_payload} if unset_payload else {})}
        return await self.sessions.update_one({"_id": session["_id"]}, update)

    async def session_delete(self, session: Doc) -> DeleteResult:
        """Delete the document."""
        return await self.sessions.delete_one({"_id": session["_id"]})

    async def count_active(self) -> int:
        """default_filter and not held."""
        return await self.sessions.count_documents({**self.default_filter, **self._not_held()})

    async def aggregate_statistics(self) -> dict[str, int]:
        """The original's four counts (count_blocked is `active: false`)."""
        return {
            "count_active": await self.count_active(),
            "count_blocked": await self.sessions.count_documents({"active": False}),
            "count_locked": await self.sessions.count_documents({**self.default_filter, **self._held()}),
            "count_total": await self.sessions.count_documents({}),
        }
