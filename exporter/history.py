"""A pool's last hour of state counts for the overview's chart, kept compact: arrays, no object per point."""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from exporter.core import State
from exporter.core.model import STATES

# The overview's chart: the last hour of state counts, one point every 5 s at most (720 points per pool).
HISTORY_SECONDS = 3600.0
HISTORY_STEP = 5.0
HISTORY_POINTS = int(HISTORY_SECONDS / HISTORY_STEP)


@dataclass(frozen=True)
class StatesPoint:
    """The state counts of one successful refresh, for the overview's chart."""

    time: float
    states: dict[State, int]


class StatesHistory:
    """The points of the last HISTORY_SECONDS, at most one per HISTORY_STEP: 28 bytes a point.

    Thousands of pools keep an hour each: as objects (a point, its dict) that was about 400 bytes a
    point and hundreds of MiB for 5000 pools; as arrays it is a few dozen MiB, and nothing for the
    garbage collector to walk.
    """

    def __init__(self) -> None:
        self._times = array("d")
        self._counts = array("I")  # len(STATES) per point, in STATES order

    def __len__(self) -> int:
        return len(self._times)

    @property
    def nbytes(self) -> int:
        """Bytes the points take (the arrays, with their spare room)."""
        return sys.getsizeof(self._times) + sys.getsizeof(self._counts)

    def __iter__(self) -> Iterator[StatesPoint]:
        width = len(STATES)
        for i, time in enumerate(self._times):
            counts = self._counts[i * width : (i + 1) * width]
            yield StatesPoint(time, dict(zip(STATES, counts, strict=True)))

    def add(self, time: float, states: Mapping[State, int]) -> bool:
        """Keep the counts at `time` (Unix seconds) unless the last point is under HISTORY_STEP older; drop the
        points older than an hour. Whether it was kept."""
        if self._times and time - self._times[-1] < HISTORY_STEP:
            return False
        self._times.append(time)
        self._counts.extend(max(0, min(int(states.get(state, 0)), 0xFFFFFFFF)) for state in STATES)
        old = 0
        while old < len(self._times) and time - self._times[old] > HISTORY_SECONDS:
            old += 1
        old = max(old, len(self._times) - HISTORY_POINTS)
        if old:
            del self._times[:old]
            del self._counts[: old * len(STATES)]
        return True
