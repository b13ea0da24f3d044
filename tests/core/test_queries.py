"""The pure query builders: filters, updates and the statistics pipeline, checked without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from exporter.core import STATES, Fields, Hold, State
from exporter.core.queries import StateRules, and_filters, hold_update, state_branches, state_filter
from exporter.core.timeframe import TimeFrame

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RULES = StateRules(Fields(), timedelta(minutes=10), timedelta(seconds=60), TimeFrame())


def test_every_held_state_has_a_recorded_and_a_legacy_branch() -> None:
    """Recorded holds count by their marker; legacy ones by remaining time, in adjacent ranges."""
    branches = state_branches(RULES, NOW)
    assert set(branches) == set(STATES) - {State.ACTIVE}
    for state in (State.IN_USE, State.LOCKED, State.BLOCKED):
        recorded, legacy = branches[state]
        assert recorded["hold"] in [str(h) for h in Hold]
        assert legacy["hold"] == {"$nin": ["use", "lock", "block"]}
    legacy_ranges = [branches[s][1]["next_use"] for s in (State.IN_USE, State.LOCKED, State.BLOCKED)]
    assert legacy_ranges[0] == {"$gt": NOW, "$lte": NOW + timedelta(seconds=60)}
    assert legacy_ranges[1] == {"$gt": NOW + timedelta(seconds=60), "$lte": NOW + timedelta(minutes=10)}
    assert legacy_ranges[2] == {"$gt": NOW + timedelta(minutes=10)}


def test_stored_frame_shifts_every_bound() -> None:
    """A pool written in Moscow time (UTC+3) is queried with Moscow wall times."""
    moscow = StateRules(Fields(), timedelta(minutes=10), timedelta(seconds=60), TimeFrame("Europe/Moscow"))
    active = state_filter(moscow, State.ACTIVE, NOW)
    assert active["next_use"] == {"$not": {"$gt": NOW + timedelta(hours=3)}}


def test_renamed_fields_are_used_everywhere() -> None:
    """No builder falls back to a default field name."""
    fields = Fields(next_use="free_at", active="enabled", hold="why")
    rules = StateRules(fields, timedelta(minutes=10), timedelta(seconds=60), TimeFrame())
    text = str([state_filter(rules, s, NOW) for s in STATES]) + str(
        hold_update(fields, TimeFrame(), Hold.LOCK, timedelta(1))
    )
    assert "'next_use'" not in text and "'active'" not in text and "'hold'" not in text
    assert "free_at" in text and "enabled" in text and "why" in text


def test_and_filters_never_drops_a_key() -> None:
    """Two filters on the same field are combined with $and, not merged."""
    assert and_filters({"a": 1}, {"b": 2}) == {"a": 1, "b": 2}
    assert and_filters({"a": 1}, {"a": {"$gt": 0}}) == {"$and": [{"a": 1}, {"a": {"$gt": 0}}]}
