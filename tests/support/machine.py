"""Turns on the machine between xdist workers: a test that measures gets it without heavy neighbours.

Tests that assert times or throughput under faults (elections, outages, 2-second shutdowns) run
while no heavy test (an image build, a browser, the demo, a load generator) runs on another
worker, and never two at once; light tests run beside anything. A reader-writer lock on a file
shared by the workers of one run, with a turnstile so that a measuring test waiting for its turn
is not starved by heavy tests following each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

Share = Literal["measures", "heavy", "light"]


def _lock_files() -> tuple[Path, Path] | None:
    """The run's lock files, or None outside an xdist run (one process has nobody to share with)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        return None
    base = Path(tempfile.gettempdir()) / f"spe-tests-{run}"
    return base.with_suffix(".turnstile"), base.with_suffix(".lock")


@contextlib.contextmanager
def turn(share: Share) -> Iterator[None]:
    """Hold the machine as `share` says for the block: alone for a measuring test, shared for a heavy one."""
    files = _lock_files()
    if files is None or share == "light":
        yield
        return
    turnstile_path, lock_path = files
    with turnstile_path.open("a") as turnstile, lock_path.open("a") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if share == "measures" else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
