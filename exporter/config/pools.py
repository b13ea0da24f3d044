"""The pool sections of the config: a pool's options (`defaults`), its collection (`pools`), discovery sources."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import Field

from exporter.config.rules import Problem, Section, rule
from exporter.config.values import (
    CollectionName,
    DatabaseName,
    Name,
    NameTemplate,
    PositiveSeconds,
    Seconds,
    SubFieldNames,
    TimeZone,
)
from exporter.core import Fields, InvalidInput


class UnderperformingConfig(Section):
    """Which sessions count as underperforming, and how often the daemon counts them."""

    min_uses: Annotated[int, Field(ge=1)] = 100
    """Only sessions used at least this many times are compared."""
    below: Annotated[float, Field(gt=0, lt=1)] = 0.2
    """A session underperforms when its success ratio is this fraction (0.2: 20 %) or more below its pool's."""
    interval: PositiveSeconds = 300.0
    """Seconds between counts (`session_pool_underperforming_sessions`), not every refresh: each reads every
    session used often enough."""


class SessionFieldsConfig(Section):
    """Sub-fields of a pool's `session` field the console may use; every other credential stays hidden."""

    search: Annotated[SubFieldNames, Field(max_length=8)] = []
    """Sub-fields the console searches (each gets an index), shown masked, e.g. `[phone, login]`: by prefix with a
    write token, by the whole value with a read token."""
    reveal: Annotated[int, Field(ge=0, le=4)] = 2
    """Trailing characters a masked search field shows (at most a quarter of the value)."""
    show: Annotated[SubFieldNames, Field(max_length=16)] = []
    """Sub-fields the console shows in full: only ones that are not secret, e.g. `[country]`."""


class PoolOptions(Section):
    """The options of a pool: `defaults` sets them for every pool, a pool may override each one.

    A new pool option is added here only (and to the chart's values and schema).
    """

    interval: PositiveSeconds = 15.0
    """Seconds between refreshes of the pool's state counts. The `--interval` flag sets it for every pool."""
    refresh_timeout: PositiveSeconds = 10.0
    """Seconds one refresh may take in all; then it fails, naming the cause."""
    max_age: PositiveSeconds | None = None
    """Seconds after which the pool's state series are withdrawn when no refresh succeeded; null is 3 x `interval`."""
    jitter: Annotated[float, Field(ge=0, le=3600)] = 1.0
    """Up to this many seconds of random delay before each refresh, so pools do not all query at the same instant."""
    lock_time: PositiveSeconds = 600.0
    """Seconds: a hold written by the original library (no hold marker) longer than this counts as blocked."""
    block_time: PositiveSeconds = 28800.0
    """Seconds a block lasts (the original library's default, 8 hours)."""
    grace: Seconds = 60.0
    """Seconds: a hold written by the original library up to this long counts as in use, not locked."""
    min_active_sessions: Annotated[int, Field(ge=0)] = 1
    """Exported as `session_pool_min_active_sessions`: the alert on too few active sessions compares with it."""
    create_indexes: bool = True
    """Create the indexes the statistics and the console need, and build them again when someone drops them."""
    sums_interval: PositiveSeconds = 300.0
    """Seconds between readings of the sums of `count_use` and `count_success` (one pass over every document)."""
    sums_timeout: PositiveSeconds = 120.0
    """Seconds one reading of the sums may take in all."""
    underperforming: UnderperformingConfig = UnderperformingConfig()
    """Sessions used often whose success ratio lags their pool's (console, metric, alert)."""

    @rule("max_age", "interval")
    @staticmethod
    def _max_age_covers_interval(max_age: float | None, interval: float) -> Iterator[Problem]:
        """`max_age` is at least `interval` (else the series would vanish between two good refreshes)."""
        if max_age is not None and max_age < interval:
            yield "max_age", f"must be >= the pool's interval ({interval:g})"

    @rule("grace", "lock_time")
    @staticmethod
    def _grace_within_lock_time(grace: float, lock_time: float) -> Iterator[Problem]:
        """`grace` is at most `lock_time`."""
        if grace > lock_time:
            yield "grace", f"must be <= lock_time ({lock_time:g})"


_FIELD_NAMES = ("next_use", "active", "session", "last_use", "hold", "count_use", "count_success", "created")


