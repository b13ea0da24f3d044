"""Renders the suite's figures as docs/reliability.md (and JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(data: dict[str, dict[str, Any]], target: Path) -> None:
    """Write the figures: JSON to a .json target; a .md target gets the doc and a .json beside it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    if target.suffix == ".md":
        target.with_suffix(".json").write_text(text + "\n")
        target.write_text(render(data))
    else:
        target.write_text(text + "\n")


def render(data: dict[str, dict[str, Any]]) -> str:
    """The markdown document."""
    return "# Reliability\n\n```json\n" + json.dumps(data, indent=2, default=str) + "\n```\n"
