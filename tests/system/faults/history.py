"""What the fault lab's workload did, as recorded by the test, and the checker's verdicts over it.

Independent of the code under test: every time is the test process's own monotonic clock, taken
around each call; the checker reads only these records and the final documents read with plain
PyMongo. A verdict is raised only when the history proves it (a hand-out that started after another
one ended and finished before that one's hold could have ended), never on a maybe.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any


@dataclass
class Handout:
    """One `get_session` call of a handler."""

    handler: int
    invoke: float
    hold: float  # the next_use_delay it asked for
    ack: float | None = None  # None: the call failed or is still running
    session: str | None = None  # the id handed out; None: nothing (an empty pool or a failure)
    error: str | None = None
    released: float | None = None  # when the handler stopped using the session (started its report)
    ended: float | None = None  # when the call returned, answered or failed

    def definitely_held(self) -> tuple[float, float] | None:
        """When this handler surely held the session: from the answer until it stopped using it or the hold
        surely ended (its hold started no earlier than the call; it ends no earlier than `hold` after that)."""
        if self.ack is None or self.session is None:
            return None
        end = self.invoke + self.hold
        if self.released is not None:
            end = min(end, self.released)
        return (self.ack, end) if end > self.ack else None


@dataclass
class Report:
    """A handler's report on a session it was handed: success, lock or block."""

    handler: int
    session: str
    op: str  # "success", "lock", "block"
    period: float  # the cooldown of a success, the length of a lock or block
    invoke: float
    stale: bool  # the handler's own hold had ended before it reported (its work overran)
    ack: float | None = None
    error: str | None = None
    ended: float | None = None  # when the call returned, answered or failed


@dataclass
class AdminCall:
    """One operator request through the daemon's admin API."""

    rid: str
    session: str
    action: str  # "lock", "deactivate", "unlock"
    period: float | None
    invoke: float
    ack: float | None = None
    status: int = 0  # 0: no answer (connection error, timeout)
    result: str | None = None  # "changed" / "unchanged" from the answer


@dataclass
class History:
    """Everything the workload recorded during one fault."""

    handouts: list[Handout] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    admin: list[AdminCall] = field(default_factory=list)
    # (monotonic time, member address) of every findAndModify that succeeded (the driver's own events)
    served: list[tuple[float, str]] = field(default_factory=list)


@dataclass(frozen=True)
class DoubleHold:
    """Session handed to `second` while `first` surely held it."""

    session: str
    first: Handout
    second: Handout


def double_holds(handouts: Iterable[Handout]) -> list[DoubleHold]:
    """Every pair of hand-outs of one session where the second was made while the first surely held it."""
    by_session: dict[str, list[Handout]] = defaultdict(list)
    for handout in handouts:
        if handout.session is not None and handout.ack is not None:
            by_session[handout.session].append(handout)
    found: list[DoubleHold] = []
    for session, items in by_session.items():
        items.sort(key=lambda h: h.invoke)
        for first in items:
            span = first.definitely_held()
            if span is None:
                continue
            start, end = span
            for second in items:
                if second is first or second.ack is None:
                    continue
                if second.invoke >= start and second.ack <= end:
                    found.append(DoubleHold(session, first, second))
    return found


@dataclass(frozen=True)
class LostHold:
    """A session handed out while an acknowledged lock or block of it surely was in force."""

    session: str
    by: str  # "lock", "block" (a handler's) or "admin lock"
    acknowledged: float
    period: float
    handout: Handout


def lost_holds(history: History) -> list[LostHold]:
    """Hand-outs made during an acknowledged lock or block: after its answer, before its period could end.

    Nothing in the workload unlocks a worker session, and a later report may only lengthen a hold,
    so once acknowledged a lock holds for its whole period.
    """
    holds: dict[str, list[tuple[str, float, float, float]]] = defaultdict(list)
    for report in history.reports:
        if report.op in ("lock", "block") and report.ack is not None and report.error is None:
            holds[report.session].append((report.op, report.invoke, report.ack, report.period))
    for call in history.admin:
        if call.action == "lock" and call.status == 200 and call.result == "changed" and call.ack is not None:
            holds[call.session].append(("admin lock", call.invoke, call.ack, call.period or 0.0))
    found: list[LostHold] = []
    for handout in history.handouts:
        if handout.session is None or handout.ack is None:
            continue
        for by, invoke, ack, period in holds.get(handout.session, []):
            if handout.invoke >= ack and handout.ack <= invoke + period:
                found.append(LostHold(handout.session, by, ack, period, handout))
    return found


