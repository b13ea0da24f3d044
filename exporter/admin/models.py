"""The admin API's request and response models; the OpenAPI document is generated from them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from bson import ObjectId
from pydantic import BaseModel, ConfigDict, Field, field_validator

from exporter.audit import Result
from exporter.config import NAME, check_name
from exporter.core import PERIOD_UNITS, State
from exporter.core.browse import Order

# The deepest a list pages (skip): beyond it, a narrower filter or search is the faster answer.
MAX_OFFSET = 10_000
MAX_SESSIONS_PAGE = 200

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID_RULE = "must be 1-128 characters of letters, digits, '.', '_', ':' or '-'"
SESSION_ID = re.compile(r"^[0-9a-fA-F]{24}$")


class Action(StrEnum):
    """What an operator can do to one session."""

    UNLOCK = "unlock"
    DEACTIVATE = "deactivate"
    ACTIVATE = "activate"
    LOCK = "lock"
    BLOCK = "block"


# --- requests ---------------------------------------------------------------------------------------


class Body(BaseModel):
    """Base of request bodies: unknown fields and type coercion are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


PERIOD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {unit: {"type": "number", "minimum": 0} for unit in PERIOD_UNITS},
}


class ActionBody(Body):
    """Optional body of a single-session action."""

    reason: str | None = Field(default=None, description="Free text recorded in the audit trail.")
    # Any dict reaches parse_period, whose messages name the bad unit or value; the document
    # shows the shape it accepts.
    period: dict[str, float | int] | None = Field(
        default=None,
        description='Lock or block period, e.g. {"hours": 10}; units: ' + ", ".join(PERIOD_UNITS),
        json_schema_extra={"anyOf": [PERIOD_SCHEMA, {"type": "null"}]},
    )


class BulkUnlockBody(Body):
    """Body of a bulk unlock."""

    state: Literal["locked", "blocked"]
    dry_run: bool = False
    reason: str | None = None


class AuditQuery(BaseModel):
    """Query string of an audit search."""

    model_config = ConfigDict(extra="forbid")

    pool: str | None = Field(default=None, pattern=NAME.pattern)
    action: Action | None = None
    session_id: str | None = Field(default=None, pattern=SESSION_ID.pattern)
    actor: str | None = Field(default=None, pattern=NAME.pattern)
    request_id: str | None = Field(default=None, pattern=REQUEST_ID.pattern)
    since: datetime | None = None
    until: datetime | None = None
    page: int = Field(default=1, ge=1, le=1_000_000)
    page_size: int = Field(default=100, ge=1, le=1000)
    order: Literal["asc", "desc"] = "desc"

    @field_validator("pool", "actor", mode="before")
    @classmethod
    def _name(cls, value: object) -> object:
        """Pool and actor names follow the config's naming rule."""
        return check_name(value) if isinstance(value, str) else value

    @field_validator("request_id", mode="before")
    @classmethod
    def _request_id(cls, value: object) -> object:
        """A request id as the API issues them."""
        if isinstance(value, str) and not REQUEST_ID.match(value):
            raise ValueError(REQUEST_ID_RULE)
        return value

    @field_validator("session_id", mode="before")
    @classmethod
    def _session_id(cls, value: object) -> object:
        """A session id is an ObjectId's 24 hex digits."""
        if isinstance(value, str) and not ObjectId.is_valid(value):
            raise ValueError("must be a 24-character hex ObjectId")
        return value

    @field_validator("since", "until", mode="before")
    @classmethod
    def _iso(cls, value: object) -> object:
        """Only ISO 8601: pydantic would read "0.5" or "1700000000" as a Unix time."""
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                return value
            raise ValueError("must be an ISO 8601 date-time such as 2026-11-01T00:00:00Z, not a number")
        return value

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        """Times without a zone are UTC."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class SessionsQuery(BaseModel):
    """Query string of a pool's session list."""

    model_config = ConfigDict(extra="forbid")

    state: State | None = Field(default=None, description="Sessions in this state.")
    q: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Prefix of a configured search field of `session` (session_fields.search), e.g. a phone; "
        "a read token matches masked fields (search but not show) whole, at most admin.read_searches_per_minute "
        "times a minute.",
    )
    underperforming: bool = Field(
        default=False, description="Active sessions whose success ratio lags the pool's (thresholds in config)."
    )
    page: int = Field(default=1, ge=1, le=MAX_OFFSET)
    page_size: int = Field(default=50, ge=1, le=MAX_SESSIONS_PAGE)
    order: Order | None = Field(
        default=None,
        description="hold_desc (newest hold end first; default of held states), hold_asc, last_use_asc "
        "(least recently used first; the default otherwise), last_use_desc. Underperformers: most used first.",
    )


class HistoryQuery(BaseModel):
    """Query string of a session's history."""

    model_config = ConfigDict(extra="forbid")

    page: int = Field(default=1, ge=1, le=1_000_000)
    page_size: int = Field(default=50, ge=1, le=1000)


# --- responses --------------------------------------------------------------------------------------


class Answer(BaseModel):
    """Base of response bodies."""

    model_config = ConfigDict(extra="forbid")


class StatisticsView(Answer):
    """A pool's last statistics (times as ISO 8601)."""

    time: str
    states: dict[State, int]
    total: int
    uses: int | None = Field(description="Sum of count_use from the last sums pass (null before the first).")
    successes: int | None = Field(description="Sum of count_success from the last sums pass (null before the first).")
    overruns: int | None = Field(
        default=None,
        description="Sum of count_overrun from the last sums pass: reports handlers made on sessions already "
        "handed to another handler (null before the first).",
    )
    sums_time: str | None = Field(description="When the sums were read (sums_interval cadence).")
    next_unlock: str | None
    oldest_active_last_use: str | None
    snapshot: bool


