"""The fault lab's figures: written to $FAULTS_REPORT (docs/faults.md and .json beside it) after the run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.figures import Report


@pytest.fixture(scope="session")
def fault_figures() -> Iterator[Report]:
    """Figures of the fault lab, rendered by tests/system/faults/report.py when FAULTS_REPORT names a file."""
    figures = Report()
    yield figures
    target = os.environ.get("FAULTS_REPORT")
    if target and figures.data:  # under xdist, only the worker that ran the lab holds figures
        from tests.system.faults.report import write_report

        write_report(figures.data, Path(target))
