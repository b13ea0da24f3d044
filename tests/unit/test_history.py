"""The last hour of a pool's state counts: every count kept as given, one point per step, an hour at most, compact."""

from __future__ import annotations

import itertools

from exporter.core import State
from exporter.history import HISTORY_POINTS, HISTORY_SECONDS, HISTORY_STEP, StatesHistory

START = 1_900_000_000.0


def counts(i: int) -> dict[State, int]:
    """Distinct counts per state for point `i`."""
    return {state: i * 10 + n for n, state in enumerate(State)}


def test_points_come_back_as_given_in_order() -> None:
    history = StatesHistory()
    for i in range(5):
        assert history.add(START + i * HISTORY_STEP, counts(i))
    points = list(history)
    assert [p.time for p in points] == [START + i * HISTORY_STEP for i in range(5)]
    assert [p.states for p in points] == [counts(i) for i in range(5)]
    assert len(history) == 5


def test_one_point_per_step_and_the_last_hour_only() -> None:
    history = StatesHistory()
    assert history.add(START, counts(1))
    assert not history.add(START + HISTORY_STEP / 2, counts(2))  # too soon: the earlier point stays
    assert [p.states for p in history] == [counts(1)]
    for second in range(0, int(3 * HISTORY_SECONDS), 1):
        history.add(START + HISTORY_STEP + second, counts(second % 7))
    times = [p.time for p in history]
    assert len(times) == HISTORY_POINTS
    assert times[-1] - times[0] <= HISTORY_SECONDS
    assert all(b - a >= HISTORY_STEP for a, b in itertools.pairwise(times))


def test_a_missing_state_counts_zero_and_odd_counts_are_clamped() -> None:
    history = StatesHistory()
    history.add(START, {State.ACTIVE: 3, State.LOCKED: -1, State.BLOCKED: 2**40})
    (point,) = list(history)
    assert point.states[State.ACTIVE] == 3 and point.states[State.INACTIVE] == 0
    assert point.states[State.LOCKED] == 0 and point.states[State.BLOCKED] == 2**32 - 1


def test_an_hour_of_points_costs_under_40_bytes_each() -> None:
    """The reason for the arrays: 5000 pools keep an hour each (a point as objects was about 400 bytes)."""
    history = StatesHistory()
    for i in range(HISTORY_POINTS):
        history.add(START + i * HISTORY_STEP, counts(i))
    assert history.nbytes / HISTORY_POINTS < 40
