"""The state model: the five states, what set a hold, field names, periods and session ids."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId
from bson.regex import Regex

from exporter.core.errors import InvalidInput

Document = dict[str, Any]
Period = Mapping[str, float]

PERIOD_UNITS = ("weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds")
MAX_PERIOD = timedelta(days=366)


class State(StrEnum):
    """The five states a session document is in, exactly one at a time."""

    ACTIVE = "active"
    IN_USE = "in_use"
    LOCKED = "locked"
    BLOCKED = "blocked"
    INACTIVE = "inactive"


STATES: tuple[State, ...] = tuple(State)
HELD_STATES: tuple[State, ...] = (State.IN_USE, State.LOCKED, State.BLOCKED)


class Hold(StrEnum):
    """Which operation set `next_use`, recorded in the document's hold field."""

    USE = "use"
    LOCK = "lock"
    BLOCK = "block"


HOLD_STATE = {Hold.USE: State.IN_USE, Hold.LOCK: State.LOCKED, Hold.BLOCK: State.BLOCKED}
HOLD_KINDS = tuple(str(h) for h in Hold)


@dataclass(frozen=True)
class Fields:
    """Names of the fields the pool logic reads and writes (the original mongo_client library's MongoFields)."""

    next_use: str = "next_use"
    active: str = "active"
    session: str = "session"
    last_use: str = "last_use"
    hold: str = "hold"
    count_use: str = "count_use"
    count_success: str = "count_success"
    created: str = "created"
    # Reports a handler made after its session had been handed to another handler (not in the original).
    count_overrun: str = "count_overrun"

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not isinstance(value, str) or not value or value.startswith("$") or value == "_id":
                raise InvalidInput(f"field name {name}={value!r} is not a usable field name", field=name)
        names = list(self.__dict__.values())
        if len(set(names)) != len(names):
            raise InvalidInput(f"field names must be distinct, got {names}", field="fields")


def recorded_hold(doc: Mapping[str, Any], fields: Fields) -> Hold | None:
    """The hold a document records, if it is still the hold in force: `hold.until` equals `next_use`.

    A worker of the original library writes `next_use` alone, so any such write makes the
    recorded hold stale and the document a legacy one again.
    """
    hold = doc.get(fields.hold)
    if not isinstance(hold, Mapping) or hold.get("kind") not in HOLD_KINDS:
        return None
    until, next_use = hold.get("until"), doc.get(fields.next_use)
    if not isinstance(until, datetime) or not isinstance(next_use, datetime) or until != next_use:
        return None
    return Hold(hold["kind"])


def classify(
    doc: Mapping[str, Any],
    now: datetime,
    *,
    fields: Fields | None = None,
    lock_time: timedelta = timedelta(minutes=10),
    grace: timedelta = timedelta(seconds=60),
) -> State:
    """The state of one session document at `now` (the document's times and `now` in one frame)."""
    f = fields or Fields()
    if doc.get(f.active) is not True:
        return State.INACTIVE
    next_use = doc.get(f.next_use)
    if not isinstance(next_use, datetime) or next_use <= now:
        return State.ACTIVE
    hold = recorded_hold(doc, f)
    if hold is not None:
        return HOLD_STATE[hold]
    remaining = next_use - now
    if remaining > lock_time:
        return State.BLOCKED
    if remaining > grace:
        return State.LOCKED
    return State.IN_USE


LEGACY_KEYS = ("count_active", "count_blocked", "count_locked", "count_total")


class Statistics(dict[str, int]):
    """One consistent snapshot of a pool, as returned by `aggregate_statistics()`.

    As a dict it is the original library's answer, with the original's meaning of each key:
    `count_active` (default_filter, not held), `count_blocked` (`active` is false: deactivated,
    not banned), `count_locked` (default_filter, held, whatever set the hold) and `count_total`.
    The five states and the rest are attributes; `uses` and `successes` are None when the
    statistics were read without the sums (`aggregate_statistics(sums=False)`).
    """

    def __init__(
        self,
        *,
        time: datetime,
        states: Mapping[State, int],
        total: int,
        uses: int | None,
        successes: int | None,
        next_unlock: datetime | None,
        oldest_active_last_use: datetime | None,
        snapshot: bool = False,
        legacy: Mapping[str, int] | None = None,
    ) -> None:
        self.time = time
        self.states = dict(states)
        self.total = total
        self.uses = uses
        self.successes = successes
        self.next_unlock = next_unlock
        self.oldest_active_last_use = oldest_active_last_use
        self.snapshot = snapshot
        held = sum(self.states.get(s, 0) for s in HELD_STATES)
        derived = {
            "count_active": self.states.get(State.ACTIVE, 0),
            "count_blocked": self.states.get(State.INACTIVE, 0),
            "count_locked": held,
            "count_total": total,
        }
        super().__init__({**derived, **(legacy or {})})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict of the five-state view (times as ISO 8601 strings)."""
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


@dataclass(frozen=True)
class Sums:
    """The sums over every document of a pool (`aggregate_sums()`), read at `time`.

    `total` is counted in the same pass; `metadata_total` is the collection's own document count,
    which the state counts use between two sums. They differ only if documents came or went
    during the pass, or if the metadata count is wrong (MongoDB after an unclean shutdown).
    """

    time: datetime
    total: int
    uses: int
    successes: int
    metadata_total: int | None
    # Sum of count_overrun: reports made after the session had been handed to another handler.
    overruns: int = 0

    @property
    def metadata_agrees(self) -> bool:
        """True when the collection's document count equals the counted total."""
        return self.metadata_total == self.total


