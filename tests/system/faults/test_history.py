"""The fault lab's checker on histories written by hand: it flags what is proven, never what is only possible."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.system.faults.history import (
    AdminCall,
    Handout,
    History,
    Report,
    check_admin,
    classify,
    double_holds,
    gaps,
    lost_holds,
    states,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LOCK, GRACE = timedelta(minutes=10), timedelta(seconds=60)


def handout(handler: int, invoke: float, ack: float, hold: float, released: float | None = None) -> Handout:
    return Handout(handler, invoke, hold, ack=ack, session="s1", released=released)


def test_a_second_hand_out_inside_the_first_hold_is_flagged() -> None:
    """B's call started after A had the session and ended before A's hold could end, A still working: held twice."""
    a = handout(1, 0.0, 0.1, hold=10.0, released=8.0)
    b = handout(2, 2.0, 2.1, hold=10.0, released=3.0)
    (found,) = double_holds([a, b])
    assert found.first is a and found.second is b


def test_hand_outs_that_may_not_overlap_are_not_flagged() -> None:
    """After A reported, after A's hold ended, or with B's call spanning A's end: nothing proven."""
    a = handout(1, 0.0, 0.1, hold=2.0, released=1.0)
    after_report = handout(2, 1.5, 1.6, hold=2.0)
    late = Handout(1, 0.0, 2.0, ack=0.1, session="s1", released=5.0)  # worked past its 2 s hold
    after_hold = handout(2, 2.05, 2.2, hold=2.0)
    spanning = handout(3, 0.05, 3.0, hold=2.0)  # its call began before A's answer came back
    assert double_holds([a, after_report]) == []
    assert double_holds([late, after_hold]) == []
    assert double_holds([Handout(1, 0.2, 10.0, ack=0.3, session="s1"), spanning]) == []
    # Different sessions never pair; a failed call never counts.
    other = Handout(2, 2.0, 2.0, ack=2.1, session="s2")
    failed = Handout(3, 2.0, 2.0, error="OperationTimeout")
    assert double_holds([handout(1, 0.0, 0.1, hold=10.0), other, failed]) == []


def test_a_hand_out_during_an_acknowledged_lock_is_flagged() -> None:
    """A lock answered at 1.1 for 5 s: a hand-out made entirely between 1.1 and 6.0 proves the lock was lost."""
    history = History()
    history.reports.append(Report(1, "s1", "lock", 5.0, invoke=1.0, stale=False, ack=1.1))
    history.handouts.append(handout(2, 2.0, 2.2, hold=2.0))
    history.handouts.append(handout(3, 6.5, 6.6, hold=2.0))  # after the lock ended: fine
    history.handouts.append(handout(4, 0.5, 1.5, hold=2.0))  # may have come before the lock: not proven
    (found,) = lost_holds(history)
    assert found.by == "lock" and found.handout.handler == 2
    # An operator's one-hour lock that changed the session counts the same way; an unchanged one does not.
    history.admin.append(AdminCall("r1", "s1", "lock", 3600.0, invoke=7.0, ack=7.1, status=200, result="changed"))
    history.admin.append(AdminCall("r2", "s1", "lock", 3600.0, invoke=7.0, ack=7.1, status=200, result="unchanged"))
    history.handouts.append(handout(5, 8.0, 8.1, hold=2.0))
    assert sorted(x.by for x in lost_holds(history)) == ["admin lock", "lock"]


def test_acknowledged_admin_writes_must_be_present_and_audited() -> None:
    """A 200 whose change or event is missing is lost; a failed request must leave both or neither."""
    docs: dict[str, dict[str, Any]] = {
        "d1": {"active": False},
        "d2": {"active": True},
        "u1": {"next_use": None},
        "l1": {"next_use": NOW + timedelta(minutes=59), "hold": {"kind": "lock", "until": NOW + timedelta(minutes=59)}},
        "l2": {"next_use": NOW + timedelta(seconds=5), "hold": {"kind": "lock", "until": NOW + timedelta(seconds=5)}},
    }
    events: list[dict[str, Any]] = [
        {"request_id": "ok-d1", "result": "changed", "session_id": "d1", "action": "deactivate"},
        {"request_id": "ok-u1", "result": "changed", "session_id": "u1", "action": "unlock"},
        {"request_id": "ok-l1", "result": "changed", "session_id": "l1", "action": "lock"},
        {"request_id": "ok-l2", "result": "changed", "session_id": "l2", "action": "lock"},
        {"request_id": "first", "result": "unchanged", "session_id": "d1", "action": "deactivate", "repeats": 1},
        {"request_id": "half", "result": "changed", "session_id": "d2", "action": "deactivate"},
    ]

    def call(rid: str, session: str, action: str, status: int = 200, result: str | None = "changed") -> AdminCall:
        return AdminCall(rid, session, action, 3600.0 if action == "lock" else None, 0.0, 0.1, status, result)

    verdict = check_admin(
        [
            call("ok-d1", "d1", "deactivate"),
            call("ok-u1", "u1", "unlock"),
            call("ok-l1", "l1", "lock"),
            call("ok-l2", "l2", "lock"),  # its hour-long lock ends in 5 s: it was replaced, lost
            call("gone", "d2", "deactivate"),  # answered 200, no change, no event: lost
            call("again", "d1", "deactivate", result="unchanged"),  # counted on the earlier unchanged event
            call("half", "d2", "deactivate", status=0, result=None),  # no answer: event without its change
        ],
        docs,
        events,
        NOW,
    )
    assert verdict.acknowledged == 6 and verdict.failed == 1
    assert verdict.lost == ["ok-l2", "gone"]
    assert verdict.half == ["half"]


def test_states_by_the_readme_rules() -> None:
    """A valid marker decides; without one, the time left does; inactive wins."""
    soon, later = NOW + timedelta(seconds=30), NOW + timedelta(hours=1)
    assert classify({"active": True, "next_use": None}, NOW, LOCK, GRACE) == "active"
    assert classify({"active": True, "next_use": soon, "hold": {"kind": "lock", "until": soon}}, NOW, LOCK, GRACE) == (
        "locked"
    )
    assert classify({"active": True, "next_use": later}, NOW, LOCK, GRACE) == "blocked"
    assert classify({"active": True, "next_use": later, "hold": {"kind": "use", "until": soon}}, NOW, LOCK, GRACE) == (
        "blocked"
    )
    assert classify({"active": False, "next_use": later}, NOW, LOCK, GRACE) == "inactive"
    assert states([{"active": True}, {"active": "yes"}], NOW, LOCK, GRACE) == {
        "active": 1, "in_use": 0, "locked": 0, "blocked": 0, "inactive": 1,
    }  # fmt: skip


def test_the_longest_stretch_without_a_hand_out() -> None:
    assert gaps([1.0, 1.5, 4.0], 0.0, 5.0) == 2.5
    assert gaps([], 0.0, 5.0) == 5.0
