"""MongoSessions, the session state model and the core's errors: the client API handlers embed."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pymongo
from bson import ObjectId
from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
    WTimeoutError,
)
from pymongo.errors import OperationFailure as DriverOperationFailure
from pymongo.read_concern import ReadConcern
from pymongo.results import DeleteResult, InsertOneResult, UpdateResult
from pymongo.write_concern import WriteConcern

Document = dict[str, Any]
Period = Mapping[str, float]

PERIOD_UNITS = ("weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds")
MAX_PERIOD = timedelta(days=366)
_URI_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^@/\s]+@", re.IGNORECASE)


class State(StrEnum):
    """The five states a session document is in, exactly one at a time."""

    ACTIVE = "active"
    IN_USE = "in_use"
    LOCKED = "locked"
    BLOCKED = "blocked"
    INACTIVE = "inactive"


STATES: tuple[State, ...] = tuple(State)


class Hold(StrEnum):
    """Which operation set `next_use`, recorded in the document's hold field."""

    USE = "use"
    LOCK = "lock"
    BLOCK = "block"


_HOLD_STATE = {Hold.USE: State.IN_USE, Hold.LOCK: State.LOCKED, Hold.BLOCK: State.BLOCKED}


# --- errors -------------------------------------------------------------------------------------


def redact(text: str) -> str:
    """Remove credentials from any connection string inside `text`."""
    return _URI_CREDENTIALS.sub(r"\g<scheme>***@", text)


class SessionPoolError(Exception):
    """Base class of every error the client core raises."""

    def __init__(self, message: str, *, operation: str | None = None) -> None:
        self.message = redact(message)
        self.operation = operation
        super().__init__(self.message)


class InvalidInput(SessionPoolError, ValueError):
    """Input rejected before anything reached the database."""

    def __init__(self, message: str, *, field: str | None = None, operation: str | None = None) -> None:
        self.field = field
        super().__init__(message, operation=operation)


class SessionNotFound(SessionPoolError, LookupError):
    """No session document with that id."""

    def __init__(self, session_id: object, *, operation: str | None = None) -> None:
        self.session_id = session_id
        super().__init__(f"session {session_id} not found", operation=operation)


class OperationTimeout(SessionPoolError, TimeoutError):
    """The operation did not finish within its timeout."""

    def __init__(self, message: str, *, timeout: float, operation: str | None = None) -> None:
        self.timeout = timeout
        super().__init__(message, operation=operation)


class Unavailable(SessionPoolError, ConnectionError):
    """MongoDB could not be reached."""


class OperationFailed(SessionPoolError):
    """MongoDB refused or failed the operation."""

    def __init__(
        self, message: str, *, code: int | None = None, operation: str | None = None, transient: bool = False
    ) -> None:
        self.code = code
        self.transient = transient
        super().__init__(message, operation=operation)


class TransactionsUnsupported(SessionPoolError):
    """A transaction was required but the server is a standalone mongod."""


# --- pure helpers -------------------------------------------------------------------------------


