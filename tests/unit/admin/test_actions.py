"""The action table: what each action does from each state, without a server."""

from __future__ import annotations

from datetime import timedelta

import pytest

from exporter.admin import ACTIONS, Action, Conflict
from exporter.admin.actions import Plan
from exporter.core import STATES, MongoSessions, State

EXPECTED = {
    # action: (states it changes, states it refuses)
    Action.UNLOCK: ({State.IN_USE, State.LOCKED, State.BLOCKED}, set()),
    Action.DEACTIVATE: ({State.ACTIVE, State.IN_USE, State.LOCKED, State.BLOCKED}, set()),
    Action.ACTIVATE: ({State.IN_USE, State.LOCKED, State.BLOCKED, State.INACTIVE}, set()),
    Action.LOCK: ({State.ACTIVE, State.IN_USE, State.BLOCKED}, {State.INACTIVE}),
    Action.BLOCK: ({State.ACTIVE, State.IN_USE, State.LOCKED}, {State.INACTIVE}),
}


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("before", STATES)
def test_plan_of_every_action_from_every_state(action: Action, before: State) -> None:
    """Apply, leave unchanged, or refuse with a Conflict that says what to do."""
    changes, refuses = EXPECTED[action]
    spec = ACTIONS[action]
    if before in refuses:
        with pytest.raises(Conflict, match="activate it"):
            spec.plan(action, before)
    else:
        assert spec.plan(action, before) is (Plan.APPLY if before in changes else Plan.UNCHANGED)


async def test_every_action_carries_its_change_and_default_period() -> None:
    """Each row carries the change it makes; only lock and block take a period, from the matching default."""
    assert set(ACTIONS) == set(Action)
    sessions = MongoSessions(
        "mongodb://127.0.0.1:9", "spe_actions", "pool", lock_time=timedelta(minutes=7), block_time=timedelta(hours=3)
    )
    for action, spec in ACTIONS.items():
        assert callable(spec.change), action
        assert (spec.default_period is not None) == (action in (Action.LOCK, Action.BLOCK))
    lock, block = ACTIONS[Action.LOCK].default_period, ACTIONS[Action.BLOCK].default_period
    assert lock is not None and lock(sessions) == sessions.lock_time == timedelta(minutes=7)
    assert block is not None and block(sessions) == sessions.block_time == timedelta(hours=3)