def parse_period(period: Period | timedelta | None, default: timedelta, *, name: str = "period") -> timedelta:
    """Turn a period dict as the original library takes it (`{"hours": 10}`) into a timedelta, rejecting bad ones."""
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
        delta = timedelta(**parts)
    if delta <= timedelta(0):
        raise InvalidInput(f"{name} must be longer than zero, got {format_duration(delta)}", field=name)
    if delta > MAX_PERIOD:
        raise InvalidInput(
            f"{name} must be at most {format_duration(MAX_PERIOD)}, got {format_duration(delta)}", field=name
        )
    return delta


def format_duration(value: timedelta | float) -> str:
    """A duration the way operators write it: `30d`, `7d`, `1h30m`, `10m`, `45s`, `1m30.5s`."""
    seconds = round(value.total_seconds() if isinstance(value, timedelta) else float(value), 3)
    if seconds < 0:
        return "-" + format_duration(-seconds)
    whole, fraction = divmod(seconds, 1)
    rest = int(whole)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    if rest or fraction or not parts:
        parts.append(f"{round(rest + fraction, 3):g}s")
    return "".join(parts)


def duration(value: float | timedelta | Period, name: str) -> timedelta:
    """A duration given as seconds, a timedelta or a period dict."""
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
    """The ObjectId of a session given as a document, an ObjectId or its 24-hex string (the admin API's ids)."""
    if isinstance(value, Mapping):
        if "_id" not in value:
            raise InvalidInput("session dict has no '_id'", field="_id")
        value = value["_id"]
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str) and ObjectId.is_valid(value):
        return ObjectId(value)
    raise InvalidInput(
        f"malformed session id {_shown(value)}: expected a 24-character hex ObjectId", field="session_id"
    )


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _operator_free(value: Any, depth: int = 0) -> bool:
    """True when a value has no key starting with '$' at any depth (so it cannot act as a query operator)."""
    if depth > 32:
        return False
    if isinstance(value, Mapping):
        return all(
            isinstance(k, str) and not k.startswith("$") and _operator_free(v, depth + 1) for k, v in value.items()
        )
    return True


def session_filter(value: object) -> dict[str, Any]:
    """The filter selecting one session given as a document (anything with `_id`) or an id.

    Any `_id` MongoDB stores is accepted (ObjectId, string, number, a compound document...);
    a 24-hex string matches both itself and its ObjectId. What could act as a query instead of
    a value is refused: operator documents (`{"$ne": null}`), regular expressions and arrays.
    """
    if isinstance(value, Mapping):
        if "_id" not in value:
            raise InvalidInput("session dict has no '_id'", field="_id")
        value = value["_id"]
    if isinstance(value, ObjectId):
        return {"_id": value}
    if isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value):
        return {"_id": {"$in": [value, ObjectId(value)]}}
    if isinstance(value, list | tuple | set | frozenset | re.Pattern | Regex) or not _operator_free(value):
        raise InvalidInput(
            f"malformed session id {_shown(value)}: an id is a value, not a query (no operators, patterns or arrays)",
            field="session_id",
        )
    return {"_id": value}


def check_payload(payload: object, where: str) -> dict[str, Any]:
    """An update payload of dotted paths: refused when a path is empty, has an empty part or is an operator.

    Values are stored as given: keys such as '.ASPXAUTH' or '$Version' inside a cookie jar are data.
    """
    if not isinstance(payload, Mapping):
        raise InvalidInput(f"{where} must be a dict, got {type(payload).__name__}", field=where)
    for key in payload:
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise InvalidInput(f"{where} has an empty or malformed field path {key!r}", field=where)
        if key.startswith("$"):
            raise InvalidInput(
                f"{where} key {key!r} is an operator, not a field path (payload is what to $set)", field=where
            )
        if key == "_id" or key.startswith("_id."):
            raise InvalidInput(f"{where} must not change '_id'", field=where)
    return dict(payload)
