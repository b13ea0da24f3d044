"""Faults a test injects into a real mongod: a freeze (SIGSTOP), always thawed after."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

from exporter.mongod import Mongod


@contextlib.contextmanager
def frozen(server: Mongod) -> Iterator[None]:
    """SIGSTOP the server: connections stay open, nothing answers (a blackhole); SIGCONT after."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
