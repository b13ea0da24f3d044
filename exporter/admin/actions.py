"""The action table: what each operator action does, to which states, and who acts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from exporter.admin.errors import Conflict
from exporter.admin.models import Action
from exporter.core import State


@dataclass(frozen=True)
class Caller:
    """Who acts: the token's name (the audit actor) and role."""

    name: str
    role: Literal["read", "write"]


class Plan(StrEnum):
    """What an action will do to a session in a given state."""

    APPLY = "apply"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ActionSpec:
    """One row of the action table: the core method, the states it changes, and its period."""

    method: str
    changes: frozenset[State]
    refuses: frozenset[State] = frozenset()
    period: Literal["lock_time", "block_time"] | None = None

    def plan(self, action: Action, before: State) -> Plan:
        """APPLY or UNCHANGED for a session in state `before`; Conflict when the action cannot apply."""
        if before in self.refuses:
            raise Conflict(f"session is {before}; activate it before you {action} it")
        return Plan.APPLY if before in self.changes else Plan.UNCHANGED


_ALL = frozenset(State)
ACTIONS: dict[Action, ActionSpec] = {
    Action.UNLOCK: ActionSpec("session_unlock", frozenset({State.LOCKED, State.BLOCKED, State.IN_USE})),
    Action.DEACTIVATE: ActionSpec("session_inactive", _ALL - {State.INACTIVE}),
    Action.ACTIVATE: ActionSpec("session_activate", _ALL - {State.ACTIVE}),
    Action.LOCK: ActionSpec(
        "session_lock", _ALL - {State.LOCKED, State.INACTIVE}, frozenset({State.INACTIVE}), "lock_time"
    ),
    Action.BLOCK: ActionSpec(
        "session_block", _ALL - {State.BLOCKED, State.INACTIVE}, frozenset({State.INACTIVE}), "block_time"
    ),
}