class UnderperformersView(Answer):
    """The pool's last count of underperforming sessions."""

    count: int
    threshold: float | None = Field(description="Success ratio under which a session with min_uses underperforms.")
    pool_ratio: float | None
    min_uses: int
    time: str


class PoolView(Answer):
    """One pool with its last statistics and refresh status."""

    name: str
    database: str
    collection: str
    up: bool
    fresh: bool = Field(description="The last successful refresh is younger than max_age.")
    last_success: str | None
    last_error: str | None
    cause: str | None = Field(
        default=None,
        description="Why the last refresh failed, in words (MongoDB unreachable and why, a missing collection...).",
    )
    collection_missing: bool = Field(default=False, description="The last refresh found no collection.")
    active: int | None
    min_active_sessions: int
    interval: float
    search_fields: list[str]
    statistics: StatisticsView | None
    underperformers: UnderperformersView | None
    watched: bool = Field(
        default=True,
        description="This daemon watches the pool (refreshes it, exports its series); false when other daemons "
        "sharing the pools do (shard): its statistics are then those of the last action here, if any.",
    )
    watched_by: list[int] = Field(default=[0], description="The shard indexes of the daemons that watch the pool.")


class PoolList(Answer):
    """Every configured pool."""

    pools: list[PoolView]


class SessionView(Answer):
    """One session: state, times, counters and what set its hold (credentials only if allowed)."""

    pool: str
    id: str
    state: State
    active: Any = Field(description="The stored value of the active field, as it is.")
    next_use: Any
    last_use: Any
    created: Any
    count_use: Any
    count_success: Any
    count_overrun: Any = Field(
        default=None, description="Reports made on this session after it had been handed to another handler."
    )
    hold: Any = Field(
        description="The hold marker as stored: {kind, until, lease, taken} (lease and taken: the hand-out it "
        "belongs to), or whatever a legacy worker left."
    )
    set_by: str | None
    problems: list[str] = Field(
        default=[], description="What about the document is odd (a field of the wrong type...)."
    )
    success_ratio: float | None = None
    fields: dict[str, Any] = Field(
        default={},
        description="Sub-fields of `session` the pool's config names: session_fields.show as stored, "
        "session_fields.search masked in part.",
    )
    session: Any = Field(default=None, description="Present only when admin.expose_credentials is true.")


class SessionPage(Answer):
    """One page of a pool's sessions, with the total that matched."""

    pool: str
    state: State | None
    q: str | None
    underperforming: bool
    order: str
    page: int
    page_size: int
    total: int
    total_as_of: str | None = Field(
        default=None,
        description="When `total` was counted, if not for this answer: a state's total is the pool's last refresh's, "
        "the underperformers' the last scheduled count's. Null: counted now (searches, before a first refresh).",
    )
    sessions: list[SessionView]
    threshold: float | None = Field(default=None, description="Underperformers only: the success ratio compared.")
    match: Literal["prefix", "exact"] | None = Field(
        default=None,
        description="Searches only: `exact` when some search fields were matched whole, not by prefix (a read "
        "token's search of masked fields).",
    )
    exact_fields: list[str] | None = Field(
        default=None, description="Searches only: the search fields matched whole (`q` must be their full value)."
    )


class ActionResult(Answer):
    """The outcome of one action on one session."""

    pool: str
    id: str
    action: Action
    result: Literal[Result.CHANGED, Result.UNCHANGED]
    state_before: State
    state_after: State
    request_id: str
    session: SessionView


class BulkUnlockResult(Answer):
    """How many sessions a bulk unlock matched and changed (or, dry, would change)."""

    pool: str
    state: Literal["locked", "blocked"]
    dry_run: bool
    matched: int
    cap: int
    request_id: str
    would_change: int | None = Field(
        default=None, description="Dry run only: how many the real call would change now (0 when it would be refused)."
    )
    would_status: int | None = Field(
        default=None, description="Dry run only: the real call's status now (409 over admin.bulk_unlock_cap)."
    )
    refusal: str | None = Field(
        default=None, description="Dry run over the cap only: the 409's message (the count and the cap)."
    )
    changed: int | None = Field(default=None, description="Real run only.")


class AuditEvent(BaseModel):
    """One recorded admin action (extra fields: period_seconds, bulk, error)."""

    model_config = ConfigDict(extra="allow")

    id: str
    time: str
    actor: str
    action: str
    pool: str
    session_id: str | None
    state_before: str | None
    state_after: str | None
    result: str
    reason: str | None
    request_id: str


class SessionHistory(Answer):
    """A session as it is now (state, hold and what set it) and its audit events, newest first."""

    session: SessionView
    events: list[AuditEvent]
    page: int
    page_size: int
    total: int


class StatesPoint(Answer):
    """The state counts of one refresh."""

    time: str
    states: dict[State, int]


class StatesTimeline(Answer):
    """A pool's state counts over the last hour, from the daemon's memory."""

    pool: str
    step_seconds: float
    min_active_sessions: int
    points: list[StatesPoint]


class AuditPage(Answer):
    """One page of an audit search."""

    events: list[AuditEvent]
    page: int
    page_size: int
    order: Literal["asc", "desc"]
    total: int


class Problem(Answer):
    """One problem of a request: where (`body.period`, `header.Authorization`, `path.session_id`) and what."""

    location: str
    message: str


class ErrorBody(Answer):
    """Every error answer: its kind, a one-line summary, and every problem located."""

    error: str
    message: str
    problems: list[Problem]
