"""The replica-set members' clocks against this process's, read from the driver's own heartbeats (no extra call).

Holds end by the primary's clock (`$$NOW`); after a failover they end by the new primary's. A
member whose clock is ahead of the others ends every hold that much early once it is primary, so
the members must agree within a share of the shortest hold (see `TOLERANCE`).
"""

from __future__ import annotations

import statistics
import threading
import time
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
    """
    server = local_time if local_time.tzinfo else local_time.replace(tzinfo=UTC)
    half = (round_trip or 0.0) / 2
    # localTime has millisecond resolution.
    return server.timestamp() - (received - half), half + 0.001


def outliers(offsets: dict[str, Reading], tolerance: float = TOLERANCE) -> list[tuple[str, float, float]]:
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


class MemberClocks(monitoring.ServerHeartbeatListener):
    """A heartbeat listener keeping each member's last clock reading (register it when the client is made)."""

    def __init__(self, max_age: float = MAX_AGE) -> None:
        self._max_age = max_age
        self._lock = threading.Lock()
        self._readings: dict[str, Reading] = {}
        self._round_trips: dict[str, float] = {}

    def started(self, event: monitoring.ServerHeartbeatStartedEvent) -> None:
        """Nothing to do before the answer."""

    def failed(self, event: monitoring.ServerHeartbeatFailedEvent) -> None:
        """The last reading stays until it is too old."""

    def succeeded(self, event: monitoring.ServerHeartbeatSucceededEvent) -> None:
        """Read the member's `localTime` from its heartbeat answer."""
        received = time.time()
        local_time = event.reply.document.get("localTime")
        if not isinstance(local_time, datetime):
            return
        host, port = event.connection_id
        member = f"{host}:{port}"
        with self._lock:
            if not event.awaited:
                # A plain hello: its duration is the round trip (a streamed one also waited).
                self._round_trips[member] = event.duration
            offset, uncertainty = offset_of(local_time, received, None if event.awaited else event.duration)
            if event.awaited:
                uncertainty += self._round_trips.get(member, 0.0) / 2
            self._readings[member] = Reading(offset, uncertainty, time.monotonic())

    def offsets(self) -> dict[str, Reading]:
        """The fresh reading of every member that answered a heartbeat within `max_age` seconds."""
        now = time.monotonic()
        with self._lock:
            return {m: r for m, r in sorted(self._readings.items()) if now - r.at <= self._max_age}