@dataclass(frozen=True)
class AdminVerdict:
    """Acknowledged admin writes checked against the final documents and the audit trail."""

    acknowledged: int
    lost: list[str]  # request ids: answered 200 "changed", but the change or its audit event is missing
    half: list[str]  # request ids: not answered 200, and the change without its event or the reverse
    failed: int


def check_admin(
    calls: Iterable[AdminCall], docs: Mapping[str, Mapping[str, Any]], events: Iterable[Mapping[str, Any]],
    now: datetime,
) -> AdminVerdict:  # fmt: skip
    """Each acknowledged request's change is in the final document and audited under its request id; a failed
    one left both or neither. `docs` by session id, `now` the server's time at reading.

    An action that changed nothing is audited on its own event or, repeated, on the earlier "unchanged" event
    of the same session and action (the audit trail counts repeats there instead of adding events).
    """
    by_request = {e.get("request_id"): e for e in events}
    repeated = {(e.get("session_id"), e.get("action")) for e in by_request.values()
                if e.get("result") == "unchanged" and int(e.get("repeats") or 0) > 0}  # fmt: skip
    acknowledged = failed = 0
    lost: list[str] = []
    half: list[str] = []
    for call in calls:
        doc = docs.get(call.session, {})
        event = by_request.get(call.rid)
        audited = event is not None and event.get("result") in ("changed", "unchanged")
        if call.result == "unchanged" and not audited:
            audited = (call.session, call.action) in repeated
        if call.action == "deactivate":
            changed = doc.get("active") is False
        elif call.action == "unlock":
            until = doc.get("next_use")
            changed = until is None or (isinstance(until, datetime) and until <= now)
        else:  # a one-hour lock, asked at most minutes ago: still in force, recorded as a lock
            until = doc.get("next_use")
            hold = doc.get("hold")
            changed = (
                isinstance(until, datetime)
                and until > now + timedelta(minutes=30)
                and isinstance(hold, Mapping)
                and hold.get("kind") == "lock"
            )
        if call.status == 200:
            acknowledged += 1
            if call.result == "unchanged":
                lost += [] if audited else [call.rid]
            elif not (changed and audited):
                lost.append(call.rid)
        else:
            failed += 1
            if call.action != "lock" and audited != changed and event is not None:
                half.append(call.rid)
    return AdminVerdict(acknowledged, lost, half, failed)


def classify(doc: Mapping[str, Any], now: datetime, lock_time: timedelta, grace: timedelta) -> str:
    """The README's state rules, written here independently of exporter.core (UTC pool)."""
    if doc.get("active") is not True:
        return "inactive"
    until = doc.get("next_use")
    if not isinstance(until, datetime) or until <= now:
        return "active"
    hold = doc.get("hold")
    if isinstance(hold, Mapping) and hold.get("until") == until and hold.get("kind") in ("use", "lock", "block"):
        return {"use": "in_use", "lock": "locked", "block": "blocked"}[hold["kind"]]
    left = until - now
    return "blocked" if left > lock_time else "locked" if left > grace else "in_use"


def states(docs: Iterable[Mapping[str, Any]], now: datetime, lock_time: timedelta, grace: timedelta) -> dict[str, int]:
    """Sessions per state at `now`, by `classify`."""
    out = dict.fromkeys(("active", "in_use", "locked", "blocked", "inactive"), 0)
    for doc in docs:
        out[classify(doc, now, lock_time, grace)] += 1
    return out


def gaps(times: Iterable[float], start: float, end: float) -> float:
    """The longest stretch within [start, end] without any of `times` (hand-outs stopping during a fault)."""
    inside = sorted(t for t in times if start <= t <= end)
    edges = [start, *inside, end]
    return max((b - a for a, b in pairwise(edges)), default=end - start)
