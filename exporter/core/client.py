"""MongoSessions: the pool of accounts handlers embed (the original mongo_client library's API, PyMongo async)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from types import TracebackType
from typing import Any, Self

import pymongo
from bson import ObjectId
from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.read_preferences import _ServerMode
from pymongo.results import DeleteResult, InsertOneResult, UpdateResult
from pymongo.write_concern import WriteConcern

from exporter.core import browse, queries
from exporter.core.clocks import MemberClocks
from exporter.core.errors import CLOSE_TIMEOUT, InvalidInput, SessionNotFound, guard
from exporter.core.failover import PrimaryWatch
from exporter.core.fields import MongoFields
from exporter.core.handouts import HandOuts
from exporter.core.indexes import IndexKeeper
from exporter.core.model import Document, Fields, Hold, Period, State, Statistics, Sums, parse_period, session_filter
from exporter.core.operations import DbSession, MongoOperations, Runner, Transaction, driver_session
from exporter.core.options import (
    DEFAULT,
    ClientOptions,
    Default,
    TransactionsMode,
    check_count,
    check_delay,
    driver_client,
    field_names,
)
from exporter.core.server import ServerView, Topology
from exporter.core.statistics import StatisticsReader
from exporter.core.timeframe import TimeFrame
from exporter.core.transactions import transaction

SessionRef = Any  # a document with `_id`, or an `_id` value (ObjectId, its 24-hex string, any other id)


class MongoSessions(MongoOperations, MongoFields):
    """A pool of accounts ("sessions") in one MongoDB collection, shared by many handlers.

    Drop-in for mongo_client's MongoSessions: same constructor (extra keywords included), methods,
    settable options, hooks and `.db` / `.sessions` handles; the manual's "Migrating from
    mongo_client" lists every difference. Its options are checked once, in a `ClientOptions`; the
    work is done by collaborators it owns: the operations `Runner` (the driver wrappers of
    `MongoOperations` use it), the `ServerView` (topology, clock), the `StatisticsReader`, the
    `IndexKeeper`, the `HandOuts` (leases and reports) and `transactions.transaction`.
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
        projection: Mapping[str, Any] | Default | None = DEFAULT,
        default_sort: Sequence[tuple[str, int]] | None = None,
        stored_timezone: str | tzinfo | None = None,
        tz_aware: bool = False,
        tzinfo: tzinfo | None = None,
        timeout: float = 10.0,
        w: int | str | None = None,
        j: bool | None = None,
        wtimeout: int | None = None,
        transactions: TransactionsMode = "require",
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
        options = ClientOptions(
            fields=field_names(fields, next_use=next_use, active=active, session=session, last_use=last_use, hold=hold),
            lock_time=lock_time, block_time=block_time, grace=grace, next_use_delay=next_use_delay,
            default_filter=default_filter, projection=projection, default_sort=default_sort,
            stored_timezone=stored_timezone, tz_aware=tz_aware, tzinfo=tzinfo, timeout=timeout, w=w, j=j,
            wtimeout=wtimeout, transactions=transactions, statistics_read_preference=statistics_read_preference,
            create_indexes=create_indexes, console_indexes=console_indexes, allow_reconnect=allow_reconnect,
            max_allowed_reconnect=max_allowed_reconnect, follow_primary=follow_primary,
        )  # fmt: skip
        MongoFields.__init__(self, options)
        self._owns_client = client is None
        if client is None:
            # The members' clocks come with the driver's heartbeats: holds stay whole when the primary's is off.
            clocks = clocks or MemberClocks()
            client = driver_client(mongo_url, options, clocks, client_options)
        self._client: AsyncMongoClient[Document] = client
        runner = Runner(client, options)
        MongoOperations.__init__(self, runner)
        self._server = ServerView(runner, options.frame, clocks)
        self._statistics = StatisticsReader(runner, options, self._server)
        self._indexes = IndexKeeper(runner, options)
        # Hand-outs and reports stop waiting on a primary the set has replaced (see core/failover.py).
        watch = PrimaryWatch(lambda: client.topology_description) if options.follow_primary else None
        self._handouts = HandOuts(self, self._server, watch)
        self.db: AsyncDatabase[Document] = client.get_database(db, write_concern=options.write_concern)
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
        return self._runner.coll()

    def guard(self, operation: str) -> AbstractAsyncContextManager[None]:
        """Bound a block of driver calls like the core's own: `timeout`, the enclosing budget, a usable server."""
        return guard(operation, self._options.timeout, self._client)

    @property
    def topology(self) -> Topology | None:
        """'replica_set', 'sharded' or 'standalone' once connected, else None."""
        return self._server.topology

    @property
    def supports_transactions(self) -> bool:
        """True when the server runs multi-document transactions (needs `connect()` first)."""
        return self._server.supports_transactions

    # -- lifecycle --

    async def connect(self) -> Self:
        """Check the server, learn its topology and clock, and create the pool's indexes if allowed."""
        started = time.time()
        async with self.guard("connect"):
            hello = await self._client.admin.command("hello")
        self._server.learn(hello, started)
        if self._options.create_indexes and self._runner.collection is not None:
            # Never on a collection that does not exist: building an index would create it, and a
            # mistyped name would then look like a healthy empty pool.
            if await self.collection_exists():
                await self.ensure_indexes()
            else:
                self._indexes.pending = True
        return self

    def switch_collection(self, collection: str) -> None:
        """Use another collection of the same database from now on (`.sessions` follows)."""
        if not isinstance(collection, str) or not collection or "$" in collection or "\x00" in collection:
            raise InvalidInput(f"invalid collection name {collection!r}", field="collection")
        codec: CodecOptions[Document] = CodecOptions(tz_aware=True, tzinfo=UTC)
        self._runner.collection = self._client[self.db.name].get_collection(
            collection, codec_options=codec, write_concern=self._options.write_concern
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

    # -- the collection and its indexes --

    def index_specs(self) -> list[queries.IndexSpec]:
        """The indexes the pool needs: keys and why (with `console_indexes`, the console's lists' too)."""
        specs = queries.index_specs(self.fields)
        if self._options.console_indexes is not None:
            specs += browse.console_index_specs(self.fields, self._options.console_indexes)
        return specs

    async def collection_exists(self) -> bool:
        """Whether the pool's collection exists (one listCollections by name, where the statistics are read)."""
        return await self._indexes.collection_exists()

    async def check_collection(self) -> None:
        """Raise CollectionMissing, with the database's collections whose names are close, if the pool's is missing."""
        await self._indexes.check_collection()

    async def missing_indexes(self) -> list[list[tuple[str, int]]]:
        """Keys of the pool's indexes that do not exist (someone dropped them, or they were never made).

        Read where the statistics are read: a daemon on secondaries keeps refreshing without a primary.
        CollectionMissing when the collection itself does not exist.
        """
        return await self._indexes.missing(self.index_specs())

    async def ensure_indexes(self) -> list[str]:
        """Create the pool's indexes if missing; never drop or alter anyone else's.

        CollectionMissing when the collection does not exist: building an index would create it.
        """
        return await self._indexes.ensure(self.index_specs())

    # -- time --

    def from_stored(self, when: datetime) -> datetime:
        """Convert a time read from the collection (aware-labelled) to a true aware UTC time."""
        return self._options.frame.from_stored(when)

    async def server_time(self, operation: str = "server_time", *, read: _ServerMode | None = None) -> datetime:
        """The server's clock, aware UTC: the primary's (from a recent heartbeat), or that of a member `read` selects.

        `operation` names the reading in the core's errors (e.g. the admin request it serves).
        """
        return await self._server.time(operation, read)

    # -- the original's hooks --

    def _filter_exclude_lock(self, offset: float = 0) -> dict[str, Any]:
        """Filter of sessions not held at now + `offset` seconds (the original's hook; subclasses may override it).

        `count_active`, `get_session` and the original's `count_active` statistic are built from
        it. The time is the server's: the one the operation read, or the last reading.
        """
        at = self._options.frame.to_stored(self._server.query_now() + timedelta(seconds=offset))
        return {self.next_use: {"$not": {"$gt": at}}}

    def _filter_include_lock(self, offset: float = 0) -> dict[str, Any]:
        """Filter of sessions held beyond now + `offset` seconds (the original's hook for `count_locked`)."""
        at = self._options.frame.to_stored(self._server.query_now() + timedelta(seconds=offset))
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

    def _legacy_filters(self, now: datetime) -> dict[str, dict[str, Any]] | None:
        """The original's `count_active` and `count_locked` filters at `now`, for a customised selection (else None)."""
        if not self._custom_selection():
            return None
        with self._server.at(now):
            return {
                queries.Row.LEGACY_ACTIVE: queries.and_filters(self.default_filter, self._filter_exclude_lock()),
                queries.Row.LEGACY_LOCKED: queries.and_filters(self.default_filter, self._filter_include_lock()),
            }

    def _selectable(self, read: TimeFrame | None = None) -> dict[str, Any]:
        """The filter of `get_session`: default_filter and not held (the hook's, or the server's $$NOW)."""
        if self._hooks_overridden():
            return queries.and_filters(self.default_filter, self._filter_exclude_lock())
        # The same rule as the hook, with the server's own clock for an exact hand-out.
        return queries.and_filters(self.default_filter, queries.available(self.fields, read or self._options.frame))

    # -- hand-outs and the handlers' reports --

    async def get_session(
        self, count_use: int = 1, next_use_delay: float | None = None, *, db_session: DbSession = None
    ) -> Document | None:
        """Atomically take the first selectable session in `default_sort` order (least recently used), or None.

        The session is held `next_use_delay` seconds (the option by default; negative: not held)
        and returned as it was before, with `projection`'s fields.
        """
        count = check_count(count_use, "count_use")
        delay = self.next_use_delay if next_use_delay is None else check_delay(next_use_delay)
        return await self._handouts.take(
            self._selectable, self.fields, count, delay, self.default_sort, self.projection or None,
            driver_session(db_session),
        )  # fmt: skip

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
        count = check_count(count_success, "count_success")
        hold = timedelta(seconds=self.next_use_delay if next_use_delay is None else check_delay(next_use_delay))
        fields = self.fields

        def update(lease: ObjectId | None, read: TimeFrame, write: TimeFrame) -> Any:
            return queries.report_update(fields, write, Hold.USE, hold, lease, successes=count, read_frame=read)

        return await self._handouts.report("session_success", session, update, driver_session(db_session))

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
        self, session: SessionRef, delta: timedelta, hold: Hold, operation: str, db_session: DbSession
    ) -> UpdateResult:
        fields = self.fields

        def update(lease: ObjectId | None, read: TimeFrame, write: TimeFrame) -> Any:
            if lease is None:
                # Not a report on a hand-out of this client (an operator, an id from elsewhere): as asked.
                return queries.hold_update(fields, write, hold, delta)
            return queries.report_update(fields, write, hold, delta, lease, read_frame=read)

        return await self._handouts.report(operation, session, update, driver_session(db_session))

    # -- an operator's writes and reads --

    async def session_inactive(self, session: SessionRef, *, db_session: DbSession = None) -> UpdateResult:
        """Disable a session for good (until `session_activate`)."""
        update = {"$set": {self.active: False}}
        return await self._write("session_inactive", session, update, db_session)

    async def session_activate(self, session: SessionRef, *, db_session: DbSession = None) -> UpdateResult:
        """Bring a session back: active again, any lock or block cleared (the "activator"; not in the original)."""
        update = queries.unlock_update(self.fields, activate=True)
        return await self._write("session_activate", session, update, db_session)

    async def session_unlock(self, session: SessionRef, *, db_session: DbSession = None) -> UpdateResult:
        """Clear a lock or block (the session stays inactive if it was; not in the original)."""
        return await self._write("session_unlock", session, queries.unlock_update(self.fields), db_session)

    async def _write(self, operation: str, session: SessionRef, update: Any, db_session: DbSession) -> UpdateResult:
        return await self.update_one(
            session_filter(session), update, session=driver_session(db_session), comment=operation
        )

    async def add(self, data: Mapping[str, Any], *, db_session: DbSession = None) -> InsertOneResult:
        """Insert a new session; `data` usually holds the credentials under `session` (stored as given)."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"data must be a dict, got {type(data).__name__}", field="data")
        doc = queries.new_document(self.fields, self._options.frame, data, datetime.now(UTC))
        result = await self.insert_one(doc, session=driver_session(db_session), comment="add")
        if self._indexes.pending and db_session is None:
            # The pool's first session created the collection that connect() found missing.
            self._indexes.pending = False
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
        update = queries.fields_update(self._options.frame, payload, unset_payload)
        return await self._write("session_update", session, update, db_session)

    async def session_delete(self, session: SessionRef, *, db_session: DbSession = None) -> DeleteResult:
        """Delete a session document."""
        return await self.delete_one(
            session_filter(session), session=driver_session(db_session), comment="session_delete"
        )

    async def get(self, session_id: SessionRef, *, db_session: DbSession = None) -> Document:
        """The whole document of one session (times as the caller asked); SessionNotFound if missing."""
        selector = session_filter(session_id)
        coll = self._runner.coll()
        doc = await self._runner.run("get", lambda: coll.find_one(selector, session=driver_session(db_session)))
        if doc is None:
            raise SessionNotFound(
                session_id.get("_id") if isinstance(session_id, Mapping) else session_id, operation="get"
            )
        return self._runner.out(doc)

    async def get_sessions(self, *, db_session: DbSession = None) -> list[Document]:
        """All sessions matching `default_filter`, with `projection`'s fields (all when it is None or {})."""
        return await self.find(
            self.default_filter, self.projection or None, session=driver_session(db_session), comment="get_sessions"
        )

    def state_of(self, doc: Mapping[str, Any], now: datetime) -> State:
        """State of a document returned by this object (naive or aware times) at the instant `now`."""
        return queries.state_of(self.rules, doc, now)

    def state_filter(self, state: State, now: datetime) -> dict[str, Any]:
        """A query filter matching exactly the sessions in `state` at `now` (server time)."""
        return queries.state_filter(self.rules, state, now)

    # -- statistics --

    async def count_active(self, *, db_session: DbSession = None) -> int:
        """Count sessions matching `default_filter` and `_filter_exclude_lock()` (not held now)."""
        # The server's time as a literal: a plain range on next_use is answered from the index alone.
        read = self._statistics.read_preference(db_session)
        now = await self.server_time("count_active", read=read)
        with self._server.at(now):
            query = queries.and_filters(self.default_filter, self._filter_exclude_lock())
        coll = self._statistics.collection(db_session)
        return await self._runner.run(
            "count_active", lambda: coll.count_documents(query, session=driver_session(db_session)), read
        )

    async def aggregate_statistics(
        self, *, db_session: DbSession = None, sums: bool = True, fast_total: bool = True
    ) -> Statistics:
        """Counts per state, the original's four counts, sums and key times of the pool, all for one moment.

        With `sums=False` the one pass over every document is left out: the counts then cost the
        held and inactive sessions' index keys, `uses`/`successes` are None, and the total is the
        collection's document count (`fast_total`, O(1)) or a count of its `_id` index. The daemon
        reads them so every interval and the sums on a slower cadence (`aggregate_sums`).
        """
        total = queries.Total.of(sums=sums, fast_total=fast_total)
        return await self._statistics.statistics(self.rules, self._legacy_filters, db_session, total)

    async def aggregate_sums(self, *, db_session: DbSession = None) -> Sums:
        """The sums of `count_use` and `count_success` and the exact total (one pass over every document)."""
        return await self._statistics.sums(self.rules, db_session)

    def statistics_pipeline(
        self, now: datetime, *, total: queries.Total | str = queries.Total.SUMS
    ) -> list[dict[str, Any]]:
        """The aggregation `aggregate_statistics()` runs at the server time `now` (to explain it, for one).

        `total` as in `queries.statistics_pipeline`: SUMS (one pass over every document), METADATA
        or COUNT (what the daemon runs every interval: `sums=False`).
        """
        return self._statistics.pipeline(now, self.rules, self._legacy_filters(now), total)

    # -- transactions --

    @asynccontextmanager
    async def transaction(self, write_concern: WriteConcern | None = None) -> AsyncIterator[Transaction]:
        """Run several operations atomically; commit on success, abort on exception."""
        if self.topology is None:
            await self.connect()
        options = self._options
        async with transaction(
            self._client,
            atomic=self.supports_transactions,
            mode=options.transactions,
            write_concern=write_concern or options.write_concern,
            timeout=options.timeout,
        ) as txn:
            yield txn
