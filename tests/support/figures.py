"""Figures the reliability, security and fault suites measure, and writing them out as a page and JSON."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

Figures = dict[str, dict[str, Any]]


def write_figures(data: Figures, target: Path, render: Callable[[Figures], str]) -> None:
    """Write the figures: a .md target gets the page `render` makes and a .json beside it; anything else JSON."""
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    if target.suffix == ".md":
        target.with_suffix(".json").write_text(text + "\n")
        target.write_text(render(data))
    else:
        target.write_text(text + "\n")


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
