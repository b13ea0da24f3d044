"""The seed's MongoFields: field names and pool options, each readable and settable after construction.

Every query reads them through these properties, so a subclass may override any of them (a
property of its own, or the original's setter) and every query follows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from exporter.core.errors import InvalidInput
from exporter.core.model import MAX_PERIOD, Fields, Period, duration

_DEFAULT: Any = object()


def check_delay(delay: object, name: str = "next_use_delay") -> float:
    """A hold in seconds: a finite number within the longest period (negative: in the past, no hold)."""
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay):
        raise InvalidInput(f"{name} must be a number of seconds, got {delay!r}", field=name)
    limit = MAX_PERIOD.total_seconds()
    if not -limit <= delay <= limit:
        raise InvalidInput(f"{name} must be within {int(limit)} seconds, got {delay!r}", field=name)
    return float(delay)


class MongoFields:
    """Field names and options of a pool (defaults as in mongo_client: 10 min lock, 8 h block, 1 s hold)."""

    def _init_fields(
        self,
        fields: Fields,
        *,
        lock_time: float | timedelta | Period,
        block_time: float | timedelta | Period,
        grace: float | timedelta | Period,
        next_use_delay: float,
        default_filter: Mapping[str, Any] | None,
        projection: Mapping[str, Any] | Any | None,
        default_sort: Sequence[tuple[str, int]] | None,
    ) -> None:
        # Private attributes only: a subclass may have replaced any property without a setter.
        self._names: dict[str, str] = dict(fields.__dict__)
        self._lock_time = duration(lock_time, "lock_time")
        self._block_time = duration(block_time, "block_time")
        self._grace = duration(grace, "grace")
        self._next_use_delay = self._positive_delay(next_use_delay)
        self._default_filter = self._filter(default_filter) if default_filter is not None else None
        self._projection = _DEFAULT if projection is _DEFAULT else self._projection_value(projection)
        self._default_sort = self._sort(default_sort) if default_sort is not None else None

    # -- field names --

    def _rename(self, key: str, value: str) -> None:
        names = {**self._names, key: value}
        Fields(**names)  # validates: usable and distinct
        self._names = names

    @property
    def fields(self) -> Fields:
        """Every field name at once, as the properties (or a subclass's overrides) give them."""
        return Fields(
            next_use=self.next_use,
            active=self.active,
            session=self.session,
            last_use=self.last_use,
            hold=self.hold,
            count_use=self.count_use,
            count_success=self.count_success,
            created=self.created,
            count_overrun=self.count_overrun,
        )

    @property
    def next_use(self) -> str:
        """Name of the field holding the time until which the session is held."""
        return self._names["next_use"]

    @next_use.setter
    def next_use(self, value: str) -> None:
        self._rename("next_use", value)

    @property
    def active(self) -> str:
        """Name of the field that is true for a usable session (false: disabled for good)."""
        return self._names["active"]

    @active.setter
    def active(self, value: str) -> None:
        self._rename("active", value)

    @property
    def session(self) -> str:
        """Name of the field holding the account's credentials."""
        return self._names["session"]

    @session.setter
    def session(self, value: str) -> None:
        self._rename("session", value)

    @property
    def last_use(self) -> str:
        """Name of the field holding the time the session was last handed out."""
        return self._names["last_use"]

    @last_use.setter
    def last_use(self, value: str) -> None:
        self._rename("last_use", value)

    @property
    def hold(self) -> str:
        """Name of the field recording which operation set `next_use` and until when (not in the original)."""
        return self._names["hold"]

    @hold.setter
    def hold(self, value: str) -> None:
        self._rename("hold", value)

    @property
    def count_use(self) -> str:
        """Name of the use counter."""
        return self._names["count_use"]

    @count_use.setter
    def count_use(self, value: str) -> None:
        self._rename("count_use", value)

    @property
    def count_success(self) -> str:
        """Name of the success counter."""
        return self._names["count_success"]

    @count_success.setter
    def count_success(self, value: str) -> None:
        self._rename("count_success", value)

    @property
    def created(self) -> str:
        """Name of the creation time written by `add`."""
        return self._names["created"]

    @created.setter
    def created(self, value: str) -> None:
        self._rename("created", value)

    @property
    def count_overrun(self) -> str:
        """Name of the counter of reports made after the session was handed to someone else (not in the original)."""
        return self._names["count_overrun"]

    @count_overrun.setter
    def count_overrun(self, value: str) -> None:
        self._rename("count_overrun", value)

    # -- periods --

    @property
    def lock_time(self) -> timedelta:
        """Default period of `session_lock` (set: a period dict such as {'minutes': 10}, a timedelta or seconds)."""
        return self._lock_time

    @lock_time.setter
    def lock_time(self, value: float | timedelta | Period) -> None:
        self._lock_time = duration(value, "lock_time")

    @property
    def block_time(self) -> timedelta:
        """Default period of `session_block` (set like `lock_time`)."""
        return self._block_time

    @block_time.setter
    def block_time(self, value: float | timedelta | Period) -> None:
        self._block_time = duration(value, "block_time")

    @property
    def grace(self) -> timedelta:
        """Holds without a valid recorded cause this short count as in use, not locked (not in the original)."""
        return self._grace

    @grace.setter
    def grace(self, value: float | timedelta | Period) -> None:
        self._grace = duration(value, "grace")

    @staticmethod
    def _positive_delay(value: object) -> float:
        # As in the original: a negative default delay means 1 second.
        delay = check_delay(value)
        return delay if delay >= 0 else 1.0

    @property
    def next_use_delay(self) -> float:
        """Seconds a session is held right after `get_session` (set: a negative value means 1, as in the original)."""
        return self._next_use_delay

    @next_use_delay.setter
    def next_use_delay(self, value: float) -> None:
        self._next_use_delay = self._positive_delay(value)

    # -- selection --

    @staticmethod
    def _filter(value: object) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise InvalidInput(f"default_filter must be a dict, got {type(value).__name__}", field="default_filter")
        return dict(value)

    @property
    def default_filter(self) -> dict[str, Any]:
        """Filter of the sessions handed out and counted: by default `{active: true}` (following a renamed `active`)."""
        if self._default_filter is not None:
            return dict(self._default_filter)
        return {self.active: True}

    @default_filter.setter
    def default_filter(self, value: Mapping[str, Any] | None) -> None:
        self._default_filter = self._filter(value) if value is not None else None

    @staticmethod
    def _projection_value(value: object) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise InvalidInput(f"projection must be a dict or None, got {type(value).__name__}", field="projection")
        return dict(value)

    @property
    def projection(self) -> dict[str, Any] | None:
        """Fields `get_session` and `get_sessions` return: by default `{session: 1}` (and `_id`); None or {}: all."""
        if self._projection is _DEFAULT:
            return {self.session: 1}
        return dict(self._projection) if self._projection is not None else None

    @projection.setter
    def projection(self, value: Mapping[str, Any] | None) -> None:
        self._projection = self._projection_value(value)

    @staticmethod
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

    @property
    def default_sort(self) -> list[tuple[str, int]]:
        """Order in which `get_session` hands sessions out: by default the least recently used first."""
        if self._default_sort is not None:
            return list(self._default_sort)
        return [(self.last_use, 1)]

    @default_sort.setter
    def default_sort(self, value: Sequence[tuple[str, int]] | None) -> None:
        self._default_sort = self._sort(value) if value is not None else None
