"""The state model: the five states, what set a hold, field names, periods and session ids."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId

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
    if hold in HOLD_STATE:
        return HOLD_STATE[Hold(hold)]
    remaining = next_use - now
    if remaining > lock_time:
        return State.BLOCKED
    if remaining > grace:
        return State.LOCKED
    return State.IN_USE


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
        delta = timedelta(**parts)
    if delta <= timedelta(0):
        raise InvalidInput(f"{name} must be longer than zero, got {delta}", field=name)
    if delta > MAX_PERIOD:
        raise InvalidInput(f"{name} must be at most {MAX_PERIOD.days} days, got {delta}", field=name)
    return delta


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


def check_keys(payload: Mapping[str, Any], where: str, *, depth: int = 0) -> None:
    """Refuse empty keys and keys starting with '$' anywhere in `payload`."""
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
            check_keys(value, where, depth=depth + 1)
        elif isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, Mapping):
                    check_keys(item, where, depth=depth + 1)
