"""The state model's pure functions: periods, classification of one document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from exporter.core import InvalidInput, State, Statistics, classify, parse_period


def test_parse_period_units_and_default() -> None:
    assert parse_period(None, timedelta(minutes=10)) == timedelta(minutes=10)
    assert parse_period({"hours": 10}, timedelta(0)) == timedelta(hours=10)
    assert parse_period({"weeks": 1, "days": 1}, timedelta(0)) == timedelta(days=8)
    assert parse_period({"milliseconds": 1500}, timedelta(0)) == timedelta(seconds=1.5)


@pytest.mark.parametrize(
    ("period", "needle"),
    [
        ({"fortnights": 1}, "unknown unit"),
        ({"hours": -1}, "negative"),
        ({"hours": 0}, "longer than zero"),
        ({"days": 10_000}, "at most"),
        ({"seconds": float("inf")}, "finite"),
        ({"seconds": float("nan")}, "finite"),
        ({"hours": "10"}, "must be a number"),
        ({"hours": True}, "must be a number"),
        ({}, "non-empty"),
        ("1h", "non-empty dict"),
        ({"weeks": 1e300}, "absurd"),
        ({"seconds": 10**400}, "absurd"),
    ],
)
def test_parse_period_rejects(period: Any, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        parse_period(period, timedelta(minutes=1))


def test_classify_covers_every_state() -> None:
    """Inactive unless `active` is true; free when next_use is not later; a valid marker; else time left."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    future = now + timedelta(minutes=5)

    def held(kind: str, until: datetime = future) -> dict[str, Any]:
        return {"active": True, "next_use": future, "hold": {"kind": kind, "until": until}}

    assert classify({"active": False, "next_use": future, "hold": {"kind": "lock", "until": future}}, now) is (
        State.INACTIVE
    )
    # The original never hands out a document without `active: true`: neither do the states.
    for odd in ({}, {"active": None}, {"active": 1}, {"active": "yes"}, {"next_use": future}):
        assert classify(odd, now) is State.INACTIVE, odd
    assert classify({"active": True, "next_use": None}, now) is State.ACTIVE
    assert classify({"active": True}, now) is State.ACTIVE
    assert classify({**held("block"), "next_use": now - timedelta(seconds=1)}, now) is State.ACTIVE
    assert classify(held("use"), now) is State.IN_USE
    assert classify(held("lock"), now) is State.LOCKED
    assert classify(held("block"), now) is State.BLOCKED
    # Legacy documents (no marker, or a stale one): by remaining time against lock_time and grace.
    assert classify({"active": True, "next_use": now + timedelta(hours=2)}, now) is State.BLOCKED
    assert classify({"active": True, "next_use": now + timedelta(minutes=5)}, now) is State.LOCKED
    assert classify({"active": True, "next_use": now + timedelta(seconds=2)}, now) is State.IN_USE
    # A marker written for another next_use: an original worker re-held the session since.
    assert classify(held("use", until=now + timedelta(seconds=1)), now) is State.LOCKED
    assert classify({**held("use"), "next_use": now + timedelta(hours=8)}, now) is State.BLOCKED
    # Shapes a marker can take in the wild that are not a marker: legacy.
    for odd_hold in ("lock", ["lock"], {"kind": "lock"}, {"kind": "nap", "until": future}, {"until": future}):
        assert classify({"active": True, "next_use": future, "hold": odd_hold}, now) is State.LOCKED, odd_hold


def test_statistics_is_the_original_dict_too() -> None:
    """aggregate_statistics()'s answer reads like the original's dict: keys, item assignment, ** and JSON."""
    import json

    stats = Statistics(
        time=datetime(2026, 1, 1, tzinfo=UTC),
        states={State.ACTIVE: 5, State.IN_USE: 1, State.LOCKED: 2, State.BLOCKED: 3, State.INACTIVE: 4},
        total=15,
        uses=9,
        successes=7,
        next_unlock=None,
        oldest_active_last_use=None,
        legacy={"count_blocked": 3},
    )
    assert dict(stats) == {"count_active": 5, "count_blocked": 3, "count_locked": 6, "count_total": 15}
    assert {**stats}["count_total"] == 15 and json.loads(json.dumps(stats))["count_locked"] == 6
    stats["count_total"] = stats["count_total"] or 1
    assert stats.states[State.BLOCKED] == 3 and stats.total == 15
