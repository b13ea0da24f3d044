"""The action table: what each operator action calls, which states it changes, and its default period."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from bson import ObjectId

from exporter.admin.errors import Conflict
from exporter.admin.models import Action
from exporter.core import DbSession, MongoSessions, State

# One action on one session: the client, the session's id, the period (lock and block only), the
# driver session or transaction to run in (None: none).
Change = Callable[[MongoSessions, ObjectId, timedelta | None, DbSession], Awaitable[object]]


class Plan(StrEnum):
    """What an action will do to a session in a given state."""

    APPLY = "apply"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ActionSpec:
    """One row of the action table: the change it makes, the states it changes and refuses, its default period."""

    change: Change
    changes: frozenset[State]
    refuses: frozenset[State] = frozenset()
    # Lock and block only: the period when the operator gives none (the client's own default).
    default_period: Callable[[MongoSessions], timedelta] | None = None

    def plan(self, action: Action, before: State) -> Plan:
        """APPLY or UNCHANGED for a session in state `before`; Conflict when the action cannot apply."""
        if before in self.refuses:
            raise Conflict(f"session is {before}; activate it before you {action} it")
        return Plan.APPLY if before in self.changes else Plan.UNCHANGED


def _seconds(period: timedelta | None) -> dict[str, float] | None:
    """A period as the client's `Period` (None: the client's default)."""
    return {"seconds": period.total_seconds()} if period is not None else None


async def unlock(sessions: MongoSessions, oid: ObjectId, period: timedelta | None, db_session: DbSession) -> object:
    """Free a held session now."""
    return await sessions.session_unlock(oid, db_session=db_session)


async def deactivate(sessions: MongoSessions, oid: ObjectId, period: timedelta | None, db_session: DbSession) -> object:
    """Take a session out of the pool for good (until activated)."""
    return await sessions.session_inactive(oid, db_session=db_session)


async def activate(sessions: MongoSessions, oid: ObjectId, period: timedelta | None, db_session: DbSession) -> object:
    """Put a session back: active and free."""
    return await sessions.session_activate(oid, db_session=db_session)


async def lock(sessions: MongoSessions, oid: ObjectId, period: timedelta | None, db_session: DbSession) -> object:
    """Hold a session for `period`, as a handler does when the source rate-limits it."""
    return await sessions.session_lock(oid, _seconds(period), db_session=db_session)


async def block(sessions: MongoSessions, oid: ObjectId, period: timedelta | None, db_session: DbSession) -> object:
    """Hold a session for a long `period`, as a handler does when the source bans it."""
    return await sessions.session_block(oid, _seconds(period), db_session=db_session)


def lock_time(sessions: MongoSessions) -> timedelta:
    """A lock's default period: the pool's `lock_time`."""
    return sessions.lock_time


def block_time(sessions: MongoSessions) -> timedelta:
    """A block's default period: the pool's `block_time`."""
    return sessions.block_time


_ALL = frozenset(State)
ACTIONS: dict[Action, ActionSpec] = {
    Action.UNLOCK: ActionSpec(unlock, frozenset({State.LOCKED, State.BLOCKED, State.IN_USE})),
    Action.DEACTIVATE: ActionSpec(deactivate, _ALL - {State.INACTIVE}),
    Action.ACTIVATE: ActionSpec(activate, _ALL - {State.ACTIVE}),
    Action.LOCK: ActionSpec(lock, _ALL - {State.LOCKED, State.INACTIVE}, frozenset({State.INACTIVE}), lock_time),
    Action.BLOCK: ActionSpec(block, _ALL - {State.BLOCKED, State.INACTIVE}, frozenset({State.INACTIVE}), block_time),
}
