"""A clock the test moves by hand: staleness and schedules checked without sleeping or poking fields."""

from __future__ import annotations

import time

from exporter.clock import Clock


class ManualClock(Clock):
    """Starts at the real time; moves only when `advance()` says so."""

    def __init__(self) -> None:
        self._monotonic = time.monotonic()
        self._time = time.time()

    def monotonic(self) -> float:
        """The monotonic reading, as far as the test advanced it."""
        return self._monotonic

    def time(self) -> float:
        """The Unix time, as far as the test advanced it."""
        return self._time

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass on both clocks."""
        self._monotonic += seconds
        self._time += seconds
