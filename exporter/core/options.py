"""A client's options in one object, each checked in one place (at construction and on every change)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, timedelta, tzinfo
from enum import Enum
from typing import Any, Final, Literal

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from pymongo.read_preferences import Nearest, Primary, PrimaryPreferred, Secondary, SecondaryPreferred, _ServerMode
from pymongo.write_concern import WriteConcern

from exporter.core.clocks import MemberClocks
from exporter.core.errors import InvalidInput
from exporter.core.model import MAX_PERIOD, Document, Fields, Period, duration
from exporter.core.timeframe import TimeFrame


class Default(Enum):
    """An option left to its default, which follows the field names (`projection`: `{session: 1}`)."""

    DEFAULT = "default"


DEFAULT: Final = Default.DEFAULT

# Where the statistics reads may go; writes, get_session and admin reads always go to the primary.
READ_PREFERENCES: dict[str, _ServerMode] = {
    "primary": Primary(),
    "primaryPreferred": PrimaryPreferred(),
    "secondary": Secondary(),
    "secondaryPreferred": SecondaryPreferred(),
    "nearest": Nearest(),
}

TransactionsMode = Literal["require", "fallback"]


def read_preference(name: str) -> _ServerMode:
    """The driver's read preference called `name` (one of READ_PREFERENCES); InvalidInput otherwise."""
    try:
        return READ_PREFERENCES[name]
    except (KeyError, TypeError):
        raise InvalidInput(
            f"read preference must be one of {', '.join(READ_PREFERENCES)}, got {name!r}", field="read_preference"
        ) from None


def write_concern(w: int | str | None = None, j: bool | None = None, wtimeout: int | None = None) -> WriteConcern:
    """The driver's write concern of w, j and wtimeout; InvalidInput for an unacknowledged one or one it refuses."""
    if w == 0 and not isinstance(w, str):
        raise InvalidInput(
            "w=0 (unacknowledged writes) is refused: a pool must know its writes landed; use 1 or more, or 'majority'",
            field="w",
        )
    if w == "":
        raise InvalidInput("w must not be empty: use 1 or more, or 'majority'", field="w")
    try:
        return WriteConcern(w=w, j=j, wtimeout=wtimeout)
    except (TypeError, ValueError, PyMongoError) as exc:
        raise InvalidInput(f"invalid write concern: {exc}", field="w") from None


def check_delay(delay: object, name: str = "next_use_delay") -> float:
    """A hold in seconds: a finite number within the longest period (negative: in the past, no hold)."""
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay):
        raise InvalidInput(f"{name} must be a number of seconds, got {delay!r}", field=name)
    limit = MAX_PERIOD.total_seconds()
    if not -limit <= delay <= limit:
        raise InvalidInput(f"{name} must be within {int(limit)} seconds, got {delay!r}", field=name)
    return float(delay)


