"""The pure query builders: filters, updates and the statistics pipeline, checked without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from exporter.core import STATES, Fields, Hold, State, classify
from exporter.core.model import HOLD_KINDS
from exporter.core.queries import (
    StateRules,
    and_filters,
    held,
    held_state,
    hold_update,
    index_specs,
    state_filter,
    statistics_pipeline,
    take_update,
)
from exporter.core.timeframe import TimeFrame

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RULES = StateRules(Fields(), timedelta(minutes=10), timedelta(seconds=60), TimeFrame())


def test_active_and_inactive_are_plain_index_ranges() -> None:
    """Active: `active` true and not held; inactive: `active` anything but true."""
    assert state_filter(RULES, State.ACTIVE, NOW) == {"active": True, "next_use": {"$not": {"$gt": NOW}}}
    assert state_filter(RULES, State.INACTIVE, NOW) == {"active": {"$ne": True}}
    for state in (State.IN_USE, State.LOCKED, State.BLOCKED):
        query = state_filter(RULES, state, NOW)
        assert {k: v for k, v in query.items() if k != "$expr"} == held(RULES, NOW)
        assert query["$expr"]["$eq"][1] == str(state)


def test_stored_frame_shifts_every_bound() -> None:
    """A pool written in Moscow time (UTC+3) is queried with Moscow wall times."""
    moscow = StateRules(Fields(), timedelta(minutes=10), timedelta(seconds=60), TimeFrame("Europe/Moscow"))
    assert state_filter(moscow, State.ACTIVE, NOW)["next_use"] == {"$not": {"$gt": NOW + timedelta(hours=3)}}
    assert held(moscow, NOW)["next_use"] == {"$gt": NOW + timedelta(hours=3)}


def test_marker_and_next_use_come_from_one_now() -> None:
    """Every hold writes next_use and hold.until from the same expression, so they are equal."""
    for update in (
        hold_update(Fields(), TimeFrame("Europe/Moscow"), Hold.LOCK, timedelta(minutes=3)),
        take_update(Fields(), TimeFrame(), 1, timedelta(seconds=-1)),
    ):
        values = update[0]["$set"]
        marker = values["hold"]["$mergeObjects"][0]
        assert marker["until"] == values["next_use"]
        assert marker["kind"] in [str(h) for h in Hold]


def test_renamed_fields_are_used_everywhere() -> None:
    """No builder falls back to a default field name."""
    fields = Fields(next_use="free_at", active="enabled", hold="why", last_use="used_at")
    rules = StateRules(fields, timedelta(minutes=10), timedelta(seconds=60), TimeFrame())
    text = str(
        [state_filter(rules, s, NOW) for s in STATES]
        + [hold_update(fields, TimeFrame(), Hold.LOCK, timedelta(1)), statistics_pipeline(rules, "c", NOW)]
        + [index_specs(fields)]
    )
    assert "'next_use'" not in text and "'active'" not in text and "'hold'" not in text and "$hold" not in text
    assert "free_at" in text and "enabled" in text and "why.until" in text and "used_at" in text


def _paths(node: object) -> set[str]:
    """Every `$field` path an aggregation expression reads."""
    if isinstance(node, str):
        return {node[1:]} if node.startswith("$") and not node.startswith("$$") else set()
    if isinstance(node, dict):
        return set().union(*(_paths(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_paths(v) for v in node)) if node else set()
    return set()


def test_statistics_count_held_sessions_from_the_state_index() -> None:
    """The first stage reads held sessions only; the grouping reads only fields of the second index."""
    pipeline = statistics_pipeline(RULES, "pool", NOW)
    _, state_index = index_specs(Fields())
    assert pipeline[0] == {"$match": held(RULES, NOW)}
    assert _paths(pipeline[1]["$group"]) <= {field for field, _ in state_index[0]}
    extra = statistics_pipeline(RULES, "pool", NOW, {"legacy_active": {"kind": "x"}})
    assert extra[-1]["$unionWith"]["pipeline"][0] == {"$match": {"kind": "x"}}


@pytest.mark.parametrize(
    ("kind", "bucket", "state"),
    [
        ("use", None, State.IN_USE),
        ("lock", None, State.LOCKED),
        ("block", None, State.BLOCKED),
        (None, 0, State.IN_USE),
        (None, 1, State.LOCKED),
        (None, 2, State.BLOCKED),
        (["lock"], 2, State.BLOCKED),
        (None, None, State.IN_USE),
    ],
)
def test_held_rows_name_the_state_classify_would(kind: object, bucket: object, state: State) -> None:
    """A deciding marker names the state; otherwise the remaining-time bucket does (as in classify)."""
    assert held_state(kind, bucket) is state


def test_held_rows_agree_with_classify() -> None:
    """For every kind of hold (recorded, stale, missing, odd) the row's state is classify's."""
    fields = Fields()
    grace, lock = RULES.grace, RULES.lock_time
    for remaining in (grace / 2, (grace + lock) / 2, lock * 2):
        next_use = NOW + remaining
        bucket = 0 if remaining <= grace else 1 if remaining <= lock else 2
        for marker in (None, {"kind": "lock", "until": next_use}, {"kind": "block", "until": NOW},
                       {"kind": "nap", "until": next_use}, "odd"):  # fmt: skip
            doc = {"active": True, "next_use": next_use, "hold": marker}
            decides = isinstance(marker, dict) and marker["until"] == next_use and marker["kind"] in HOLD_KINDS
            row_state = held_state(marker["kind"] if decides and isinstance(marker, dict) else None,
                                   None if decides else bucket)  # fmt: skip
            assert row_state is classify(doc, NOW, fields=fields, lock_time=lock, grace=grace), (remaining, marker)


def test_and_filters_never_drops_a_key() -> None:
    """Two filters on the same field are combined with $and, not merged."""
    assert and_filters({"a": 1}, {"b": 2}) == {"a": 1, "b": 2}
    assert and_filters({"a": 1}, {"a": {"$gt": 0}}) == {"$and": [{"a": 1}, {"a": {"$gt": 0}}]}
