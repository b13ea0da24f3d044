"""Renders the fault lab's figures as docs/faults.md (and JSON beside it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(data: dict[str, dict[str, Any]], target: Path) -> None:
    """Write the figures: a .md target gets the page and a .json beside it; anything else gets JSON."""
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    if target.suffix == ".md":
        target.with_suffix(".json").write_text(text + "\n")
        target.write_text(render(data))
    else:
        target.write_text(text + "\n")


def render(data: dict[str, dict[str, Any]]) -> str:
    """The page (filled in below)."""
    return json.dumps(data, indent=2, default=str)
