"""The daemon's clock: monotonic seconds for ages and deadlines, Unix time for timestamps; tests pass their own."""

from __future__ import annotations

import time


class Clock:
    """The real clocks. Every age, staleness and first-run time of the collector is read from one of these."""

    def monotonic(self) -> float:
        """Seconds of a clock that never goes back (ages, deadlines, caches)."""
        return time.monotonic()

    def time(self) -> float:
        """Unix time (the timestamps the metrics and the admin API show)."""
        return time.time()


SYSTEM_CLOCK = Clock()
