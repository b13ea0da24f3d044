"""Fixtures of the reliability suite: the figures report, written when RELIABILITY_REPORT is set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.harness import Report
from tests.reliability.report import write_report


@pytest.fixture(scope="session")
def report() -> Iterator[Report]:
    """Collects figures; at the end writes them to $RELIABILITY_REPORT (.md: the doc, plus a .json beside it)."""
    figures = Report()
    yield figures
    target = os.environ.get("RELIABILITY_REPORT")
    if target:
        write_report(figures.data, Path(target))
