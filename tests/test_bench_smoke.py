"""Smoke test of the benchmark suite: a seconds-long run on tiny pools writes a complete report (no timing asserts)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.tools import require_binary

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_writes_every_section(tmp_path: Path) -> None:
    """`python -m bench --quick` on a 200-session pool fills every table of docs/benchmarks.md's format."""
    require_binary("wrk", "Debian package wrk")
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [
            sys.executable, "-m", "bench", "--quick", "--sizes", "200", "--out", str(out),
            "--mongodb-exporter-seconds", "0", "--footprint-minutes", "0.05", "--handler-seconds", "0.3",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    for heading in (
        "# Benchmarks",
        "## Machine",
        "## Goals",
        "## Data",
        "## 1. Refresh cost",
        "## 2. Scrape",
        "## 3. Handlers",
        "## 4. Footprint",
    ):
        assert heading in text, heading
    assert "Reproduce: `.venv/bin/python -m bench --quick --sizes 200" in text
    assert re.search(r"\| mongod \| \d+\.\d+\.\d+ \|", text)
    # Every refresh method has a numeric median, and the state counts were checked equal.
    for label in ("exporter refresh", "original library", "one `$group` scan"):
        assert re.search(re.escape(label) + r"[^|]*\| \d+ \| [\d.]+ \| [\d.]+ \|", text), label
    assert "| 200 | `count_active()` |" in text
    assert "DIFFERENT" not in text and "| NO |" not in text
    # Both HTTP servers were scraped, and handlers ran without duplicates.
    assert re.search(r"\| session-pool-exporter \(`run`, uvicorn\) \| idle \| \d+ \|", text)
    assert re.search(r"\| \(a\) `prometheus_client.start_http_server`, same registry \| refreshing \| \d+ \|", text)
    assert re.search(r"\| idle \| `get_session` \| [\d,]+ \| \d+ \|", text)
    assert "| zero duplicates (every run, both methods) | 0 duplicates | **met** |" in text
    assert re.search(r"start to first successful refresh .*\| [\d.]+ s \|", text)