def parse_period(period: Period | timedelta | None, default: timedelta, *, name: str = "period") -> timedelta:
    """Turn the seed's period dict (`{"hours": 10}`) into a timedelta, rejecting bad ones."""
    if period is None:
        return default
    if isinstance(period, timedelta):
        delta = period
    else:
        if not isinstance(period, Mapping) or not period:
            raise InvalidInput(f"{name} must be a non-empty dict such as {{'hours': 10}}, got {period!r}", field=name)
        parts: dict[str, float] = {}
        for unit, value in period.items():
            if unit not in PERIOD_UNITS:
                raise InvalidInput(f"{name}: unknown unit {unit!r}; use one of {', '.join(PERIOD_UNITS)}", field=name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput(f"{name}.{unit} must be a number, got {value!r}", field=name)
            if isinstance(value, int) and abs(value) > 10**15:
                # Larger than any unit's bound (366 days in microseconds is 3.2e13), and too big for a float.
                raise InvalidInput(f"{name}.{unit} is absurdly large: {value}", field=name)
            if not math.isfinite(value):
                raise InvalidInput(f"{name}.{unit} must be finite, got {value!r}", field=name)
            if value < 0:
                raise InvalidInput(f"{name}.{unit} must not be negative, got {value!r}", field=name)
            if value > MAX_PERIOD.total_seconds():
                raise InvalidInput(f"{name}.{unit} is absurdly large: {value!r}", field=name)
            parts[unit] = value
        try:
            delta = timedelta(**parts)
        except OverflowError:
            raise InvalidInput(f"{name} is absurdly large: {dict(period)!r}", field=name) from None
    if delta <= timedelta(0):
        raise InvalidInput(f"{name} must be longer than zero, got {delta}", field=name)
    if delta > MAX_PERIOD:
        raise InvalidInput(f"{name} must be at most {MAX_PERIOD.days} days, got {delta}", field=name)
    return delta


def _seconds(value: float | timedelta | Period, name: str) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, Mapping):
        return parse_period(value, timedelta(0), name=name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{name} must be a number of seconds, got {value!r}", field=name)
    if value < 0:
        raise InvalidInput(f"{name} must not be negative, got {value!r}", field=name)
    return timedelta(seconds=value)


def parse_session_id(value: object) -> ObjectId:
    """Return the ObjectId of a session given as a document, an ObjectId or its 24-hex string."""
    if isinstance(value, Mapping):
        if "_id" not in value:
            raise InvalidInput("session dict has no '_id'", field="_id")
        value = value["_id"]
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str) and ObjectId.is_valid(value):
        return ObjectId(value)
    shown = repr(value) if len(repr(value)) <= 64 else repr(value)[:61] + "..."
    raise InvalidInput(f"malformed session id {shown}: expected a 24-character hex ObjectId", field="session_id")


def _check_keys(payload: Mapping[str, Any], where: str, *, depth: int = 0) -> None:
    if depth > 32:
        raise InvalidInput(f"{where} is nested too deeply", field=where)
    for key, value in payload.items():
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"{where} has an empty or non-string key {key!r}", field=where)
        if any(not part or part.startswith("$") for part in key.split(".")):
            raise InvalidInput(
                f"{where} key {key!r} is not allowed: keys must not be empty or start with '$'",
                field=where,
            )
        if isinstance(value, Mapping):
            _check_keys(value, where, depth=depth + 1)
        elif isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, Mapping):
                    _check_keys(item, where, depth=depth + 1)


def classify(
    doc: Mapping[str, Any],
    now: datetime,
    *,
    fields: Fields | None = None,
    lock_time: timedelta = timedelta(minutes=10),
    grace: timedelta = timedelta(seconds=60),
) -> State:
    """Return the state of one session document at `now` (times already aware UTC)."""
    f = fields or Fields()
    active = doc.get(f.active, None)
    if active is not True and active is not None:
        return State.INACTIVE
    next_use = doc.get(f.next_use)
    if not isinstance(next_use, datetime) or next_use <= now:
        return State.ACTIVE
    hold = doc.get(f.hold)
    if hold in _HOLD_STATE:
        return _HOLD_STATE[Hold(hold)]
    remaining = next_use - now
    if remaining > lock_time:
        return State.BLOCKED
    if remaining > grace:
        return State.LOCKED
    return State.IN_USE


@dataclass(frozen=True)
class Fields:
    """Names of the fields the pool logic reads and writes (the seed's MongoFields)."""

    next_use: str = "next_use"
    active: str = "active"
    session: str = "session"
    last_use: str = "last_use"
    hold: str = "hold"
    count_use: str = "count_use"
    count_success: str = "count_success"
    created: str = "created"

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not isinstance(value, str) or not value or value.startswith("$") or value == "_id":
                raise InvalidInput(f"field name {name}={value!r} is not a usable field name", field=name)
        names = list(self.__dict__.values())
        if len(set(names)) != len(names):
            raise InvalidInput(f"field names must be distinct, got {names}", field="fields")


