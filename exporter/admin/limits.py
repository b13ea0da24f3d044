"""Per-token allowances of the admin API: how many searches of masked fields a read token may make."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from exporter.admin.errors import TooManyRequests

WINDOW = 60.0


class PerMinute:
    """At most `limit` calls per caller in any 60 s (a sliding window of the calls' times)."""

    def __init__(self, limit: int, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.what = what
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}

    def spend(self, caller: str, location: str = "") -> None:
        """Count one call of `caller`; TooManyRequests (429, with the seconds to wait) past the limit."""
        now = self._clock()
        calls = self._calls.setdefault(caller, deque())
        while calls and calls[0] <= now - WINDOW:
            calls.popleft()
        if len(calls) >= self.limit:
            wait = max(1, math.ceil(calls[0] + WINDOW - now))
            raise TooManyRequests(
                f"token {caller!r} made {self.limit} {self.what} in the last minute; try again in {wait} s",
                retry_after=wait,
                location=location,
            )
        calls.append(now)
