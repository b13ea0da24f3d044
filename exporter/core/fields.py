"""MongoFields, as in the original mongo_client library: field names and pool options as properties.

Every query reads them through these properties, so a subclass may override any of them (a
property of its own, or the original's setter) and every query follows. The values live in the
client's `ClientOptions`, where each is checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta, tzinfo
from typing import Any

from exporter.core.model import Fields, Period
from exporter.core.options import ClientOptions, Default
from exporter.core.queries import StateRules


class MongoFields:
    """Field names and options of a pool (defaults as in mongo_client: 10 min lock, 8 h block, 1 s hold)."""

    def __init__(self, options: ClientOptions) -> None:
        self._options = options

    # -- field names --

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
        return self._options.fields.next_use

    @next_use.setter
    def next_use(self, value: str) -> None:
        self._options.rename("next_use", value)

    @property
    def active(self) -> str:
        """Name of the field that is true for a usable session (false: disabled for good)."""
        return self._options.fields.active

    @active.setter
    def active(self, value: str) -> None:
        self._options.rename("active", value)

    @property
    def session(self) -> str:
        """Name of the field holding the account's credentials."""
        return self._options.fields.session

    @session.setter
    def session(self, value: str) -> None:
        self._options.rename("session", value)

    @property
    def last_use(self) -> str:
        """Name of the field holding the time the session was last handed out."""
        return self._options.fields.last_use

    @last_use.setter
    def last_use(self, value: str) -> None:
        self._options.rename("last_use", value)

    @property
    def hold(self) -> str:
        """Name of the field recording which operation set `next_use` and until when (not in the original)."""
        return self._options.fields.hold

    @hold.setter
    def hold(self, value: str) -> None:
        self._options.rename("hold", value)

    @property
    def count_use(self) -> str:
        """Name of the use counter."""
        return self._options.fields.count_use

    @count_use.setter
    def count_use(self, value: str) -> None:
        self._options.rename("count_use", value)

    @property
    def count_success(self) -> str:
        """Name of the success counter."""
        return self._options.fields.count_success

    @count_success.setter
    def count_success(self, value: str) -> None:
        self._options.rename("count_success", value)

    @property
    def created(self) -> str:
        """Name of the creation time written by `add`."""
        return self._options.fields.created

    @created.setter
    def created(self, value: str) -> None:
        self._options.rename("created", value)

    @property
    def count_overrun(self) -> str:
        """Name of the counter of reports made after the session was handed to someone else (not in the original)."""
        return self._options.fields.count_overrun

    @count_overrun.setter
    def count_overrun(self, value: str) -> None:
        self._options.rename("count_overrun", value)

    # -- periods --

    @property
    def lock_time(self) -> timedelta:
        """Default period of `session_lock` (set: a period dict such as {'minutes': 10}, a timedelta or seconds)."""
        return self._options.lock_time

    @lock_time.setter
    def lock_time(self, value: float | timedelta | Period) -> None:
        self._options.lock_time = value

    @property
    def block_time(self) -> timedelta:
        """Default period of `session_block` (set like `lock_time`)."""
        return self._options.block_time

    @block_time.setter
    def block_time(self, value: float | timedelta | Period) -> None:
        self._options.block_time = value

    @property
    def grace(self) -> timedelta:
        """Holds without a valid recorded cause this short count as in use, not locked (not in the original)."""
        return self._options.grace

    @grace.setter
    def grace(self, value: float | timedelta | Period) -> None:
        self._options.grace = value

    @property
    def next_use_delay(self) -> float:
        """Seconds a session is held right after `get_session` (set: a negative value means 1, as in the original)."""
        return self._options.next_use_delay

    @next_use_delay.setter
    def next_use_delay(self, value: float) -> None:
        self._options.next_use_delay = value

    # -- selection --

    @property
    def default_filter(self) -> dict[str, Any]:
        """Filter of the sessions handed out and counted: by default `{active: true}` (following a renamed `active`)."""
        value = self._options.default_filter
        return value if value is not None else {self.active: True}

    @default_filter.setter
    def default_filter(self, value: Mapping[str, Any] | None) -> None:
        self._options.default_filter = value

    @property
    def projection(self) -> dict[str, Any] | None:
        """Fields `get_session` and `get_sessions` return: by default `{session: 1}` (and `_id`); None or {}: all."""
        value = self._options.projection
        return {self.session: 1} if isinstance(value, Default) else value

    @projection.setter
    def projection(self, value: Mapping[str, Any] | Default | None) -> None:
        self._options.projection = value

    @property
    def default_sort(self) -> list[tuple[str, int]]:
        """Order in which `get_session` hands sessions out: by default the least recently used first."""
        value = self._options.default_sort
        return value if value is not None else [(self.last_use, 1)]

    @default_sort.setter
    def default_sort(self, value: Sequence[tuple[str, int]] | None) -> None:
        self._options.default_sort = value

    # -- fixed with the client --

    @property
    def stored_timezone(self) -> tzinfo | None:
        """Zone of naive local times written by the original library, or None for UTC."""
        return self._options.frame.zone

    @property
    def tz_aware(self) -> bool:
        """True when returned documents carry aware datetimes (true instants), False for naive stored ones."""
        return self._options.tz_aware

    @property
    def timeout(self) -> float:
        """Seconds each operation may take."""
        return self._options.timeout

    @property
    def statistics_read_preference(self) -> str:
        """Where the statistics reads go (aggregate_statistics, aggregate_sums, count_active): a mode name."""
        return str(self._options.statistics_read.mongos_mode)

    @property
    def rules(self) -> StateRules:
        """What the state of a document depends on, besides the document and the time."""
        return StateRules(self.fields, self.lock_time, self.grace, self._options.frame)

    # -- reconnection (accepted as the original accepts them) --

    @property
    def allow_reconnect(self) -> bool:
        """Whether an operation that hit a network timeout is tried once more (a write may then apply twice)."""
        return self._options.allow_reconnect

    @allow_reconnect.setter
    def allow_reconnect(self, value: bool) -> None:
        self._options.allow_reconnect = value

    @property
    def max_allowed_reconnect(self) -> int | None:
        """Accepted as mongo_client accepts it: there it changes nothing, and here too (see the manual)."""
        return self._options.max_allowed_reconnect

    @max_allowed_reconnect.setter
    def max_allowed_reconnect(self, value: int | None) -> None:
        self._options.max_allowed_reconnect = value
