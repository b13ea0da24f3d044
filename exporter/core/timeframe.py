"""The pool's stored time frame: true UTC, or the naive local wall time the original library wrote."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exporter.core.errors import InvalidInput


def zone(value: str | tzinfo | None) -> tzinfo | None:
    """The zone of a `stored_timezone` option: None for UTC, else a tzinfo (IANA names checked)."""
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


class TimeFrame:
    """Converts between true UTC instants and the values a pool stores.

    Pools written by the original library hold naive local wall times labelled as UTC; with a
    zone set, writes stay in that frame and reads are converted back to true UTC. The offset is
    taken at the current instant, so a hold straddling a DST change shifts by the difference.
    """

    def __init__(self, stored_timezone: str | tzinfo | None = None, *, shift: float = 0.0) -> None:
        self.zone = zone(stored_timezone)
        # Seconds added to the server's now in `now_expr` (the primary's clock corrected; see core/clocks.py).
        self.shift = shift

    def shifted(self, seconds: float) -> TimeFrame:
        """The same frame, with the server's now moved by `seconds` in `now_expr` (no copy when 0)."""
        if not seconds:
            return self
        moved = TimeFrame(shift=self.shift + seconds)
        moved.zone = self.zone
        return moved

    def offset_ms(self) -> int:
        """Milliseconds between the stored frame and UTC right now."""
        if self.zone is None:
            return 0
        offset = datetime.now(UTC).astimezone(self.zone).utcoffset() or timedelta(0)
        return int(offset.total_seconds() * 1000)

    def now_expr(self, plus: timedelta = timedelta(0)) -> Any:
        """An aggregation expression for the server's now (plus `plus`) in the stored frame."""
        ms = self.offset_ms() + int(plus.total_seconds() * 1000) + round(self.shift * 1000)
        return "$$NOW" if ms == 0 else {"$add": ["$$NOW", ms]}

    def to_stored(self, when: datetime) -> datetime:
        """A true instant as the pool stores it."""
        if self.zone is None:
            return when
        return when.astimezone(self.zone).replace(tzinfo=UTC)

    def from_stored(self, when: datetime) -> datetime:
        """A stored time as a true aware UTC instant."""
        if self.zone is None:
            return when if when.tzinfo else when.replace(tzinfo=UTC)
        return when.replace(tzinfo=self.zone).astimezone(UTC)

    def instant(self, value: datetime) -> datetime:
        """A time as handed out by this library (naive: stored wall time; aware: true) as a true UTC instant."""
        if value.tzinfo is None:
            return self.from_stored(value.replace(tzinfo=UTC))
        return value.astimezone(UTC)

    def for_storage(self, value: Any) -> Any:
        """A caller's value with every datetime in it (nested too) in the pool's stored frame.

        Aware datetimes are true instants and are converted; naive ones are taken as written, as
        the original library wrote them (wall time in the pool's frame).
        """
        if isinstance(value, datetime):
            return self.to_stored(value.astimezone(UTC)) if value.tzinfo is not None else value
        if isinstance(value, Mapping):
            return {k: self.for_storage(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.for_storage(v) for v in value]
        return value

    def for_caller(self, value: Any, tz_aware: bool, tz: tzinfo | None = None) -> Any:
        """A value read from the pool (datetimes stored-frame, labelled UTC) as the caller asked for them.

        PyMongo's convention: naive datetimes as the pool stores them, unless `tz_aware`, then true
        instants in `tz` (UTC by default). Nested documents and arrays are converted too.
        """
        if isinstance(value, datetime):
            if not tz_aware:
                return value.replace(tzinfo=None)
            return self.from_stored(value).astimezone(tz or UTC)
        if isinstance(value, dict):
            return {k: self.for_caller(v, tz_aware, tz) for k, v in value.items()}
        if isinstance(value, list):
            return [self.for_caller(v, tz_aware, tz) for v in value]
        return value
