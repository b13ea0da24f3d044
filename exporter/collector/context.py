"""What every job of the collector is given: the config, the shared client, the metrics, the clock, the slots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient

from exporter.clock import Clock
from exporter.collector.mongodb import MongoDBWatch
from exporter.collector.slots import Slots
from exporter.config import Config
from exporter.core import SessionPoolError
from exporter.metrics import Metrics


@dataclass(frozen=True)
class Context:
    """The collector's shared parts, as its jobs use them."""

    config: Config
    client: AsyncMongoClient[dict[str, Any]]
    metrics: Metrics
    clock: Clock
    mongodb: MongoDBWatch
    # At most this many refreshes and sums passes talk to MongoDB at once (hundreds of pools).
    slots: Slots
    stopping: Callable[[], bool]


def cause_of(exc: SessionPoolError) -> str:
    """What went wrong, without the step that met it (`connect: ...` and `aggregate: ...` are one cause)."""
    return exc.message.removeprefix(exc.operation or "").lstrip(": ") or exc.message
