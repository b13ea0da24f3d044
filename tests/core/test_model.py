"""The state model's pure functions: periods, classification of one document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from exporter.core import InvalidInput, State, classify, parse_period


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
    now = datetime(2026, 1, 1, tzinfo=UTC)
    future = now + timedelta(minutes=5)
    assert classify({"active": False, "next_use": future, "hold": "lock"}, now) is State.INACTIVE
    assert classify({"active": True, "next_use": None}, now) is State.ACTIVE
    assert classify({}, now) is State.ACTIVE
    assert classify({"active": True, "next_use": now - timedelta(seconds=1), "hold": "block"}, now) is State.ACTIVE
    assert classify({"next_use": future, "hold": "use"}, now) is State.IN_USE
    assert classify({"next_use": future, "hold": "lock"}, now) is State.LOCKED
    assert classify({"next_use": future, "hold": "block"}, now) is State.BLOCKED
    # Legacy documents (no hold): by remaining time against lock_time and grace.
    assert classify({"next_use": now + timedelta(hours=2)}, now) is State.BLOCKED
    assert classify({"next_use": now + timedelta(minutes=5)}, now) is State.LOCKED
    assert classify({"next_use": now + timedelta(seconds=2)}, now) is State.IN_USE