class FieldsConfig(Section):
    """Field names of a pool's documents, where they differ from the original library's (its MongoFields)."""

    next_use: str | None = None
    """Until when the session is held (locked, blocked or just picked up)."""
    active: str | None = None
    """`false` for a session made inactive for good."""
    session: str | None = None
    """The credentials sub-document (never shown unless `admin.expose_credentials`)."""
    last_use: str | None = None
    """When the session was last handed out."""
    hold: str | None = None
    """What set the current hold (written by this project; the original library writes `next_use` alone)."""
    count_use: str | None = None
    """How many times the session was handed out."""
    count_success: str | None = None
    """How many of those uses succeeded."""
    created: str | None = None
    """When the session was added."""

    def as_fields(self) -> Fields:
        """The core's Fields object for these overrides."""
        return Fields(**{k: v for k, v in self.model_dump().items() if v is not None})

    @rule(*_FIELD_NAMES)
    @staticmethod
    def _usable(*names: str | None) -> Iterator[Problem]:
        """The field names are usable and distinct (the client core's check)."""
        try:
            Fields(**{key: name for key, name in zip(_FIELD_NAMES, names, strict=True) if name is not None})
        except InvalidInput as exc:
            yield "", exc.message


class DocumentOptions(PoolOptions):
    """A pool's options plus what its documents look like: field names, time frame, sub-fields the console uses."""

    fields: FieldsConfig = FieldsConfig()
    """Field names of the pool's documents; null keeps a field's own name."""
    stored_timezone: TimeZone | None = None
    """IANA zone of the naive local times written by the original library, e.g. `Europe/Moscow`; null is UTC."""
    session_fields: SessionFieldsConfig = SessionFieldsConfig()
    """Sub-fields of `session` the console may use; every other credential stays hidden."""


class PoolDefinition(DocumentOptions):
    """One pool: where its sessions live, and its options (unset ones inherit `defaults`)."""

    name: Name
    """The pool's `pool` label and name in the admin API: 1-64 letters, digits, `_` or `-`, unique."""
    database: DatabaseName
    """Database of the pool's collection."""
    collection: CollectionName
    """The pool's collection: one document per session."""

    def model_post_init(self, context: Any, /) -> None:
        """Without a `max_age`, the state series are withdrawn after three intervals."""
        if self.max_age is None:
            self.max_age = 3 * self.interval

    @property
    def staleness_limit(self) -> float:
        """Age in seconds after which the pool's state series are withdrawn."""
        return self.max_age if self.max_age is not None else 3 * self.interval

    @property
    def sums_staleness_limit(self) -> float:
        """Age in seconds after which the pool's sums (uses, successes) are withdrawn."""
        return 3 * max(self.sums_interval, self.interval)


class DiscoveredOptions(DocumentOptions):
    """What every pool a discovery source finds gets, over `defaults` (only the keys given here)."""


class DiscoveryConfig(Section):
    """A pool source: every collection of `databases` whose name matches `include` and no `exclude`.

    Listed again every `interval` seconds: pools appear and disappear without a restart. A
    collection that a pool of `pools` already watches is left to that pool.
    """

    databases: Annotated[list[DatabaseName], Field(min_length=1)]
    """Databases whose collections are listed (the `listCollections` right is needed)."""
    include: list[str] = ["*"]
    """Glob patterns of the collection names to watch."""
    exclude: list[str] = []
    """Glob patterns of collection names left out; `system.*` and views never count."""
    name: NameTemplate = "{collection}"
    """The pool's name, from `{database}` and `{collection}`; a collection whose name is no valid label is skipped."""
    interval: PositiveSeconds = 60.0
    """Seconds between listings: new collections appear, dropped ones vanish with their series."""
    options: DiscoveredOptions = DiscoveredOptions()
    """Any key of `defaults`, `fields`, `stored_timezone` or `session_fields`, for every pool this source finds."""

    def pool_name(self, database: str, collection: str) -> str:
        """The name of the pool watching `database.collection`."""
        return self.name.format(database=database, collection=collection)

    def matches(self, collection: str) -> bool:
        """Whether a collection of one of the databases belongs to this source."""
        if collection.startswith("system."):
            return False
        return any(fnmatch.fnmatchcase(collection, p) for p in self.include) and not any(
            fnmatch.fnmatchcase(collection, p) for p in self.exclude
        )

    def pool(self, defaults: PoolOptions, database: str, collection: str) -> PoolDefinition:
        """The pool for a found collection (ValueError when its name or settings are not valid)."""
        data = inherit(defaults.model_dump(exclude_unset=True), self.options.model_dump(exclude_unset=True))
        data.update(name=self.pool_name(database, collection), database=database, collection=collection)
        return PoolDefinition.model_validate(data)


def inherit(inherited: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A pool's keys over the defaults it inherits; a section set in both (`underperforming`) merges key by key."""
    merged = {**inherited, **own}
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(inherited.get(key), dict):
            merged[key] = {**inherited[key], **value}
    return merged
