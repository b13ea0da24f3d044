"""MongoSessions: the pool of accounts handlers embed (the seed's API on PyMongo's async driver)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from types import TracebackType
from typing import Any, Literal, Self

from bson import ObjectId
from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure as DriverOperationFailure
from pymongo.errors import PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.results import DeleteResult, InsertOneResult, UpdateResult
from pymongo.write_concern import WriteConcern

from exporter.core import queries
from exporter.core.errors import InvalidInput, SessionNotFound, SessionPoolError, TransactionsUnsupported
from exporter.core.model import (
    MAX_PERIOD,
    Document,
    Fields,
    Hold,
    Period,
    State,
    Statistics,
    check_keys,
    classify,
    duration,
    parse_period,
    parse_session_id,
)
from exporter.core.operations import DbSession, MongoOperations, Transaction, driver_session
from exporter.core.timeframe import TimeFrame

SessionRef = Mapping[str, Any] | ObjectId | str


class MongoSessions(MongoOperations):
    """A pool of accounts ("sessions") in one MongoDB collection, shared by many handlers."""

    def __init__(
        self,
        mongo_url: str | None = None,
        db: str | None = None,
        collection: str | None = None,
        *,
        client: AsyncMongoClient[Document] | None = None,
        fields: Fields | Mapping[str, str] | None = None,
        next_use: str | None = None,
        active: str | None = None,
        session: str | None = None,
        last_use: str | None = None,
        hold: str | None = None,
        lock_time: float | timedelta | Period = timedelta(minutes=10),
        block_time: float | timedelta | Period = timedelta(hours=8),
        next_use_delay: float = 1,
        grace: float | timedelta | Period = timedelta(seconds=60),
        default_filter: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | None = None,
        stored_timezone: str | tzinfo | None = None,
        timeout: float = 10.0,
        w: int | str | None = None,
        j: bool | None = None,
        wtimeout: int | None = None,
        transactions: Literal["require", "fallback"] = "require",
        create_indexes: bool = True,
        **client_options: Any,
    ) -> None:
        if db is None or collection is None:
            raise InvalidInput("MongoSessions needs a database and a collection name", field="db")
        if client is None and mongo_url is None:
            raise InvalidInput("MongoSessions needs a mongo_url or a client", field="mongo_url")
        base = Fields(**fields) if isinstance(fields, Mapping) else (fields or Fields())
        renames = {"next_use": next_use, "active": active, "session": session, "last_use": last_use, "hold": hold}
        self._fields = Fields(**{**base.__dict__, **{k: v for k, v in renames.items() if v is not None}})
        self._lock_time = duration(lock_time, "lock_time")
        self._block_time = duration(block_time, "block_time")
        self._grace = duration(grace, "grace")
        self._next_use_delay = self._check_delay(next_use_delay)
        if default_filter is not None and not isinstance(default_filter, Mapping):
            raise InvalidInput("default_filter must be a dict", field="default_filter")
        self._default_filter = dict(default_filter) if default_filter is not None else None
        self._projection = dict(projection) if projection is not None else None
        self._frame = TimeFrame(stored_timezone)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
            raise InvalidInput(f"timeout must be between 0 and 3600 seconds, got {timeout!r}", field="timeout")
        self._timeout = float(timeout)
        if w == 0:
            raise InvalidInput("w=0 (unacknowledged writes) is refused: a pool must know its writes landed", field="w")
        try:
            self._write_concern = WriteConcern(w=w, j=j, wtimeout=wtimeout)
        except (TypeError, ValueError, PyMongoError) as exc:
            raise InvalidInput(f"invalid write concern: {exc}", field="w") from None
        if transactions not in ("require", "fallback"):
            raise InvalidInput("transactions must be 'require' or 'fallback'", field="transactions")
        self._transactions = transactions
        self._create_indexes = create_indexes
        self._owns_client = client is None
        if client is None:
            options = {"tz_aware": True, "tzinfo": UTC, "serverSelectionTimeoutMS": 5000, **client_options}
            try:
                client = AsyncMongoClient(mongo_url, **options)
            except PyMongoError as exc:
                raise InvalidInput(f"invalid MongoDB connection: {exc}", field="mongo_url") from None
        self._client: AsyncMongoClient[Document] = client
        self._db_name = db
        self._topology: str | None = None
        self.switch_collection(collection)

    # -- configuration (the seed's MongoFields properties; subclasses may override them) --

    @property
    def fields(self) -> Fields:
        """All field names in one object."""
        return self._fields

    @property
    def next_use(self) -> str:
        """Name of the field holding the time until which the session is held."""
        return self._fields.next_use

    @property
    def active(self) -> str:
        """Name of the field that is false for a permanently disabled session."""
        return self._fields.active

    @property
    def session(self) -> str:
        """Name of the field holding the account's credentials."""
        return self._fields.session

    @property
    def last_use(self) -> str:
        """Name of the field holding the time the session was last handed out."""
        return self._fields.last_use

    @property
    def hold(self) -> str:
        """Name of the field recording which operation set `next_use` (use, lock, block)."""
        return self._fields.hold

    @property
    def lock_time(self) -> timedelta:
        """Default period of `session_lock`."""
        return self._lock_time

    @property
    def block_time(self) -> timedelta:
        """Default period of `session_block`."""
        return self._block_time

    @property
    def grace(self) -> timedelta:
        """Holds without a recorded cause shorter than this count as in use, not locked."""
        return self._grace

    @property
    def next_use_delay(self) -> float:
        """Seconds a session is held right after `get_session` hands it out."""
        return self._next_use_delay

    @property
    def default_filter(self) -> dict[str, Any]:
        """Filter of selectable sessions; by default the active field is true or missing."""
        if self._default_filter is not None:
            return dict(self._default_filter)
        return {self.active: {"$in": [True, None]}}

    @property
    def projection(self) -> dict[str, Any] | None:
        """Fields returned by `get_session` and `get_sessions`."""
        if self._projection is not None:
            return dict(self._projection)
        return {"_id": 1, self.session: 1}

    @property
    def stored_timezone(self) -> tzinfo | None:
        """Zone of naive local times written by the original library, or None for UTC."""
        return self._frame.zone

    @property
    def timeout(self) -> float:
        """Seconds each operation may take."""
        return self._timeout

    @property
    def client(self) -> AsyncMongoClient[Document]:
        """The underlying PyMongo async client."""
        return self._client

    @property
    def collection(self) -> AsyncCollection[Document]:
        """The collection in use."""
        return self._collection

    @property
    def topology(self) -> str | None:
        """'replica_set', 'sharded' or 'standalone' once connected, else None."""
        return self._topology

    @property
    def supports_transactions(self) -> bool:
        """True when the server runs multi-document transactions (needs `connect()` first)."""
        return self._topology in ("replica_set", "sharded")

    @property
    def rules(self) -> queries.StateRules:
        """What the state of a document depends on, besides the document and the time."""
        return queries.StateRules(self._fields, self.lock_time, self.grace, self._frame)

    # -- lifecycle --

    async def connect(self) -> Self:
        """Check the server, learn its topology and create the pool's indexes if allowed."""
        async with self._guard("connect"):
            hello = await self._client.admin.command("hello")
        if hello.get("msg") == "isdbgrid":
            self._topology = "sharded"
        elif hello.get("setName"):
            self._topology = "replica_set"
        else:
            self._topology = "standalone"
        if self._create_indexes:
            await self.ensure_indexes()
        return self

    def switch_collection(self, collection: str) -> None:
        """Use another collection of the same database from now on."""
        if not isinstance(collection, str) or not collection or "$" in collection:
            raise InvalidInput(f"invalid collection name {collection!r}", field="collection")
        codec: CodecOptions[Document] = CodecOptions(tz_aware=True, tzinfo=UTC)
        self._collection = self._client[self._db_name].get_collection(
            collection, codec_options=codec, write_concern=self._write_concern
        )

    async def close(self) -> None:
        """Close the client if this object created it."""
        if self._owns_client:
            await self._client.close()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def index_specs(self) -> list[tuple[list[tuple[str, int]], str]]:
        """The indexes the pool needs: keys and why."""
        return queries.index_specs(self._fields)

    async def ensure_indexes(self) -> list[str]:
        """Create the pool's indexes if missing; never drop or alter anyone else's."""
        names: list[str] = []
        for keys, _why in self.index_specs():
            async with self._guard("create_index"):
                try:
                    names.append(await self._collection.create_index(keys))
                except DriverOperationFailure as exc:
                    # 85/86: the same keys already exist under another name or options; keep theirs.
                    if exc.code not in (85, 86):
                        raise
        return names

    # -- time --

    def from_stored(self, when: datetime) -> datetime:
        """Convert a time read from the collection to a true aware UTC time."""
        return self._frame.from_stored(when)

    async def server_time(self, _op: str = "server_time") -> datetime:
        """The server's clock (`hello.localTime`), aware UTC."""
        async with self._guard(_op):
            hello = await self._client.admin.command("hello")
        now: datetime = hello["localTime"]
        return now if now.tzinfo else now.replace(tzinfo=UTC)

    def _convert(self, doc: Document) -> Document:
        if self._frame.zone is None:
            return doc
        return {k: self.from_stored(v) if isinstance(v, datetime) else v for k, v in doc.items()}

    # -- the seed's API --

    async def session_lock(
        self, session: SessionRef, period: Period | None = None, *, db_session: DbSession = None
    ) -> UpdateResult:
        """Hold a session for `period` (default `lock_time`): the source rate-limited it."""
        delta = parse_period(period, self.lock_time)
        return await self._hold(session, delta, Hold.LOCK, "session_lock", db_session)

    async def session_block(
        self, session: SessionRef, period: Period | None = None, *, db_session: DbSession = None
    ) -> UpdateResult:
        """Hold a session for a long `period` (default `block_time`): the source banned it."""
        delta = parse_period(period, self.block_time)
        return await self._hold(session, delta, Hold.BLOCK, "session_block", db_session)

    async def _hold(
        self, session: SessionRef, delta: timedelta, hold: Hold, op: str, db_session: DbSession
    ) -> UpdateResult:
        oid = parse_session_id(session)
        update = queries.hold_update(self._fields, self._frame, hold, delta)
        return await self.update_one(filter={"_id": oid}, update=update, session=driver_session(db_session), _op=op)

    def _selectable(self) -> dict[str, Any]:
        base = self.default_filter
        available = queries.available(self._fields, self._frame)
        if "$expr" in base:
            return {"$and": [base, available]}
        return {**base, **available}

    async def count_active(self, *, db_session: DbSession = None) -> int:
        """Count sessions matching `default_filter` that are not held right now."""
        # The server's time as a literal, not $$NOW inside $expr: a plain range on next_use is
        # answered from the index alone, where $expr made the server fetch every live document.
        now = self._frame.to_stored(await self.server_time("count_active"))
        not_held = {self.next_use: {"$not": {"$gt": now}}}
        base = self.default_filter
        query = {"$and": [base, not_held]} if self.next_use in base or "$and" in base else {**base, **not_held}
        return await self.count_documents(filter=query, session=driver_session(db_session), _op="count_active")

    async def get_sessions(self, *, db_session: DbSession = None) -> list[Document]:
        """All sessions matching `default_filter`, with `projection`'s fields."""
        async with self._guard("get_sessions"):
            cursor = self._collection.find(self.default_filter, self.projection, session=driver_session(db_session))
            return [self._convert(doc) async for doc in cursor]

    def _check_delay(self, delay: object) -> float:
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay):
            raise InvalidInput(f"next_use_delay must be a number of seconds, got {delay!r}", field="next_use_delay")
        if not 0 <= delay <= MAX_PERIOD.total_seconds():
            raise InvalidInput(
                f"next_use_delay must be between 0 and {int(MAX_PERIOD.total_seconds())} seconds, got {delay!r}",
                field="next_use_delay",
            )
        return float(delay)

    @staticmethod
    def _check_count(value: object, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000_000:
            raise InvalidInput(f"{name} must be a whole number from 0, got {value!r}", field=name)
        return value

    async def get_session(
        self, count_use: int = 1, next_use_delay: float | None = None, *, db_session: DbSession = None
    ) -> Document | None:
        """Atomically take the least recently used selectable session, or None if none is free."""
        count = self._check_count(count_use, "count_use")
        delay = self.next_use_delay if next_use_delay is None else self._check_delay(next_use_delay)
        doc = await self.find_one_and_update(
            filter=self._selectable(),
            update=queries.take_update(self._fields, self._frame, count, timedelta(seconds=delay)),
            sort=[(self.last_use, 1)],
            projection=self.projection,
            return_document=ReturnDocument.BEFORE,
            session=driver_session(db_session),
            _op="get_session",
        )
        return self._convert(doc) if doc is not None else None

    async def session_success(
        self,
        session: SessionRef,
        count_success: int = 1,
        next_use_delay: float | None = None,
        *,
        db_session: DbSession = None,
    ) -> UpdateResult:
        """Count successful uses of a session and hold it for `next_use_delay` seconds."""
        oid = parse_session_id(session)
        count = self._check_count(count_success, "count_success")
        delay = self.next_use_delay if next_use_delay is None else self._check_delay(next_use_delay)
        update = queries.success_update(self._fields, self._frame, count, timedelta(seconds=delay))
        return await self.update_one(
            filter={"_id": oid}, update=update, session=driver_session(db_session), _op="session_success"
        )

    async def session_inactive(self, session: SessionRef, *, db_session: DbSession = None) -> UpdateResult:
        """Disable a session for good (until `session_activate`)."""
        oid = parse_session_id(session)
        return await self.update_one(
            filter={"_id": oid},
            update={"$set": {self.active: False}},
            session=driver_session(db_session),
            _op="session_inactive",
        )

    async def session_activate(self, session: SessionRef, *, db_session: DbSession = None) -> UpdateResult:
        """Bring a session back: active again, any lock or block cleared (the "activator")."""
        oid = parse_session_id(session)
        return await self.update_one(
            filter={"_id": oid},
            update=queries.unlock_update(self._fields, activate=True),
            session=driver_session(db_session),
            _op="session_activate",
        )

    async def session_unlock(self, session: SessionRef, *, db_session: DbSession = None) -> UpdateResult:
        """Clear a lock or block (the session stays inactive if it was)."""
        oid = parse_session_id(session)
        return await self.update_one(
            filter={"_id": oid},
            update=queries.unlock_update(self._fields),
            session=driver_session(db_session),
            _op="session_unlock",
        )

    async def add(self, data: Mapping[str, Any], *, db_session: DbSession = None) -> InsertOneResult:
        """Insert a new session; `data` usually holds the credentials under `session`."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"data must be a dict, got {type(data).__name__}", field="data")
        check_keys(data, "data")
        f = self._fields
        doc: Document = {
            f.active: True,
            f.count_use: 0,
            f.count_success: 0,
            f.created: self._frame.to_stored(datetime.now(UTC)),
            f.last_use: None,
            f.next_use: None,
            **data,
        }
        if "_id" in doc:
            doc["_id"] = parse_session_id(doc)
        return await self.insert_one(document=doc, session=driver_session(db_session), _op="add")

    async def session_update(
        self,
        session: SessionRef,
        payload: Mapping[str, Any],
        unset_payload: Mapping[str, Any] | Iterable[str] | None = None,
        *,
        db_session: DbSession = None,
    ) -> UpdateResult:
        """Set fields (dotted paths such as 'session.phone') and optionally unset others."""
        oid = parse_session_id(session)
        if not isinstance(payload, Mapping):
            raise InvalidInput("payload must be a dict", field="payload")
        check_keys(payload, "payload")
        if "_id" in payload:
            raise InvalidInput("payload must not change '_id'", field="payload")
        update: dict[str, Any] = {}
        if payload:
            update["$set"] = dict(payload)
        if unset_payload:
            keys = list(unset_payload.keys() if isinstance(unset_payload, Mapping) else unset_payload)
            check_keys(dict.fromkeys(keys, ""), "unset_payload")
            if "_id" in keys:
                raise InvalidInput("unset_payload must not remove '_id'", field="unset_payload")
            overlap = set(keys) & set(payload)
            if overlap:
                raise InvalidInput(f"fields both set and unset: {sorted(overlap)}", field="unset_payload")
            update["$unset"] = dict.fromkeys(keys, "")
        if not update:
            raise InvalidInput("nothing to update: payload and unset_payload are empty", field="payload")
        return await self.update_one(
            filter={"_id": oid}, update=update, session=driver_session(db_session), _op="session_update"
        )

    async def session_delete(self, session: SessionRef, *, db_session: DbSession = None) -> DeleteResult:
        """Delete a session document."""
        oid = parse_session_id(session)
        return await self.delete_one(filter={"_id": oid}, session=driver_session(db_session), _op="session_delete")

    async def get(self, session_id: SessionRef, *, db_session: DbSession = None) -> Document:
        """The whole document of one session, times as aware UTC; SessionNotFound if missing."""
        oid = parse_session_id(session_id)
        async with self._guard("get"):
            doc = await self._collection.find_one({"_id": oid}, session=driver_session(db_session))
        if doc is None:
            raise SessionNotFound(oid, operation="get")
        return self._convert(doc)

    def state_of(self, doc: Mapping[str, Any], now: datetime) -> State:
        """State of a document returned by `get()` at `now` (aware UTC)."""
        return classify(doc, now, fields=self._fields, lock_time=self.lock_time, grace=self.grace)

    def state_filter(self, state: State, now: datetime) -> dict[str, Any]:
        """A query filter matching exactly the sessions in `state` at `now` (server time)."""
        return queries.state_filter(self.rules, state, now)

    # -- statistics --

    async def aggregate_statistics(self, *, db_session: DbSession = None) -> Statistics:
        """Counts per state, totals, sums and key times of the pool, all for one moment."""
        now = await self.server_time("aggregate_statistics")
        pipeline = queries.statistics_pipeline(self.rules, self._collection.name, now)
        session = driver_session(db_session)
        snapshot = False
        async with self._guard("aggregate_statistics"):
            if session is None and self.supports_transactions:
                # Snapshot read concern: every branch of the pipeline reads the same instant.
                async with self._client.start_session(snapshot=True) as snap:
                    rows = await (await self._collection.aggregate(pipeline, session=snap)).to_list(None)
                snapshot = True
            else:
                rows = await (await self._collection.aggregate(pipeline, session=session)).to_list(None)
        return self._statistics(rows, now, snapshot)

    def _statistics(self, rows: list[Document], now: datetime, snapshot: bool) -> Statistics:
        """Fold the pipeline's rows into one Statistics."""
        counts = {"inactive": 0, "blocked": 0, "locked": 0, "in_use": 0}
        total = uses = successes = 0
        next_unlock = oldest = None
        for row in rows:
            key = row.get("k")
            if key in counts:
                counts[key] += int(row["n"])
            elif key == "sums":
                total = int(row.get("total") or 0)
                uses, successes = int(row.get("uses") or 0), int(row.get("successes") or 0)
            elif key == "next_unlock" and isinstance(row.get("v"), datetime):
                candidate = self.from_stored(row["v"])
                next_unlock = candidate if next_unlock is None else min(next_unlock, candidate)
            elif key == "oldest" and isinstance(row.get("v"), datetime):
                oldest = self.from_stored(row["v"])
        held = counts["blocked"] + counts["locked"] + counts["in_use"]
        states = {
            State.ACTIVE: max(total - counts["inactive"] - held, 0),
            State.IN_USE: counts["in_use"],
            State.LOCKED: counts["locked"],
            State.BLOCKED: counts["blocked"],
            State.INACTIVE: counts["inactive"],
        }
        return Statistics(
            time=now,
            states=states,
            total=total,
            uses=uses,
            successes=successes,
            next_unlock=next_unlock,
            oldest_active_last_use=oldest,
            snapshot=snapshot,
        )

    # -- transactions --

    @asynccontextmanager
    async def transaction(self, write_concern: WriteConcern | None = None) -> AsyncIterator[Transaction]:
        """Run several operations atomically; commit on success, abort on exception."""
        if self._topology is None:
            await self.connect()
        atomic = self.supports_transactions
        if not atomic and self._transactions == "require":
            raise TransactionsUnsupported(
                "this MongoDB is a standalone server and cannot run transactions; "
                "run a replica set, or construct MongoSessions(transactions='fallback') "
                "to run the block without one",
                operation="transaction",
            )
        async with self._guard("transaction"):
            session = self._client.start_session()
        try:
            if not atomic:
                yield Transaction(session, atomic=False)
                return
            async with self._guard("transaction"):
                await session.start_transaction(
                    read_concern=ReadConcern("snapshot"), write_concern=write_concern or self._write_concern
                )
            try:
                yield Transaction(session, atomic=True)
            except BaseException:
                if session.in_transaction:
                    try:
                        async with self._guard("abort_transaction"):
                            await session.abort_transaction()
                    except SessionPoolError:
                        pass  # the server aborts an unfinished transaction by itself
                raise
            async with self._guard("commit_transaction"):
                await session.commit_transaction()
        finally:
            await session.end_session()
