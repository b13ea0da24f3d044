"""The faults the lab injects, each with what undoes it: a table, as Jepsen's MongoDB analyses name them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pymongo.errors import PyMongoError

from tests.support.faultlab import FaultLab, Member


@dataclass(frozen=True)
class Fault:
    """One fault: how the lab is built, what is done to the primary, and how it heals."""

    name: str
    title: str
    inject: Callable[[FaultLab, Member], None]
    heal: Callable[[FaultLab, Member], None]
    skews: dict[int, str] = field(default_factory=dict)


def _nothing(lab: FaultLab, old: Member) -> None:
    """The fault needs no healing (an election is all it does)."""


def _heal(lab: FaultLab, old: Member) -> None:
    lab.heal()


def _bridge(lab: FaultLab, old: Member) -> None:
    # The primary and one secondary cannot reach each other; the other secondary reaches both.
    lab.cut(old, next(m for m in lab.members if m is not old))


def _restart(lab: FaultLab, old: Member) -> None:
    lab.restart(old)


def _skewed_primary(lab: FaultLab, old: Member) -> None:
    # Equal priorities first, so the old primary takes nothing back; then the skewed member runs an election.
    skewed = lab.members[2]
    lab.set_priority(old, 1)
    deadline = time.monotonic() + 30
    while lab.primary() is not skewed:
        # An election fails while the member lags the primary or the new configuration has not reached it.
        with contextlib.suppress(PyMongoError):
            lab.step_up(skewed)
        if time.monotonic() > deadline:
            raise TimeoutError("the skewed member did not become primary")
        time.sleep(0.5)


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("isolated", "isolated primary (cut from both secondaries, clients still reach it)",
              lambda lab, old: lab.isolate(old), _heal),
        Fault("fully_isolated", "fully isolated primary (cut from the secondaries and the clients)",
              lambda lab, old: lab.isolate(old, from_clients=True), _heal),
        Fault("bridge", "bridge partition (the primary and one secondary cut apart; the other reaches both)",
              _bridge, _heal),
        Fault("pause", "paused primary (SIGSTOP past the election timeout, then SIGCONT)",
              lambda lab, old: lab.pause(old), lambda lab, old: lab.resume(old)),
        Fault("kill", "kill -9 of the primary (restarted when the fault ends)", lambda lab, old: lab.kill(old),
              _restart),
        Fault("step_down", "replSetStepDown of the primary", lambda lab, old: lab.step_down(old), _nothing),
        Fault("skew", "a member 90 s ahead becomes primary (libfaketime, replSetStepUp)", _skewed_primary,
              _nothing, {2: "+90s"}),
    )
}  # fmt: skip
