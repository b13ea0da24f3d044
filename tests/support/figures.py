"""Figures the reliability and security suites measure, written to docs/reliability.md on request."""

from __future__ import annotations

import threading
from typing import Any


class Report:
    """Figures the suite produces, written out by conftest when RELIABILITY_REPORT is set."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def record(self, section: str, name: str, value: Any) -> None:
        """Keep one figure under section/name."""
        with self._lock:
            self.data.setdefault(section, {})[name] = value

    def add(self, section: str, name: str, amount: int = 1) -> None:
        """Add to a counter figure."""
        with self._lock:
            bucket = self.data.setdefault(section, {})
            bucket[name] = bucket.get(name, 0) + amount