@dataclass(frozen=True)
class Statistics:
    """One consistent snapshot of a pool, as returned by `aggregate_statistics()`."""

    time: datetime
    states: dict[State, int]
    total: int
    uses: int
    successes: int
    next_unlock: datetime | None
    oldest_active_last_use: datetime | None
    snapshot: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict (times as ISO 8601 strings)."""
        return {
            "time": self.time.isoformat(),
            "states": {str(k): v for k, v in self.states.items()},
            "total": self.total,
            "uses": self.uses,
            "successes": self.successes,
            "next_unlock": self.next_unlock.isoformat() if self.next_unlock else None,
            "oldest_active_last_use": (
                self.oldest_active_last_use.isoformat() if self.oldest_active_last_use else None
            ),
            "snapshot": self.snapshot,
        }


@dataclass
class Transaction:
    """What `MongoSessions.transaction()` yields: the driver session and whether it is atomic."""

    db_session: AsyncClientSession
    atomic: bool
    mode: Literal["transaction", "no-transaction"] = field(init=False)

    def __post_init__(self) -> None:
        self.mode = "transaction" if self.atomic else "no-transaction"


DbSession = AsyncClientSession | Transaction | None


def _driver_session(db_session: DbSession) -> AsyncClientSession | None:
    if isinstance(db_session, Transaction):
        return db_session.db_session
    return db_session


@asynccontextmanager
async def guard(operation: str, timeout: float) -> AsyncIterator[None]:  # noqa: ASYNC109 - a driver (CSOT) timeout
    """Run a block of driver calls with a timeout, turning driver errors into the core's errors."""
    try:
        with pymongo.timeout(timeout):
            yield
    except SessionPoolError:
        raise
    except (TimeoutError, ExecutionTimeout, NetworkTimeout, WTimeoutError) as exc:
        raise OperationTimeout(
            f"{operation} timed out after {timeout:g} s: {exc}", timeout=timeout, operation=operation
        ) from None
    except ServerSelectionTimeoutError as exc:
        raise Unavailable(f"{operation}: MongoDB is unreachable: {exc}", operation=operation) from None
    except ConnectionFailure as exc:
        raise Unavailable(f"{operation}: connection to MongoDB failed: {exc}", operation=operation) from None
    except DriverOperationFailure as exc:
        if exc.timeout:
            raise OperationTimeout(
                f"{operation} timed out after {timeout:g} s: {exc}",
                timeout=timeout,
                operation=operation,
            ) from None
        raise OperationFailed(
            f"{operation} failed: {exc}",
            code=exc.code,
            operation=operation,
            transient=exc.has_error_label("TransientTransactionError"),
        ) from None
    except PyMongoError as exc:
        if exc.timeout:
            raise OperationTimeout(
                f"{operation} timed out after {timeout:g} s: {exc}",
                timeout=timeout,
                operation=operation,
            ) from None
        raise OperationFailed(f"{operation} failed: {exc}", operation=operation) from None


# --- the client ---------------------------------------------------------------------------------


