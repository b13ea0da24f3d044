"""MongoSessions: the pool of accounts handlers embed (the seed's API on PyMongo's async driver)."""

from __future__ import annotations

import asyncio
import difflib
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, nullcontext
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta, tzinfo
from types import TracebackType
from typing import Any, Literal, Self

import pymongo
from bson import ObjectId
from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConfigurationError, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.read_preferences import _ServerMode
from pymongo.results import DeleteResult, InsertOneResult, UpdateResult
from pymongo.write_concern import WriteConcern

from exporter.core import browse, queries
from exporter.core.clocks import NO_SHIFT, TOLERANCE, MemberClocks, Shift
from exporter.core.errors import (
    CANCELLED_ABORT_TIMEOUT,
    CLOSE_TIMEOUT,
    NAMESPACE_NOT_FOUND,
    CollectionMissing,
    InvalidInput,
    OperationFailed,
    SessionNotFound,
    SessionPoolError,
    TransactionsUnsupported,
    budget,
    guard,
)
from exporter.core.failover import PrimaryReplaced, PrimaryWatch, on_primary, primary_of
from exporter.core.fields import _DEFAULT, MongoFields, check_delay
from exporter.core.leases import Leases
from exporter.core.model import (
    HELD_STATES,
    Document,
    Fields,
    Hold,
    Period,
    State,
    Statistics,
    Sums,
    check_payload,
    classify,
    parse_period,
    session_filter,
)
from exporter.core.operations import (
    DbSession,
    MongoOperations,
    Transaction,
    driver_session,
    read_preference,
    write_concern,
)
from exporter.core.timeframe import TimeFrame

SessionRef = Any  # a document with `_id`, or an `_id` value (ObjectId, its 24-hex string, any other id)

# The server's time for the hooks while one operation builds its queries (see _filter_exclude_lock).
_QUERY_NOW: ContextVar[datetime | None] = ContextVar("query_now", default=None)


