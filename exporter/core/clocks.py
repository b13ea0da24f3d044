"""The replica-set members' clocks, read from the driver's own heartbeats (no extra call), and the primary's lead.

Holds end by the primary's clock (`$$NOW`); after a failover they end by the new primary's. A
member whose clock is ahead of the others ends every hold that much early once it is primary, so
the members must agree within a share of the shortest hold (`TOLERANCE`). Beyond it the client
core corrects by the primary's `lead` over the members' median, in the one direction that is
always safe: holds only ever get longer (see `Shift`).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo import monitoring

# The shortest hold a pool usually gives: next_use_delay's default (1 s, as in the original library).
SHORTEST_HOLD = 1.0
# Members may disagree by at most this share of it before the alert and the doctor say so.
TOLERANCE_SHARE = 0.25
TOLERANCE = SHORTEST_HOLD * TOLERANCE_SHARE
# A member whose last heartbeat answer is older than this is left out (down, paused, removed).
MAX_AGE = 60.0
# The server's now is taken from a heartbeat reading instead of asked for (one round trip less per read)
# when the reading is at most this old (three of the driver's default heartbeats) and this precise.
ESTIMATE_MAX_AGE = 30.0
ESTIMATE_UNCERTAINTY = 0.1


@dataclass(frozen=True)
class Reading:
    """One member's clock: seconds ahead of ours (negative: behind), give or take `uncertainty`, read at `at`."""

    offset: float
    uncertainty: float
    at: float  # time.monotonic() of the reading


def offset_of(local_time: datetime, received: float, round_trip: float | None) -> tuple[float, float]:
    """(offset, uncertainty) of a clock that read `local_time` while answering, received at `received` (Unix time).

    With the round trip known the reading happened half of it before we received it, within the
    other half; without it (a streamed answer, sent as soon as it was made) it happened just before.
    Any delay on the way makes a clock look behind, never ahead.
    """
    server = local_time if local_time.tzinfo else local_time.replace(tzinfo=UTC)
    half = (round_trip or 0.0) / 2
    # localTime has millisecond resolution.
    return server.timestamp() - (received - half), half + 0.001


def outliers(offsets: Mapping[str, Reading], tolerance: float = TOLERANCE) -> list[tuple[str, float, float]]:
    """Members whose clock differs from the others' median by more than `tolerance` beyond doubt.

    (member, seconds ahead of the median (negative: behind), uncertainty), largest first. Needs three
    members to tell which one is off; with two, both are named when they disagree.
    """
    if len(offsets) < 2:
        return []
    middle = statistics.median(r.offset for r in offsets.values())
    found = [
        (member, r.offset - middle, r.uncertainty)
        for member, r in offsets.items()
        if abs(r.offset - middle) - r.uncertainty > tolerance
    ]
    return sorted(found, key=lambda item: -abs(item[1]))


@dataclass(frozen=True)
class Shift:
    """How the client core moves the server's now (`$$NOW`) so that holds only ever get longer.

    `read`: seconds subtracted from now when asking whether a hold has ended (the primary runs ahead
    of the members' median: its now is that much too late). `write`: seconds added to now when
    setting a hold (the primary runs behind: a hold it sets would end early by the others' clocks).
    """

    read: float = 0.0
    write: float = 0.0


NO_SHIFT = Shift()


def shift_of(primary: str | None, offsets: Mapping[str, Reading]) -> Shift:
    """The shift for holds read and set on `primary`, from the members' clock readings.

    The primary is compared with the middle of the members' clocks (with two members, with the other
    one, whichever way is safe); with no reading of it, or of nobody else, nothing moves. A delayed
    reading only makes a clock look behind, so a wrong reading can only lengthen holds further.
    """
    if primary is None or primary not in offsets or len(offsets) < 2:
        return NO_SHIFT
    mine = offsets[primary].offset
    values = [r.offset for r in offsets.values()]
    return Shift(read=max(mine - statistics.median_low(values), 0.0),
                 write=max(statistics.median_high(values) - mine, 0.0))  # fmt: skip


class MemberClocks(monitoring.ServerHeartbeatListener):
    """A heartbeat listener keeping each member's last clock reading (register it when the client is made).

    Readings are taken against a clock that never steps (the wall clock at start plus the monotonic
    clock since), so a correction of this host's clock between two readings moves nothing.
    """

    def __init__(self, max_age: float = MAX_AGE) -> None:
        self._max_age = max_age
        self._lock = threading.Lock()
        self._anchor = time.time() - time.monotonic()
        self._readings: dict[str, Reading] = {}
        self._round_trips: dict[str, float] = {}

    def started(self, event: monitoring.ServerHeartbeatStartedEvent) -> None:
        """Nothing to do before the answer."""

    def failed(self, event: monitoring.ServerHeartbeatFailedEvent) -> None:
        """The last reading stays until it is too old."""

    def succeeded(self, event: monitoring.ServerHeartbeatSucceededEvent) -> None:
        """Read the member's `localTime` from its heartbeat answer."""
        now = time.monotonic()
        local_time = event.reply.document.get("localTime")
        if not isinstance(local_time, datetime):
            return
        host, port = event.connection_id
        member = f"{host}:{port}"
        with self._lock:
            if not event.awaited:
                # A plain hello: its duration is the round trip (a streamed one also waited).
                self._round_trips[member] = event.duration
            offset, uncertainty = offset_of(local_time, self._anchor + now, None if event.awaited else event.duration)
            if event.awaited:
                uncertainty += self._round_trips.get(member, 0.0) / 2
            self._readings[member] = Reading(offset, uncertainty, now)

    def offsets(self) -> dict[str, Reading]:
        """The fresh reading of every member that answered a heartbeat within `max_age` seconds."""
        now = time.monotonic()
        with self._lock:
            return {m: r for m, r in sorted(self._readings.items()) if now - r.at <= self._max_age}

    def now_of(self, member: str) -> datetime | None:
        """The member's clock now, from its last heartbeat reading; None without a recent and precise one
        (ESTIMATE_MAX_AGE, ESTIMATE_UNCERTAINTY)."""
        now = time.monotonic()
        with self._lock:
            reading = self._readings.get(member)
        if reading is None or now - reading.at > ESTIMATE_MAX_AGE or reading.uncertainty > ESTIMATE_UNCERTAINTY:
            return None
        return datetime.fromtimestamp(self._anchor + now + reading.offset, UTC)

    def shift(self, primary: str | None) -> Shift:
        """The shift for holds read and set on `primary` now (see `shift_of`)."""
        return shift_of(primary, self.offsets())