class MongoSessions:
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
        overrides = {
            k: v
            for k, v in (
                ("next_use", next_use),
                ("active", active),
                ("session", session),
                ("last_use", last_use),
                ("hold", hold),
            )
            if v is not None
        }
        self._fields = Fields(**{**base.__dict__, **overrides})
        self._lock_time = _seconds(lock_time, "lock_time")
        self._block_time = _seconds(block_time, "block_time")
        self._grace = _seconds(grace, "grace")
        self._next_use_delay = self._check_delay(next_use_delay)
        if default_filter is not None:
            if not isinstance(default_filter, Mapping):
                raise InvalidInput("default_filter must be a dict", field="default_filter")
            self._default_filter: dict[str, Any] | None = dict(default_filter)
        else:
            self._default_filter = None
        self._projection = dict(projection) if projection is not None else None
        self._stored_tz = self._zone(stored_timezone)
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
        return self._stored_tz

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
        f = self._fields
        return [
            # Equality, Sort, Range: `active` is two points (true, null) the planner merge-sorts
            # on last_use, so get_session reads a handful of keys instead of sorting the pool.
            ([(f.active, 1), (f.last_use, 1), (f.next_use, 1)], "get_session, count_active, oldest active"),
            ([(f.active, 1), (f.hold, 1), (f.next_use, 1)], "state counts and the next unlock"),
        ]

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

    @staticmethod
    def _zone(value: str | tzinfo | None) -> tzinfo | None:
        if value is None or isinstance(value, tzinfo):
            return value
        if not isinstance(value, str) or not value:
            raise InvalidInput(f"stored_timezone must be an IANA zone name, got {value!r}", field="stored_timezone")
        if value.upper() == "UTC":
            return None
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(
                f"stored_timezone {value!r} is not a known IANA time zone (e.g. 'Europe/Moscow')",
                field="stored_timezone",
            ) from None

    def _offset_ms(self) -> int:
        if self._stored_tz is None:
            return 0
        offset = datetime.now(UTC).astimezone(self._stored_tz).utcoffset() or timedelta(0)
        return int(offset.total_seconds() * 1000)

    def _now_expr(self, plus: timedelta = timedelta(0)) -> Any:
        ms = self._offset_ms() + int(plus.total_seconds() * 1000)
        return "$$NOW" if ms == 0 else {"$add": ["$$NOW", ms]}

    def _to_stored(self, when: datetime) -> datetime:
        if self._stored_tz is None:
            return when
        return when.astimezone(self._stored_tz).replace(tzinfo=UTC)

    def from_stored(self, when: datetime) -> datetime:
        """Convert a time read from the collection to a true aware UTC time."""
        if self._stored_tz is None:
            return when if when.tzinfo else when.replace(tzinfo=UTC)
        return when.replace(tzinfo=self._stored_tz).astimezone(UTC)

    async def server_time(self, _op: str = "server_time") -> datetime:
        """The server's clock (`hello.localTime`), aware UTC."""
        async with self._guard(_op):
            hello = await self._client.admin.command("hello")
        now: datetime = hello["localTime"]
        return now if now.tzinfo else now.replace(tzinfo=UTC)

    # -- the seed's API --

    async def session_lock(
        self,
        session: Mapping[str, Any] | ObjectId | str,
        period: Period | None = None,
        *,
        db_session: DbSession = None,
    ) -> UpdateResult:
        """Hold a session for `period` (default `lock_time`): the source rate-limited it."""
        delta = parse_period(period, self.lock_time)
        return await self._hold(session, delta, Hold.LOCK, "session_lock", db_session)

    async def session_block(
        self,
        session: Mapping[str, Any] | ObjectId | str,
        period: Period | None = None,
        *,
        db_session: DbSession = None,
    ) -> UpdateResult:
        """Hold a session for a long `period` (default `block_time`): the source banned it."""
        delta = parse_period(period, self.block_time)
        return await self._hold(session, delta, Hold.BLOCK, "session_block", db_session)

    async def _hold(
        self,
        session: Mapping[str, Any] | ObjectId | str,
        delta: timedelta,
        hold: Hold,
        op: str,
        db_session: DbSession,
    ) -> UpdateResult:
        oid = parse_session_id(session)
        update = [{"$set": {self.next_use: self._now_expr(delta), self.hold: str(hold)}}]
        return await self.update_one(filter={"_id": oid}, update=update, session=_driver_session(db_session), _op=op)

    def _available(self) -> dict[str, Any]:
        return {"$expr": {"$lte": [f"${self.next_use}", self._now_expr()]}}

    def _selectable(self) -> dict[str, Any]:
        base = self.default_filter
        if "$expr" in base:
            return {"$and": [base, self._available()]}
        return {**base, **self._available()}

    async def count_active(self, *, db_session: DbSession = None) -> int:
        """Count sessions matching `default_filter` that are not held right now."""
        # The server's time as a literal, not $$NOW inside $expr: a plain range on next_use is
        # answered from the index alone, where $expr made the server fetch every live document.
        now = self._to_stored(await self.server_time("count_active"))
        not_held = {self.next_use: {"$not": {"$gt": now}}}
        base = self.default_filter
        query = {"$and": [base, not_held]} if self.next_use in base or "$and" in base else {**base, **not_held}
        return await self.count_documents(filter=query, session=_driver_session(db_session), _op="count_active")

    async def get_sessions(self, *, db_session: DbSession = None) -> list[Document]:
        """All sessions matching `default_filter`, with `projection`'s fields."""
        async with self._guard("get_sessions"):
            cursor = self._collection.find(self.default_filter, self.projection, session=_driver_session(db_session))
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
        f = self._fields
        update = [
            {
                "$set": {
                    f.last_use: self._now_expr(),
                    f.next_use: self._now_expr(timedelta(seconds=delay)),
                    f.hold: str(Hold.USE),
                    f.count_use: {"$add": [{"$ifNull": [f"${f.count_use}", 0]}, count]},
                }
            }
        ]
        doc = await self.find_one_and_update(
            filter=self._selectable(),
            update=update,
            sort=[(f.last_use, 1)],
            projection=self.projection,
            return_document=ReturnDocument.BEFORE,
            session=_driver_session(db_session),
            _op="get_session",
        )
        return self._convert(doc) if doc is not None else None

    async def session_success(
        self,
        session: Mapping[str, Any] | ObjectId | str,
        count_success: int = 1,
        next_use_delay: float | None = None,
        *,
        db_session: DbSession = None,
    ) -> UpdateResult:
        """Count successful uses of a session and hold it for `next_use_delay` seconds."""
        oid = parse_session_id(session)
        count = self._check_count(count_success, "count_success")
        delay = self.next_use_delay if next_use_delay is None else self._check_delay(next_use_delay)
        f = self._fields
        update = [
            {
                "$set": {
                    f.count_success: {"$add": [{"$ifNull": [f"${f.count_success}", 0]}, count]},
                    f.next_use: self._now_expr(timedelta(seconds=delay)),
                    f.hold: str(Hold.USE),
                }
            }
        ]
        return await self.update_one(
            filter={"_id": oid}, update=update, session=_driver_session(db_session), _op="session_success"
        )

    async def session_inactive(
        self, session: Mapping[str, Any] | ObjectId | str, *, db_session: DbSession = None
    ) -> UpdateResult:
        """Disable a session for good (until `session_activate`)."""
        oid = parse_session_id(session)
        return await self.update_one(
            filter={"_id": oid},
            update={"$set": {self.active: False}},
            session=_driver_session(db_session),
            _op="session_inactive",
        )

    async def session_activate(
        self, session: Mapping[str, Any] | ObjectId | str, *, db_session: DbSession = None
    ) -> UpdateResult:
        """Bring a session back: active again, any lock or block cleared (the "activator")."""
        oid = parse_session_id(session)
        return await self.update_one(
            filter={"_id": oid},
            update={"$set": {self.active: True, self.next_use: None}, "$unset": {self.hold: ""}},
            session=_driver_session(db_session),
            _op="session_activate",
        )

    async def session_unlock(
        self, session: Mapping[str, Any] | ObjectId | str, *, db_session: DbSession = None
    ) -> UpdateResult:
        """Clear a lock or block (the session stays inactive if it was)."""
        oid = parse_session_id(session)
        return await self.update_one(
            filter={"_id": oid},
            update={"$set": {self.next_use: None}, "$unset": {self.hold: ""}},
            session=_driver_session(db_session),
            _op="session_unlock",
        )

    async def add(self, data: Mapping[str, Any], *, db_session: DbSession = None) -> InsertOneResult:
        """Insert a new session; `data` usually holds the credentials under `session`."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"data must be a dict, got {type(data).__name__}", field="data")
        _check_keys(data, "data")
        f = self._fields
        doc: Document = {
            f.active: True,
            f.count_use: 0,
            f.count_success: 0,
            f.created: self._to_stored(datetime.now(UTC)),
            f.last_use: None,
            f.next_use: None,
            **data,
        }
        if "_id" in doc:
            doc["_id"] = parse_session_id(doc)
        return await self.insert_one(document=doc, session=_driver_session(db_session), _op="add")

    async def session_update(
        self,
        session: Mapping[str, Any] | ObjectId | str,
        payload: Mapping[str, Any],
        unset_payload: Mapping[str, Any] | Iterable[str] | None = None,
        *,
        db_session: DbSession = None,
    ) -> UpdateResult:
        """Set fields (dotted paths such as 'session.phone') and optionally unset others."""
        oid = parse_session_id(session)
        if not isinstance(payload, Mapping):
            raise InvalidInput("payload must be a dict", field="payload")
        _check_keys(payload, "payload")
        if "_id" in payload:
            raise InvalidInput("payload must not change '_id'", field="payload")
        update: dict[str, Any] = {}
        if payload:
            update["$set"] = dict(payload)
        if unset_payload:
            keys = list(unset_payload.keys() if isinstance(unset_payload, Mapping) else unset_payload)
            _check_keys({k: "" for k in keys}, "unset_payload")
            if "_id" in keys:
                raise InvalidInput("unset_payload must not remove '_id'", field="unset_payload")
            overlap = set(keys) & set(payload)
            if overlap:
                raise InvalidInput(f"fields both set and unset: {sorted(overlap)}", field="unset_payload")
            update["$unset"] = {k: "" for k in keys}
        if not update:
            raise InvalidInput("nothing to update: payload and unset_payload are empty", field="payload")
        return await self.update_one(
            filter={"_id": oid}, update=update, session=_driver_session(db_session), _op="session_update"
        )

    async def session_delete(
        self, session: Mapping[str, Any] | ObjectId | str, *, db_session: DbSession = None
    ) -> DeleteResult:
        """Delete a session document."""
        oid = parse_session_id(session)
        return await self.delete_one(filter={"_id": oid}, session=_driver_session(db_session), _op="session_delete")

    async def get(self, session_id: Mapping[str, Any] | ObjectId | str, *, db_session: DbSession = None) -> Document:
        """The whole document of one session, times as aware UTC; SessionNotFound if missing."""
        oid = parse_session_id(session_id)
        async with self._guard("get"):
            doc = await self._collection.find_one({"_id": oid}, session=_driver_session(db_session))
        if doc is None:
            raise SessionNotFound(oid, operation="get")
        return self._convert(doc)

    def state_of(self, doc: Mapping[str, Any], now: datetime) -> State:
        """State of a document returned by `get()` at `now` (aware UTC)."""
        return classify(doc, now, fields=self._fields, lock_time=self.lock_time, grace=self.grace)

    def _convert(self, doc: Document) -> Document:
        if self._stored_tz is None:
            return doc
        return {k: self.from_stored(v) if isinstance(v, datetime) else v for k, v in doc.items()}

    # -- statistics --

    def _state_branches(self, now: datetime) -> dict[State, list[dict[str, Any]]]:
        """Index-friendly filters whose union is each state (active has none: it is the rest)."""
        f = self._fields
        now_s = self._to_stored(now)
        live = {"$in": [True, None]}
        legacy = {"$nin": [str(h) for h in Hold]}

        def held(hold: Any, low: datetime, high: datetime | None = None) -> dict[str, Any]:
            bounds: dict[str, Any] = {"$gt": low}
            if high is not None:
                bounds["$lte"] = high
            return {f.active: live, f.hold: hold, f.next_use: bounds}

        return {
            State.INACTIVE: [{f.active: {"$nin": [True, None]}}],
            State.BLOCKED: [held(str(Hold.BLOCK), now_s), held(legacy, now_s + self.lock_time)],
            State.LOCKED: [held(str(Hold.LOCK), now_s), held(legacy, now_s + self.grace, now_s + self.lock_time)],
            State.IN_USE: [held(str(Hold.USE), now_s), held(legacy, now_s, now_s + self.grace)],
        }

    def state_filter(self, state: State, now: datetime) -> dict[str, Any]:
        """A query filter matching exactly the sessions in `state` at `now` (server time)."""
        f = self._fields
        if state is State.ACTIVE:
            return {f.active: {"$in": [True, None]}, f.next_use: {"$not": {"$gt": self._to_stored(now)}}}
        branches = self._state_branches(now)[state]
        return branches[0] if len(branches) == 1 else {"$or": branches}

    def _statistics_pipeline(self, now: datetime) -> list[dict[str, Any]]:
        f = self._fields
        coll = self._collection.name
        now_s = self._to_stored(now)
        live = {"$in": [True, None]}

        def count(key: str, match: dict[str, Any]) -> dict[str, Any]:
            return {
                "$unionWith": {
                    "coll": coll,
                    "pipeline": [
                        {"$match": match},
                        {"$count": "n"},
                        {"$set": {"k": key}},
                    ],
                }
            }

        branches = self._state_branches(now)
        inactive = branches.pop(State.INACTIVE)[0]
        return [
            {"$match": inactive},
            {"$count": "n"},
            {"$set": {"k": "inactive"}},
            *(count(str(state), match) for state, matches in branches.items() for match in matches),
            {
                "$unionWith": {
                    "coll": coll,
                    "pipeline": [
                        {
                            "$group": {
                                "_id": None,
                                "total": {"$sum": 1},
                                "uses": {"$sum": f"${f.count_use}"},
                                "successes": {"$sum": f"${f.count_success}"},
                            }
                        },
                        {"$set": {"k": "sums"}},
                    ],
                }
            },
            # The earliest end of a lock or block: recorded ones, and legacy holds beyond the grace.
            *(
                {
                    "$unionWith": {
                        "coll": coll,
                        "pipeline": [
                            {"$match": {f.active: live, f.hold: hold, f.next_use: {"$gt": after}}},
                            {"$sort": {f.next_use: 1}},
                            {"$limit": 1},
                            {"$project": {"_id": 0, "k": "next_unlock", "v": f"${f.next_use}"}},
                        ],
                    }
                }
                for hold, after in (
                    ({"$in": [str(Hold.LOCK), str(Hold.BLOCK)]}, now_s),
                    ({"$nin": [str(h) for h in Hold]}, now_s + self.grace),
                )
            ),
            {
                "$unionWith": {
                    "coll": coll,
                    "pipeline": [
                        {
                            "$match": {
                                f.active: live,
                                f.last_use: {"$type": "date"},
                                "$expr": {"$lte": [f"${f.next_use}", now_s]},
                            }
                        },
                        {"$sort": {f.last_use: 1}},
                        {"$limit": 1},
                        {"$project": {"_id": 0, "k": "oldest", "v": f"${f.last_use}"}},
                    ],
                }
            },
        ]

    async def aggregate_statistics(self, *, db_session: DbSession = None) -> Statistics:
        """Counts per state, totals, sums and key times of the pool, all for one moment."""
        now = await self.server_time("aggregate_statistics")
        pipeline = self._statistics_pipeline(now)
        driver_session = _driver_session(db_session)
        snapshot = False
        async with self._guard("aggregate_statistics"):
            if driver_session is None and self.supports_transactions:
                # Snapshot read concern: every branch of the pipeline reads the same instant.
                async with self._client.start_session(snapshot=True) as snap:
                    rows = await (await self._collection.aggregate(pipeline, session=snap)).to_list(None)
                snapshot = True
            else:
                rows = await (await self._collection.aggregate(pipeline, session=driver_session)).to_list(None)
        counts = {"inactive": 0, "blocked": 0, "locked": 0, "in_use": 0}
        total = 0
        uses = successes = 0
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
            driver_session = self._client.start_session()
        try:
            if not atomic:
                yield Transaction(driver_session, atomic=False)
                return
            async with self._guard("transaction"):
                await driver_session.start_transaction(
                    read_concern=ReadConcern("snapshot"), write_concern=write_concern or self._write_concern
                )
            try:
                yield Transaction(driver_session, atomic=True)
            except BaseException:
                if driver_session.in_transaction:
                    try:
                        async with self._guard("abort_transaction"):
                            await driver_session.abort_transaction()
                    except SessionPoolError:
                        pass  # the server aborts an unfinished transaction by itself
                raise
            async with self._guard("commit_transaction"):
                await driver_session.commit_transaction()
        finally:
            await driver_session.end_session()

    # -- operation wrappers (the seed's MongoOperations) --

    def _guard(self, operation: str) -> AbstractAsyncContextManager[None]:
        return guard(operation, self._timeout)

    async def count_documents(self, _op: str = "count_documents", **kwargs: Any) -> int:
        """`Collection.count_documents` with the timeout and error mapping."""
        kwargs.setdefault("filter", {})
        async with self._guard(_op):
            return await self._collection.count_documents(**kwargs)

    async def update_one(self, _op: str = "update_one", **kwargs: Any) -> UpdateResult:
        """`Collection.update_one` with the timeout and error mapping."""
        async with self._guard(_op):
            return await self._collection.update_one(**kwargs)

    async def update_many(self, _op: str = "update_many", **kwargs: Any) -> UpdateResult:
        """`Collection.update_many` with the timeout and error mapping."""
        async with self._guard(_op):
            return await self._collection.update_many(**kwargs)

    async def find(self, _op: str = "find", **kwargs: Any) -> list[Document]:
        """`Collection.find` as a list, with the timeout and error mapping."""
        async with self._guard(_op):
            return [self._convert(doc) async for doc in self._collection.find(**kwargs)]

    async def delete_one(self, _op: str = "delete_one", **kwargs: Any) -> DeleteResult:
        """`Collection.delete_one` with the timeout and error mapping."""
        async with self._guard(_op):
            return await self._collection.delete_one(**kwargs)

    async def insert_one(self, _op: str = "insert_one", **kwargs: Any) -> InsertOneResult:
        """`Collection.insert_one` with the timeout and error mapping."""
        async with self._guard(_op):
            return await self._collection.insert_one(**kwargs)

    async def find_one_and_update(self, _op: str = "find_one_and_update", **kwargs: Any) -> Document | None:
        """`Collection.find_one_and_update` with the timeout and error mapping."""
        async with self._guard(_op):
            return await self._collection.find_one_and_update(**kwargs)

    async def index_information(self, _op: str = "index_information", **kwargs: Any) -> dict[str, Any]:
        """`Collection.index_information` with the timeout and error mapping."""
        async with self._guard(_op):
            return dict(await self._collection.index_information(**kwargs))

    async def create_index(self, _op: str = "create_index", **kwargs: Any) -> str:
        """`Collection.create_index` with the timeout and error mapping."""
        async with self._guard(_op):
            return await self._collection.create_index(**kwargs)

    async def drop_index(self, _op: str = "drop_index", **kwargs: Any) -> None:
        """`Collection.drop_index` with the timeout and error mapping."""
        async with self._guard(_op):
            await self._collection.drop_index(**kwargs)
