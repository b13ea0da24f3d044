"""Smoke test of the benchmark suite: a seconds-long run on tiny pools writes a complete report (no timing asserts)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, MongoClient

from bench.common import DATABASE, SEEDS, seed, shift_holds, start_mongod
from bench.dbcost import cpu_seconds
from bench.refresh import run_group
from exporter.core import STATES, MongoSessions
from tests.support.paths import ROOT
from tests.support.tools import require_binary


def test_quick_bench_writes_every_section(tmp_path: Path) -> None:
    """`python -m bench --quick` on a 200-session pool fills every table of docs/benchmarks.md's format."""
    # A kept dbpath (as for 10M sessions): this run seeds it; tests below cover the reuse.
    require_binary("wrk", "Debian package wrk")
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [
            sys.executable, "-m", "bench", "--quick", "--sizes", "200", "--out", str(out),
            "--mongodb-exporter-seconds", "0", "--footprint-minutes", "0.05", "--handler-seconds", "0.3",
            "--scale-pools", "20", "--many-pools", "4", "--many-sessions", "20", "--many-minutes", "0.1",
            "--dbpath", str(tmp_path / "db"),
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
        "## Issue 14, goal 1: database cost (mongod CPU)",
        "### Where the per-interval CPU goes",
        "## Issue 14, goal 2: /metrics as pools grow",
        "## Many pools on one daemon",
    ):
        assert heading in text, heading
    assert (tmp_path / "db" / "bench-port").exists()
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
    # Issue 14: mongod CPU of the scan, the counts and the sums pass, exact at the tiny size.
    assert re.search(r"\| 200 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+x \|", text)
    assert "sums pass exact | equal at every size | **met** |" in text
    # /metrics: ours and the stock server, plain and gzipped, at 20 synthetic pools refreshing, over 4 connections;
    # the pass after one pool's change measured in-process.
    assert re.search(r"\| 20 \| 4 \| identity \| \d+ \| [\d.]+ \| [\d.]+ \| \d+ \|", text)
    assert re.search(r"\| 20 \| 4 \| gzip \| \d+ \| [\d.]+ \| [\d.]+ \| \d+ \|", text)
    assert re.search(r"\| 20 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", text)
    # Many pools: configured and discovered, all of them watched, every refresh's lag recorded, the
    # daemon's connections to mongod counted.
    assert "| pools watched (configured + discovered) | 4 |" in text
    assert re.search(
        r"connections to mongod \(the daemon's appName, monitors included\), most at once \| [1-9]\d* \|", text
    )
    assert re.search(r"\| start lag p99 \(s\) \| [\d.]+ \| [\d.]+ \|", text)


def test_persistent_dbpath_reuses_a_seeded_pool(tmp_path: Path) -> None:
    """`--dbpath`: a pool seeded earlier with its size is kept, its holds moved so the mix is what was seeded."""
    server = start_mongod(str(tmp_path / "db"))
    try:
        first = seed(server.uri, "kept", 300, reuse=True)
        assert not first.reused
        client: MongoClient[dict[str, Any]] = MongoClient(server.uri, tz_aware=True)
        try:
            # As if seeded two minutes earlier (longer would also move sessions used in that window: a
            # test artifact, as their next_use would fall after the pretended seeding time).
            meta = client[DATABASE][SEEDS].find_one({"_id": "kept"})
            assert meta is not None
            earlier = meta["holds_from"] - timedelta(minutes=2)
            client[DATABASE][SEEDS].update_one({"_id": "kept"}, {"$set": {"holds_from": earlier}})
            assert shift_holds(client[DATABASE]["kept"], meta["holds_from"], -120_000) > 0
        finally:
            client.close()
        again = seed(server.uri, "kept", 300, reuse=True, holds_kept=timedelta(minutes=1))
        assert again.reused and again.expected == first.expected and again.shifted > 0
        assert asyncio.run(_states(server.uri, "kept")) == first.expected
        # A different size is seeded anew.
        assert not seed(server.uri, "kept", 301, reuse=True).reused
        cpu = cpu_seconds(server.process.pid if server.process else 0)
        assert cpu > 0
    finally:
        server.stop()
    # The data and its port stay for the next run: the same replica set starts again on them.
    server = start_mongod(str(tmp_path / "db"))
    try:
        assert seed(server.uri, "kept", 301, reuse=True).reused
    finally:
        server.stop()


async def _states(uri: str, collection: str) -> dict[str, int]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True, tzinfo=UTC)
    try:
        pool = MongoSessions(client=client, db=DATABASE, collection=collection, create_indexes=False)
        await pool.connect()
        stats = await run_group(pool, await pool.server_time())
        return {str(s): stats.states[s] for s in STATES}
    finally:
        await client.close()


def test_splice_carries_a_runs_sections_and_goal_rows_and_leaves_the_rest() -> None:
    """bench.splice: the run's section replaces the page's, its goal rows replace the matching ones; the other
    sections and goals stay byte for byte."""
    from bench.splice import splice

    page = (
        "# Benchmarks\n\n## Goals\n\n| goal | measured | verdict |\n| --- | --- | --- |\n"
        "| scrape fast | 1 ms | **met** |\n| 500 pools: RSS < 256 MiB | 70 MiB | **met** |\n\n"
        "## 2. Scrape\n\nold scrape figures\n\n## Many pools on one daemon\n\nold many figures\n"
    )
    run = (
        "# Benchmarks\n\n- Date: 2026-12-04 23:00 UTC; run time 6.0 min\n"
        "- Reproduce: `.venv/bin/python -m bench --only manypools`\n\n## Machine\n\n"
        "| load average (1/5/15 min) at the start | 0.5 0.4 0.3 |\n\n## Goals\n\n"
        "| goal | measured | verdict |\n| --- | --- | --- |\n| 5000 pools: RSS < 256 MiB | 200 MiB | **met** |\n\n"
        "## Many pools on one daemon\n\nnew many figures\n\n## Not run\n\nscrape\n"
    )
    out = splice(run, page, ["Many pools on one daemon"], r"\| \d+ pools:")
    assert "old many figures" not in out and "new many figures" in out
    assert "## 2. Scrape\n\nold scrape figures\n" in out
    assert "| scrape fast | 1 ms | **met** |" in out
    assert "500 pools" not in out and "| 5000 pools: RSS < 256 MiB | 200 MiB | **met** |" in out
    assert "*From the run of 2026-12-04 23:00 UTC, `.venv/bin/python -m bench --only manypools`" in out
    assert "## Not run" not in out
