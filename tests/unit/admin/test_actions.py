"""The action table: what each action does from each state, without a server."""

from __future__ import annotations

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


def test_every_action_names_a_core_method() -> None:
    """Each row calls a method MongoSessions has; only lock and block take a period, from the matching default."""
    assert set(ACTIONS) == set(Action)
    for action, spec in ACTIONS.items():
        assert callable(getattr(MongoSessions, spec.method)), spec.method
        assert (spec.period is not None) == (action in (Action.LOCK, Action.BLOCK))
        if spec.period is not None:
            assert isinstance(getattr(MongoSessions, spec.period), property)