def check_count(value: object, name: str) -> int:
    """A count of uses or successes: a whole number from 0."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000_000:
        raise InvalidInput(f"{name} must be a whole number from 0, got {value!r}", field=name)
    return value


def field_names(fields: Fields | Mapping[str, str] | None, **renames: str | None) -> Fields:
    """The field names of `fields` (a Fields, a dict of names or None: the defaults) with `renames` applied."""
    base = Fields(**fields) if isinstance(fields, Mapping) else (fields or Fields())
    return Fields(**{**base.__dict__, **{k: v for k, v in renames.items() if v is not None}})


def _filter(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"default_filter must be a dict, got {type(value).__name__}", field="default_filter")
    return dict(value)


def _projection(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput(f"projection must be a dict or None, got {type(value).__name__}", field="projection")
    return dict(value)


def _sort(value: object) -> list[tuple[str, int]]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise InvalidInput("default_sort must be a list of (field, direction) pairs", field="default_sort")
    pairs: list[tuple[str, int]] = []
    for item in value:
        if (
            not isinstance(item, Sequence)
            or isinstance(item, str)
            or len(item) != 2
            or not isinstance(item[0], str)
            or item[1] not in (1, -1)
        ):
            raise InvalidInput(f"default_sort: {item!r} is not a (field, 1 or -1) pair", field="default_sort")
        pairs.append((item[0], int(item[1])))
    return pairs


def _reconnects(value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvalidInput("max_allowed_reconnect must be a whole number from 0", field="max_allowed_reconnect")
    return value


class ClientOptions:
    """Every option of one MongoSessions, checked: the constructor and each setter go through the same checks.

    What may change after construction (as the original library's callers change it) has a setter:
    the field names (`rename`), the periods, `next_use_delay`, the selection (`default_filter`,
    `projection`, `default_sort`) and the reconnection options. The rest is fixed with the client.
    `None` for `default_filter` or `default_sort`, and DEFAULT for `projection`, mean the default,
    which follows the field names (`MongoFields` resolves it).
    """

    def __init__(
        self,
        *,
        fields: Fields | None = None,
        lock_time: float | timedelta | Period = timedelta(minutes=10),
        block_time: float | timedelta | Period = timedelta(hours=8),
        grace: float | timedelta | Period = timedelta(seconds=60),
        next_use_delay: float = 1,
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
        follow_primary: bool = True,
    ) -> None:
        self._fields = fields or Fields()
        self.lock_time = lock_time
        self.block_time = block_time
        self.grace = grace
        self.next_use_delay = next_use_delay
        self.default_filter = default_filter
        self.projection = projection
        self.default_sort = default_sort
        self.frame: Final = TimeFrame(stored_timezone)
        self.tz_aware: Final = bool(tz_aware)
        self.tzinfo: Final = tzinfo
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
            raise InvalidInput(f"timeout must be between 0 and 3600 seconds, got {timeout!r}", field="timeout")
        self.timeout: Final = float(timeout)
        self.write_concern: Final = write_concern(w, j, wtimeout)
        if transactions not in ("require", "fallback"):
            raise InvalidInput("transactions must be 'require' or 'fallback'", field="transactions")
        self.transactions: Final[TransactionsMode] = transactions
        self.statistics_read: Final = read_preference(statistics_read_preference)
        self.create_indexes: Final = create_indexes
        if console_indexes is not None and (
            isinstance(console_indexes, str) or not all(isinstance(n, str) and n for n in console_indexes)
        ):
            raise InvalidInput("console_indexes must be a list of sub-field names of session", field="console_indexes")
        self.console_indexes: Final = tuple(console_indexes) if console_indexes is not None else None
        self.allow_reconnect = allow_reconnect
        self.max_allowed_reconnect = max_allowed_reconnect
        self.follow_primary: Final = bool(follow_primary)

    @property
    def fields(self) -> Fields:
        """The field names as set (a subclass of the client may override each one's property)."""
        return self._fields

    def rename(self, key: str, value: str) -> None:
        """Give the field `key` (e.g. 'next_use') the name `value`; the names must stay usable and distinct."""
        self._fields = Fields(**{**self._fields.__dict__, key: value})

    @property
    def lock_time(self) -> timedelta:
        """Default period of `session_lock`."""
        return self._lock_time

    @lock_time.setter
    def lock_time(self, value: float | timedelta | Period) -> None:
        self._lock_time = duration(value, "lock_time")

    @property
    def block_time(self) -> timedelta:
        """Default period of `session_block`."""
        return self._block_time

    @block_time.setter
    def block_time(self, value: float | timedelta | Period) -> None:
        self._block_time = duration(value, "block_time")

    @property
    def grace(self) -> timedelta:
        """Holds without a valid recorded cause this short count as in use, not locked."""
        return self._grace

    @grace.setter
    def grace(self, value: float | timedelta | Period) -> None:
        self._grace = duration(value, "grace")

    @property
    def next_use_delay(self) -> float:
        """Seconds a session is held right after `get_session`."""
        return self._next_use_delay

    @next_use_delay.setter
    def next_use_delay(self, value: float) -> None:
        # As in the original: a negative default delay means 1 second.
        delay = check_delay(value)
        self._next_use_delay = delay if delay >= 0 else 1.0

    @property
    def default_filter(self) -> dict[str, Any] | None:
        """The filter as set, or None for the default."""
        return dict(self._default_filter) if self._default_filter is not None else None

    @default_filter.setter
    def default_filter(self, value: Mapping[str, Any] | None) -> None:
        self._default_filter = _filter(value) if value is not None else None

    @property
    def projection(self) -> dict[str, Any] | Default | None:
        """The projection as set: a dict, None (every field), or DEFAULT."""
        if isinstance(self._projection, dict):
            return dict(self._projection)
        return self._projection

    @projection.setter
    def projection(self, value: Mapping[str, Any] | Default | None) -> None:
        self._projection = DEFAULT if value is DEFAULT else _projection(value)

    @property
    def default_sort(self) -> list[tuple[str, int]] | None:
        """The order as set, or None for the default."""
        return list(self._default_sort) if self._default_sort is not None else None

    @default_sort.setter
    def default_sort(self, value: Sequence[tuple[str, int]] | None) -> None:
        self._default_sort = _sort(value) if value is not None else None

    @property
    def allow_reconnect(self) -> bool:
        """Whether an operation that hit a network timeout is tried once more."""
        return self._allow_reconnect

    @allow_reconnect.setter
    def allow_reconnect(self, value: bool) -> None:
        self._allow_reconnect = bool(value)

    @property
    def max_allowed_reconnect(self) -> int | None:
        """Accepted as mongo_client accepts it: there it changes nothing, and here too."""
        return self._max_allowed_reconnect

    @max_allowed_reconnect.setter
    def max_allowed_reconnect(self, value: int | None) -> None:
        self._max_allowed_reconnect = _reconnects(value)


def driver_client(
    mongo_url: str | None, options: ClientOptions, clocks: MemberClocks, client_options: dict[str, Any]
) -> AsyncMongoClient[Document]:
    """The PyMongo client a MongoSessions makes for itself, listening to the members' clocks."""
    listeners = [*(client_options.pop("event_listeners", None) or []), clocks]
    settings = {"tz_aware": options.tz_aware, "serverSelectionTimeoutMS": 5000, **client_options}
    settings["event_listeners"] = listeners
    if options.tz_aware:
        settings.setdefault("tzinfo", options.tzinfo or UTC)
    try:
        return AsyncMongoClient(mongo_url, **settings)
    except PyMongoError as exc:
        raise InvalidInput(f"invalid MongoDB connection: {exc}", field="mongo_url") from None