class MongoSessions(MongoOperations, MongoFields):
    """A pool of accounts ("sessions") in one MongoDB collection, shared by many handlers.

    Drop-in for mongo_client's MongoSessions: same constructor (extra keywords included), methods,
    settable options, hooks and `.db` / `.sessions` handles; see the README's "Migrating from
    mongo_client" for every difference.
    """

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
        projection: Mapping[str, Any] | Any | None = _DEFAULT,
        default_sort: Sequence[tuple[str, int]] | None = None,
        stored_timezone: str | tzinfo | None = None,
        tz_aware: bool = False,
        tzinfo: tzinfo | None = None,
        timeout: float = 10.0,
        w: int | str | None = None,
        j: bool | None = None,
        wtimeout: int | None = None,
        transactions: Literal["require", "fallback"] = "require",
        statistics_read_preference: str = "primary",
        create_indexes: bool = True,
        console_indexes: Sequence[str] | None = None,
        allow_reconnect: bool = False,
        max_allowed_reconnect: int | None = None,
        clocks: MemberClocks | None = None,
        follow_primary: bool = True,
        **client_options: Any,
    ) -> None:
        if not isinstance(db, str) or not db:
            raise InvalidInput("MongoSessions needs a database name", field="db")
        if client is None and not mongo_url:
            raise InvalidInput("MongoSessions needs a mongo_url or a client", field="mongo_url")
        base = Fields(**fields) if isinstance(fields, Mapping) else (fields or Fields())
        renames = {"next_use": next_use, "active": active, "session": session, "last_use": last_use, "hold": hold}
        self._init_fields(
            Fields(**{**base.__dict__, **{k: v for k, v in renames.items() if v is not None}}),
            lock_time=lock_time,
            block_time=block_time,
            grace=grace,
            next_use_delay=next_use_delay,
            default_filter=default_filter,
            projection=projection,
            default_sort=default_sort,
        )
        self._frame = TimeFrame(stored_timezone)
        self._tz_aware = bool(tz_aware)
        self._tzinfo = tzinfo
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
            raise InvalidInput(f"timeout must be between 0 and 3600 seconds, got {timeout!r}", field="timeout")
        self._timeout = float(timeout)
        self._write_concern = write_concern(w, j, wtimeout)
        if transactions not in ("require", "fallback"):
            raise InvalidInput("transactions must be 'require' or 'fallback'", field="transactions")
        self._transactions = transactions
        self._stats_read = read_preference(statistics_read_preference)
        self._create_indexes = create_indexes
        # connect() found no collection: the first add() (which creates it) builds the indexes.
        self._indexes_pending = False
        if console_indexes is not None and (
            isinstance(console_indexes, str) or not all(isinstance(n, str) and n for n in console_indexes)
        ):
            raise InvalidInput("console_indexes must be a list of sub-field names of session", field="console_indexes")
        self._console_indexes = tuple(console_indexes) if console_indexes is not None else None
        self.allow_reconnect = bool(allow_reconnect)
        if max_allowed_reconnect is not None and (
            isinstance(max_allowed_reconnect, bool)
            or not isinstance(max_allowed_reconnect, int)
            or max_allowed_reconnect < 0
        ):
            raise InvalidInput("max_allowed_reconnect must be a whole number from 0", field="max_allowed_reconnect")
        # Accepted as mongo_client accepts it: there it changes nothing, and here too (see README).
        self.max_allowed_reconnect = max_allowed_reconnect
        self._owns_client = client is None
        if client is None:
            # The members' clocks come with the driver's heartbeats: holds stay whole when the primary's is off.
            clocks = clocks or MemberClocks()
            listeners = [*(client_options.pop("event_listeners", None) or []), clocks]
            options = {"tz_aware": self._tz_aware, "serverSelectionTimeoutMS": 5000, **client_options}
            options["event_listeners"] = listeners
            if self._tz_aware:
                options.setdefault("tzinfo", tzinfo or UTC)
            try:
                client = AsyncMongoClient(mongo_url, **options)
            except PyMongoError as exc:
                raise InvalidInput(f"invalid MongoDB connection: {exc}", field="mongo_url") from None
        self._client: AsyncMongoClient[Document] = client
        self._clocks = clocks
        # Hand-outs and reports stop waiting on a primary the set has replaced (see core/failover.py).
        self._watch = PrimaryWatch(lambda: self._client.topology_description) if follow_primary else None
        self._db_name = db
        self.db: AsyncDatabase[Document] = client.get_database(db, write_concern=self._write_concern)
        self._topology: str | None = None
        self._skew = timedelta(0)
        self._leases = Leases()
        self._collection: AsyncCollection[Document] | None = None
        self.sessions: AsyncCollection[Document] | None = None
        if collection is not None:
            self.switch_collection(collection)

    # -- handles and state --

    @property
    def client(self) -> AsyncMongoClient[Document]:
        """The underlying PyMongo async client."""
        return self._client

    @property
    def collection(self) -> AsyncCollection[Document]:
        """The collection in use, reading times as aware datetimes (`sessions` is the caller-facing handle)."""
        return self._coll()

    @property
    def stored_timezone(self) -> tzinfo | None:
        """Zone of naive local times written by the original library, or None for UTC."""
        return self._frame.zone

    @property
    def tz_aware(self) -> bool:
        """True when returned documents carry aware datetimes (true instants), False for naive stored ones."""
        return self._tz_aware

    @property
    def timeout(self) -> float:
        """Seconds each operation may take."""
        return self._timeout

    def guard(self, operation: str) -> AbstractAsyncContextManager[None]:
        """Bound a block of driver calls like the core's own: `timeout`, the enclosing budget, a usable server."""
        return guard(operation, self._timeout, self._client)

    @property
    def statistics_read_preference(self) -> str:
        """Where the statistics reads go (aggregate_statistics, aggregate_sums, count_active): a mode name."""
        return str(self._stats_read.mongos_mode)

    def _stats_coll(self, db_session: DbSession) -> AsyncCollection[Document]:
        """The collection for a statistics read: the statistics read preference, unless inside a caller's session."""
        if driver_session(db_session) is not None:
            return self._coll()  # a transaction reads from the primary only
        return self._coll().with_options(read_preference=self._stats_read)

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
        return queries.StateRules(self.fields, self.lock_time, self.grace, self._frame)

    # -- lifecycle --

    async def connect(self) -> Self:
        """Check the server, learn its topology and clock, and create the pool's indexes if allowed."""
        started = time.time()
        async with self.guard("connect"):
            hello = await self._client.admin.command("hello")
        self._learn_clock(hello, started)
        if hello.get("msg") == "isdbgrid":
            self._topology = "sharded"
        elif hello.get("setName"):
            self._topology = "replica_set"
        else:
            self._topology = "standalone"
        if self._create_indexes and self._collection is not None:
            # Never on a collection that does not exist: building an index would create it, and a
            # mistyped name would then look like a healthy empty pool.
            if await self.collection_exists():
                await self.ensure_indexes()
            else:
                self._indexes_pending = True
        return self

    def switch_collection(self, collection: str) -> None:
        """Use another collection of the same database from now on (`.sessions` follows)."""
        if not isinstance(collection, str) or not collection or "$" in collection or "\x00" in collection:
            raise InvalidInput(f"invalid collection name {collection!r}", field="collection")
        codec: CodecOptions[Document] = CodecOptions(tz_aware=True, tzinfo=UTC)
        self._collection = self._client[self._db_name].get_collection(
            collection, codec_options=codec, write_concern=self._write_concern
        )
        self.sessions = self.db.get_collection(collection)

    async def close(self) -> None:
        """Close the client if this object created it."""
        if self._owns_client:
            # Ending the server sessions must not wait server_selection_timeout for a server that is down.
            with pymongo.timeout(CLOSE_TIMEOUT):
                await self._client.close()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def index_specs(self) -> list[queries.IndexSpec]:
        """The indexes the pool needs: keys and why (with `console_indexes`, the console's lists' too)."""
        specs = queries.index_specs(self.fields)
        if self._console_indexes is not None:
            specs += browse.console_index_specs(self.fields, self._console_indexes)
        return specs

    async def collection_exists(self) -> bool:
        """Whether the pool's collection exists (one listCollections by name, where the statistics are read)."""
        coll = self._coll()
        answer = await self._run(
            "collection_exists",
            lambda: coll.database.command(
                "listCollections",
                filter={"name": coll.name},
                nameOnly=True,
                # Lists what the user may read even without the listCollections right.
                authorizedCollections=True,
                read_preference=self._stats_read,
            ),
            self._stats_read,
        )
        return bool(answer["cursor"]["firstBatch"])

    async def check_collection(self) -> None:
        """Raise CollectionMissing, with the database's collections whose names are close, if the pool's is missing."""
        if await self.collection_exists():
            return
        coll = self._coll()
        answer = await self._run(
            "collection_exists",
            lambda: coll.database.command(
                "listCollections",
                nameOnly=True,
                authorizedCollections=True,
                read_preference=self._stats_read,
            ),
            self._stats_read,
        )
        names = [str(c["name"]) for c in answer["cursor"]["firstBatch"] if not str(c["name"]).startswith("system.")]
        close = tuple(difflib.get_close_matches(coll.name, names, n=3, cutoff=0.6))
        raise CollectionMissing(self._db_name, coll.name, close=close, operation="collection_exists")

    async def missing_indexes(self) -> list[list[tuple[str, int]]]:
        """Keys of the pool's indexes that do not exist (someone dropped them, or they were never made).

        Read where the statistics are read: a daemon on secondaries keeps refreshing without a primary.
        CollectionMissing when the collection itself does not exist.
        """
        coll = self._coll()
        try:
            # listIndexes as a command: the driver's list_indexes() always goes to the primary.
            answer = await self._run(
                "index_information",
                lambda: coll.database.command("listIndexes", coll.name, read_preference=self._stats_read),
                self._stats_read,
            )
        except OperationFailed as exc:
            if exc.code != NAMESPACE_NOT_FOUND:
                raise
            raise CollectionMissing(self._db_name, coll.name, operation="index_information") from None
        specs = answer["cursor"]["firstBatch"]  # a collection has at most 64 indexes: one batch
        present = [[(str(k), int(d)) for k, d in spec["key"].items()] for spec in specs]
        return [keys for keys, _why in self.index_specs() if keys not in present]

    async def ensure_indexes(self) -> list[str]:
        """Create the pool's indexes if missing; never drop or alter anyone else's.

        CollectionMissing when the collection does not exist: building an index would create it.
        """
        await self.check_collection()
        names: list[str] = []
        for keys, _why in self.index_specs():
            try:
                names.append(await self.create_index(keys, _op="create_index"))
            except SessionPoolError as exc:
                # 85/86: the same keys already exist under another name or options; keep theirs.
                if getattr(exc, "code", None) not in (85, 86):
                    raise
        return names

    # -- time --

    def _learn_clock(self, hello: Mapping[str, Any], started: float) -> None:
        """Remember how far the server's clock is from ours (for hooks that need a time without asking)."""
        server = hello.get("localTime")
        if isinstance(server, datetime):
            server = server if server.tzinfo else server.replace(tzinfo=UTC)
            midpoint = datetime.fromtimestamp((started + time.time()) / 2, UTC)
            self._skew = server - midpoint

    def from_stored(self, when: datetime) -> datetime:
        """Convert a time read from the collection (aware-labelled) to a true aware UTC time."""
        return self._frame.from_stored(when)

    async def server_time(self, _op: str = "server_time", *, read: _ServerMode | None = None) -> datetime:
        """The server's clock (`hello.localTime`), aware UTC: the primary's, or that of a member `read` selects."""
        started = time.time()
        hello = await self._run(_op, lambda: self._client.admin.command("hello", read_preference=read), read)
        self._learn_clock(hello, started)
        now: datetime = hello["localTime"]
        return now if now.tzinfo else now.replace(tzinfo=UTC)

    @contextmanager
    def _at(self, now: datetime) -> Iterator[None]:
        """Build queries for the server time `now` (what the hooks use while inside)."""
        token = _QUERY_NOW.set(now)
        try:
            yield
        finally:
            _QUERY_NOW.reset(token)

    def _query_now(self) -> datetime:
        """The server time of the operation being built, else our clock corrected by the server's last reading."""
        now = _QUERY_NOW.get()
        return now if now is not None else datetime.now(UTC) + self._skew

    def _shift(self) -> Shift:
        """How far to move the server's now on the primary in the driver's view (see core/clocks.py)."""
        if self._clocks is None:
            return NO_SHIFT
        return self._clocks.shift(primary_of(self._client.topology_description))

    def _frames(self, shift: Shift | None = None) -> tuple[TimeFrame, TimeFrame]:
        """The frames of a hold's end as read (is it over?) and as written: the server's now, moved so that a
        primary whose clock is off from the other members' never shortens a hold (see core/clocks.py)."""
        shift = self._shift() if shift is None else shift
        return self._frame.shifted(-shift.read), self._frame.shifted(shift.write)

    def _out(self, doc: Document) -> Document:
        """A document as callers get it: naive stored times, or true aware instants with `tz_aware`."""
        converted: Document = self._frame.for_caller(doc, self._tz_aware, self._tzinfo)
        return converted

    # -- the original's hooks --

    def _filter_exclude_lock(self, offset: float = 0) -> dict[str, Any]:
        """Filter of sessions not held at now + `offset` seconds (the original's hook; subclasses may override it).

        `count_active`, `get_session` and the original's `count_active` statistic are built from
        it. The time is the server's: the one the operation read, or the last reading.
        """
        at = self._frame.to_stored(self._query_now() + timedelta(seconds=offset))
        return {self.next_use: {"$not": {"$gt": at}}}

    def _filter_include_lock(self, offset: float = 0) -> dict[str, Any]:
        """Filter of sessions held beyond now + `offset` seconds (the original's hook for `count_locked`)."""
        at = self._frame.to_stored(self._query_now() + timedelta(seconds=offset))
        return {self.next_use: {"$gt": at}}

    def _hooks_overridden(self) -> bool:
        """True when a subclass or the instance replaced one of the original's hooks."""
        cls = type(self)
        return (
            cls._filter_exclude_lock is not MongoSessions._filter_exclude_lock
            or cls._filter_include_lock is not MongoSessions._filter_include_lock
            or "_filter_exclude_lock" in self.__dict__
            or "_filter_include_lock" in self.__dict__
        )

    def _custom_selection(self) -> bool:
        """True when what counts as selectable differs from the state rules (hooks or default_filter changed)."""
        return self._hooks_overridden() or self.default_filter != {self.active: True}

    # -- the seed's API --

    async def session_lock(
        self, session: SessionRef, period: Period | None = None, *, db_session: DbSession = None
    ) -> UpdateResult:
        """Hold a session for `period` (None or {}: `lock_time`): the source rate-limited it."""
        delta = parse_period(period if period else None, self.lock_time)
        return await self._hold(session, delta, Hold.LOCK, "session_lock", db_session)

    async def session_block(
        self, session: SessionRef, period: Period | None = None, *, db_session: DbSession = None
    ) -> UpdateResult:
        """Hold a session for a long `period` (None or {}: `block_time`): the source banned it."""
        delta = parse_period(period if period else None, self.block_time)
        return await self._hold(session, delta, Hold.BLOCK, "session_block", db_session)

    async def _hold(
        self, session: SessionRef, delta: timedelta, hold: Hold, op: str, db_session: DbSession
    ) -> UpdateResult:
        selector = session_filter(session)
        found = self._leases.find(session)
        read, write = self._frames()
        if found is None:
            # Not a report on a hand-out of this client (an operator, an id from elsewhere): as asked.
            update = queries.hold_update(self.fields, write, hold, delta)
        else:
            update = queries.report_update(self.fields, write, hold, delta, found[1], read_frame=read)
        result = await self._report(op, selector, update, db_session)
        if found is not None:
            self._leases.forget(found[0])
        return result

    async def _report(self, op: str, selector: Document, update: Any, db_session: DbSession) -> UpdateResult:
        """A handler's report, abandoned on a primary the set has replaced and sent once more to the new one.

        A report the old primary had already replicated then lands twice: a success counts twice; a
        lock or block, which only lengthens a hold, changes nothing more.
        """
        session = driver_session(db_session)
        watch = self._watch if session is None else None

        def send() -> Awaitable[UpdateResult]:
            return self.update_one(selector, update, session=session, _op=op)

        try:
            return await on_primary(watch, op, send)
        except PrimaryReplaced:
            return await on_primary(watch, op, send)

    def _selectable(self, read: TimeFrame | None = None) -> dict[str, Any]:
        """The filter of `get_session`: default_filter and not held (the hook's, or the server's $$NOW)."""
        if self._hooks_overridden():
            return queries.and_filters(self.default_filter, self._filter_exclude_lock())
        # The same rule as the hook, with the server's own clock for an exact hand-out.
        return queries.and_filters(self.default_filter, queries.available(self.fields, read or self._frame))

    async def count_active(self, *, db_session: DbSession = None) -> int:
        """Count sessions matching `default_filter` and `_filter_exclude_lock()` (not held now)."""
        # The server's time as a literal: a plain range on next_use is answered from the index alone.
        read = self._stats_read if driver_session(db_session) is None else None
        now = await self.server_time("count_active", read=read)
        with self._at(now):
            query = queries.and_filters(self.default_filter, self._filter_exclude_lock())
        coll = self._stats_coll(db_session)
        return await self._run(
            "count_active", lambda: coll.count_documents(query, session=driver_session(db_session)), read
        )

    async def get_sessions(self, *, db_session: DbSession = None) -> list[Document]:
        """All sessions matching `default_filter`, with `projection`'s fields (all when it is None or {})."""
        return await self.find(
            self.default_filter, self.projection or None, session=driver_session(db_session), _op="get_sessions"
        )

    @staticmethod
    def _check_count(value: object, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000_000:
            raise InvalidInput(f"{name} must be a whole number from 0, got {value!r}", field=name)
        return value

    async def get_session(
        self, count_use: int = 1, next_use_delay: float | None = None, *, db_session: DbSession = None
    ) -> Document | None:
        """Atomically take the first selectable session in `default_sort` order (least recently used), or None.

        The session is held `next_use_delay` seconds (the option by default; negative: not held)
        and returned as it was before, with `projection`'s fields.
        """
        count = self._check_count(count_use, "count_use")
        delay = self.next_use_delay if next_use_delay is None else check_delay(next_use_delay)
        watch = self._watch if driver_session(db_session) is None else None

        async def take() -> Document | None:
            # The hand-out's lease: the reports on this document are checked against it (see session_success).
            lease = ObjectId()
            primary, shift = primary_of(self._client.topology_description), self._shift()
            read, write = self._frames(shift)
            doc = await on_primary(watch, "get_session", lambda: self.find_one_and_update(
                self._selectable(read),
                queries.take_update(self.fields, write, count, timedelta(seconds=delay), lease),
                sort=self.default_sort,
                projection=self.projection or None,
                session=driver_session(db_session),
                _op="get_session",
            ))  # fmt: skip
            if doc is not None and self._shift().read > shift.read + TOLERANCE:
                # A new primary whose clock runs further ahead came meanwhile: the driver may have retried this
                # hand-out there, reading with the old shift a hold as ended that is not. Never hand it out
                # (the session stays held by this lease until its hold ends).
                now = primary_of(self._client.topology_description) or "another member"
                raise PrimaryReplaced("get_session", primary or "the primary", now)
            if doc is not None:
                self._leases.remember(doc, lease)
            return doc

        try:
            return await take()
        except PrimaryReplaced:
            # Abandoned on a deposed primary (its result is never handed out): once more, on the new one.
            return await take()

    async def session_success(
        self,
        session: SessionRef,
        count_success: int = 1,
        next_use_delay: float | None = None,
        *,
        db_session: DbSession = None,
    ) -> UpdateResult:
        """Count successful uses of a session and hold it for `next_use_delay` seconds.

        The hold is set only over the caller's own hand-out hold or a session nobody holds: a lock or
        block set since the hand-out stays. A report on a document that was handed to someone else
        since (the work outlasted the hold) is counted, changes no hold and counts as an overrun.
        """
        count = self._check_count(count_success, "count_success")
        delay = self.next_use_delay if next_use_delay is None else check_delay(next_use_delay)
        selector = session_filter(session)
        found = self._leases.find(session)
        lease = found[1] if found is not None else None
        read, write = self._frames()
        update = queries.report_update(
            self.fields, write, Hold.USE, timedelta(seconds=delay), lease, successes=count, read_frame=read
        )
        result = await self._report("session_success", selector, update, db_session)
        if found is not None:
            self._leases.forget(found[0])
        return result

    async def session_inactive(self, session: SessionRef, *, db_session: DbSession = None) -> UpdateResult:
        """Disable a session for good (until `session_activate`)."""
        return await self.update_one(
            session_filter(session),
            {"$set": {self.active: False}},
            session=driver_session(db_session),
            _op="session_inactive",
        )

    async def session_activate(self, session: SessionRef, *, db_session: DbSession = None) -> UpdateResult:
        """Bring a session back: active again, any lock or block cleared (the "activator"; not in the original)."""
        return await self.update_one(
            session_filter(session),
            queries.unlock_update(self.fields, activate=True),
            session=driver_session(db_session),
            _op="session_activate",
        )

    async def session_unlock(self, session: SessionRef, *, db_session: DbSession = None) -> UpdateResult:
        """Clear a lock or block (the session stays inactive if it was; not in the original)."""
        return await self.update_one(
            session_filter(session),
            queries.unlock_update(self.fields),
            session=driver_session(db_session),
            _op="session_unlock",
        )

    async def add(self, data: Mapping[str, Any], *, db_session: DbSession = None) -> InsertOneResult:
        """Insert a new session; `data` usually holds the credentials under `session` (stored as given)."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"data must be a dict, got {type(data).__name__}", field="data")
        doc: Document = {
            self.active: True,
            self.count_use: 0,
            self.count_success: 0,
            self.created: self._frame.to_stored(datetime.now(UTC)),
            self.last_use: None,
            self.next_use: None,
            **self._frame.for_storage(dict(data)),
        }
        result = await self.insert_one(doc, session=driver_session(db_session), _op="add")
        if self._indexes_pending and db_session is None:
            # The pool's first session created the collection that connect() found missing.
            self._indexes_pending = False
            await self.ensure_indexes()
        return result

    async def session_update(
        self,
        session: SessionRef,
        payload: Mapping[str, Any],
        unset_payload: Mapping[str, Any] | Iterable[str] | None = None,
        *,
        db_session: DbSession = None,
    ) -> UpdateResult:
        """Set fields (dotted paths such as 'session.phone') and optionally unset others.

        Datetimes are stored in the pool's frame (aware ones converted, naive ones as written).
        Setting `next_use` here turns a recorded hold into a legacy one (classified by time left).
        """
        selector = session_filter(session)
        update: dict[str, Any] = {}
        values = check_payload(payload, "payload")
        if values:
            update["$set"] = self._frame.for_storage(values)
        if unset_payload:
            keys = list(unset_payload.keys() if isinstance(unset_payload, Mapping) else unset_payload)
            check_payload(dict.fromkeys(keys, ""), "unset_payload")
            overlap = set(keys) & set(values)
            if overlap:
                raise InvalidInput(f"fields both set and unset: {sorted(overlap)}", field="unset_payload")
            update["$unset"] = dict.fromkeys(keys, "")
        if not update:
            raise InvalidInput("nothing to update: payload and unset_payload are empty", field="payload")
        return await self.update_one(selector, update, session=driver_session(db_session), _op="session_update")

    async def session_delete(self, session: SessionRef, *, db_session: DbSession = None) -> DeleteResult:
        """Delete a session document."""
        return await self.delete_one(session_filter(session), session=driver_session(db_session), _op="session_delete")

    async def get(self, session_id: SessionRef, *, db_session: DbSession = None) -> Document:
        """The whole document of one session (times as the caller asked); SessionNotFound if missing."""
        selector = session_filter(session_id)
        doc = await self._run("get", lambda: self._coll().find_one(selector, session=driver_session(db_session)))
        if doc is None:
            raise SessionNotFound(
                session_id.get("_id") if isinstance(session_id, Mapping) else session_id, operation="get"
            )
        return self._out(doc)

    def state_of(self, doc: Mapping[str, Any], now: datetime) -> State:
        """State of a document returned by this object (naive or aware times) at the instant `now`."""
        f = self.fields

        def instant(value: Any) -> Any:
            return self._frame.instant(value) if isinstance(value, datetime) else value

        view = dict(doc)
        view[f.next_use] = instant(doc.get(f.next_use))
        hold = doc.get(f.hold)
        if isinstance(hold, Mapping):
            view[f.hold] = {**hold, "until": instant(hold.get("until"))}
        return classify(view, instant(now), fields=f, lock_time=self.lock_time, grace=self.grace)

    def state_filter(self, state: State, now: datetime) -> dict[str, Any]:
        """A query filter matching exactly the sessions in `state` at `now` (server time)."""
        return queries.state_filter(self.rules, state, now)

    # -- statistics --

    def _legacy_filters(self) -> dict[str, dict[str, Any]]:
        """The original's `count_active` and `count_locked` filters, built from the hooks (for customised pools)."""
        return {
            "legacy_active": queries.and_filters(self.default_filter, self._filter_exclude_lock()),
            "legacy_locked": queries.and_filters(self.default_filter, self._filter_include_lock()),
        }

    async def aggregate_statistics(
        self, *, db_session: DbSession = None, sums: bool = True, fast_total: bool = True
    ) -> Statistics:
        """Counts per state, the original's four counts, sums and key times of the pool, all for one moment.

        With `sums=False` the one pass over every document is left out: the counts then cost the
        held and inactive sessions' index keys, `uses`/`successes` are None, and the total is the
        collection's document count (`fast_total`, O(1)) or a count of its `_id` index. The daemon
        reads them so every interval and the sums on a slower cadence (`aggregate_sums`).
        """
        now = await self.server_time("aggregate_statistics", read=self._stats_read if db_session is None else None)
        total = "sums" if sums else ("metadata" if fast_total else "count")
        pipeline = self.statistics_pipeline(now, total=total)
        try:
            rows, snapshot = await self._read_all("aggregate_statistics", pipeline, db_session)
        except OperationFailed as exc:
            if exc.code != NAMESPACE_NOT_FOUND or total != "metadata":
                raise
            # No collection yet ($collStats needs one): an empty pool, counted without it.
            pipeline = self.statistics_pipeline(now, total="count")
            rows, snapshot = await self._read_all("aggregate_statistics", pipeline, db_session)
        stats = self._statistics(rows, now, snapshot, custom=self._custom_selection())
        if sums and stats.uses is None:
            # An empty collection answers no `sums` row: its sums are zero.
            stats.uses = stats.successes = 0
        return stats

    async def aggregate_sums(self, *, db_session: DbSession = None) -> Sums:
        """The sums of `count_use` and `count_success` and the exact total (one pass over every document)."""
        now = await self.server_time("aggregate_sums", read=self._stats_read if db_session is None else None)
        pipeline = queries.sums_pipeline(self.fields, self._coll().name)
        try:
            rows, _ = await self._read_all("aggregate_sums", pipeline, db_session)
        except OperationFailed as exc:
            if exc.code != NAMESPACE_NOT_FOUND:
                raise
            # No collection (yet): nothing to sum, and nothing for the metadata to disagree with.
            return Sums(time=now, total=0, uses=0, successes=0, metadata_total=0)
        sums = next((r for r in rows if r.get("k") == "sums"), {})
        metadata = next((r for r in rows if r.get("k") == "total"), None)
        return Sums(
            time=now,
            total=int(sums.get("total") or 0),
            uses=int(sums.get("uses") or 0),
            successes=int(sums.get("successes") or 0),
            metadata_total=int(metadata["n"]) if metadata is not None else None,
            overruns=int(sums.get("overruns") or 0),
        )

    async def _read_all(
        self, operation: str, pipeline: list[dict[str, Any]], db_session: DbSession
    ) -> tuple[list[Document], bool]:
        """Every row of an aggregation, at one snapshot when the server allows it (and no session was given)."""
        coll = self._stats_coll(db_session)
        session = driver_session(db_session)
        snapshot = session is None and self.supports_transactions
        read = self._stats_read if session is None else None

        async def read_rows() -> list[Document]:
            nonlocal snapshot
            if snapshot:
                # Snapshot read concern: every branch of the pipeline reads the same instant.
                try:
                    async with self._client.start_session(snapshot=True) as snap:
                        return await (await coll.aggregate(pipeline, session=snap)).to_list(None)
                except ConfigurationError:
                    # The driver refuses a snapshot on a connection whose handshake did not offer it
                    # (seen right after a server restart): read this once without.
                    snapshot = False
            return await (await coll.aggregate(pipeline, session=session)).to_list(None)

        rows = await self._run(operation, read_rows, read)
        return rows, snapshot

    def statistics_pipeline(self, now: datetime, *, total: str = "sums") -> list[dict[str, Any]]:
        """The aggregation `aggregate_statistics()` runs at the server time `now` (to explain it, for one).

        `total` as in `queries.statistics_pipeline`: "sums" (one pass over every document), "metadata"
        or "count" (what the daemon runs every interval: `sums=False`).
        """
        with self._at(now):
            extra = self._legacy_filters() if self._custom_selection() else {}
        return queries.statistics_pipeline(self.rules, self._coll().name, now, extra, total=total)

    def _statistics(self, rows: list[Document], now: datetime, snapshot: bool, *, custom: bool) -> Statistics:
        """Fold the pipeline's rows into one Statistics."""
        counts: dict[str, int] = {}
        total = 0
        uses: int | None = None
        successes: int | None = None
        next_unlock: datetime | None = None
        oldest: datetime | None = None
        for row in rows:
            key = row.get("k")
            if key == "sums":
                total = int(row.get("total") or 0)
                uses, successes = int(row.get("uses") or 0), int(row.get("successes") or 0)
            elif key == "total":
                total = int(row.get("n") or 0)
            elif key == "oldest" and isinstance(row.get("v"), datetime):
                oldest = self.from_stored(row["v"])
            elif isinstance(key, str):
                if key == "held":
                    key = str(queries.held_state(row.get("kind"), row.get("bucket")))
                counts[key] = counts.get(key, 0) + int(row.get("n") or 0)
                first = row.get("first")
                if key in (State.LOCKED, State.BLOCKED) and isinstance(first, datetime):
                    candidate = self.from_stored(first)
                    next_unlock = candidate if next_unlock is None else min(next_unlock, candidate)
        held = {state: counts.get(str(state), 0) for state in HELD_STATES}
        states = {
            State.ACTIVE: max(total - counts.get("inactive", 0) - sum(held.values()), 0),
            **held,
            State.INACTIVE: counts.get("inactive", 0),
        }
        legacy = {"count_blocked": counts.get("deactivated", 0), "count_total": total}
        if custom:
            legacy |= {"count_active": counts.get("legacy_active", 0), "count_locked": counts.get("legacy_locked", 0)}
        return Statistics(
            time=now,
            states={s: states[s] for s in State},
            total=total,
            uses=uses,
            successes=successes,
            next_unlock=next_unlock,
            oldest_active_last_use=oldest,
            snapshot=snapshot,
            legacy=legacy,
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
        async with self.guard("transaction"):
            session = self._client.start_session()
        try:
            if not atomic:
                yield Transaction(session, atomic=False)
                return
            async with self.guard("transaction"):
                await session.start_transaction(
                    read_concern=ReadConcern("snapshot"), write_concern=write_concern or self._write_concern
                )
            try:
                yield Transaction(session, atomic=True)
            except BaseException as exc:
                if session.in_transaction:
                    # Cancelled (a shutdown abandoning a request): abort briefly, never wait on a frozen server.
                    cancelled = isinstance(exc, asyncio.CancelledError)
                    try:
                        with budget("abort", CANCELLED_ABORT_TIMEOUT) if cancelled else nullcontext():
                            async with self.guard("abort_transaction"):
                                await session.abort_transaction()
                    except SessionPoolError:
                        pass  # the server aborts an unfinished transaction by itself
                raise
            async with self.guard("commit_transaction"):
                await session.commit_transaction()
        finally:
            await session.end_session()
