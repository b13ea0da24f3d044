"""The core's modules: one job each (a one-line docstring saying it), none past ~500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent.parent / "exporter" / "core"
MAX_LINES = 520  # "~500": a module past it is doing two jobs
MODULES = sorted(CORE.glob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_one_job_per_module(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(text))
    assert docstring, f"{path.name} opens with no docstring"
    assert docstring.splitlines()[0].strip().endswith((".", ")")), f"{path.name}: the first line is not a sentence"
    assert "seed" not in docstring.lower(), f"{path.name}: say 'the original mongo_client library', not 'the seed'"
    assert len(text.splitlines()) <= MAX_LINES, f"{path.name} has {len(text.splitlines())} lines"
