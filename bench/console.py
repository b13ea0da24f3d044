"""`python -m bench.console`: the console's list endpoint on a large pool, each filter timed, its queries profiled."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from bench.common import DATABASE, machine, median, ms, seed
from exporter.core import MongoSessions
from exporter.mongod import Mongod
from tests.support.daemon import WRITE_TOKEN, config, serving, write_config

COLLECTION = "console"
# (what, query string): every filter of GET /admin/pools/{pool}/sessions an operator uses.
CASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("active, least recently used first (page 1)", {"state": "active"}),
    ("active, page 199 of 50 (skip 9,900)", {"state": "active", "page": 199}),
    ("active, most recently used first", {"state": "active", "order": "last_use_desc"}),
    ("in_use, newest hold end first", {"state": "in_use"}),
    ("locked, newest hold end first", {"state": "locked"}),
    ("locked, least recently used first", {"state": "locked", "order": "last_use_asc"}),
    ("blocked, soonest hold end first", {"state": "blocked", "order": "hold_asc"}),
    ("inactive, least recently used first", {"state": "inactive"}),
    ("search q=+7900123 (a phone prefix)", {"q": "+7900123"}),
    ("search q=+7900123 within locked", {"q": "+7900123", "state": "locked"}),
    ("search q=+790 (too wide: refused, 422)", {"q": "+790"}),
    ("underperforming=1", {"underperforming": 1}),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000, help="sessions in the pool (default 1000000)")
    parser.add_argument("--reps", type=int, default=7, help="timed calls per filter (default 7)")
    parser.add_argument("--out", default="docs/console-bench.md", help="markdown file to write")
    return parser.parse_args(argv)


def profiled(client: MongoClient[dict[str, Any]], since: datetime) -> list[dict[str, Any]]:
    """The profiler's entries of the pool's collection since `since`: what the server did for one request."""
    return list(
        client[DATABASE]["system.profile"].find({"ns": f"{DATABASE}.{COLLECTION}", "ts": {"$gte": since}}).sort("ts", 1)
    )


def describe(entry: dict[str, Any]) -> str:
    """One profiled operation: command, plan, keys and documents examined, server milliseconds."""
    command = entry.get("op") if entry.get("op") != "command" else next(iter(entry.get("command", {})), "command")
    return (
        f"{command}: {entry.get('planSummary', '?')}; keys {entry.get('keysExamined', 0):,}, "
        f"docs {entry.get('docsExamined', 0):,}, {entry.get('millis', 0)} ms"
    )


async def run(args: argparse.Namespace) -> str:
    """Seed, serve the daemon in-process, call each filter, profile its queries; the report's markdown."""
    server = Mongod().start()
    try:
        print(f"seeding {args.size:,} sessions ...", file=sys.stderr, flush=True)
        seeded = seed(server.uri, COLLECTION, args.size)
        client: MongoClient[dict[str, Any]] = MongoClient(server.uri, tz_aware=True)
        probe = MongoSessions(server.uri, DATABASE, COLLECTION, console_indexes=["phone"])
        started = time.monotonic()
        for keys, _why in probe.index_specs():
            client[DATABASE][COLLECTION].create_index(keys)
        index_seconds = time.monotonic() - started
        await probe.close()
        data = config(
            server.uri,
            [{"name": "big", "database": DATABASE, "collection": COLLECTION, "session_fields": {"search": ["phone"]},
              "interval": 30, "create_indexes": False}],
            admin={"request_timeout": 60},
        )  # fmt: skip
        rows: list[tuple[str, dict[str, Any], int, Any, float, list[dict[str, Any]]]] = []
        with tempfile.TemporaryDirectory() as tmp:
            async with serving(write_config(Path(tmp), data)) as daemon:
                pool = daemon.collector.pools["big"]
                while pool.stats is None:  # noqa: ASYNC110 - the collector has no event for its first refresh
                    await asyncio.sleep(0.2)
                # The gauge's scheduled job, run now rather than after its interval: its own cost, and the
                # total the underperformers' list then shows.
                client[DATABASE].command("profile", 2)
                since = datetime.now(UTC)
                began = time.perf_counter()
                await daemon.collector.count_underperformers("big")
                job_seconds = time.perf_counter() - began
                client[DATABASE].command("profile", 0)
                job_ops = profiled(client, since)
                assert pool.underperformers is not None
                rows.append(
                    ("the scheduled count of underperformers (the gauge's job)", {}, 0, pool.underperformers.count,
                     job_seconds, job_ops)
                )  # fmt: skip
                async with httpx.AsyncClient(
                    base_url=daemon.url, headers={"Authorization": f"Bearer {WRITE_TOKEN}"}, timeout=120
                ) as http:
                    for what, params in CASES:
                        url = "/admin/pools/big/sessions"
                        await http.get(url, params=params)  # warm the cache
                        seconds = []
                        for _ in range(args.reps):
                            began = time.perf_counter()
                            response = await http.get(url, params=params)
                            seconds.append(time.perf_counter() - began)
                        client[DATABASE].command("profile", 2)
                        since = datetime.now(UTC)
                        answer = (await http.get(url, params=params)).json()
                        client[DATABASE].command("profile", 0)
                        ops = profiled(client, since)
                        total = answer.get("total", answer.get("message", ""))
                        print(f"{what}: {ms(median(seconds))} ms", file=sys.stderr, flush=True)
                        rows.append((what, params, response.status_code, total, median(seconds), ops))
        info = machine(server.uri)
        client.close()
    finally:
        server.cleanup()
    lines = [
        "# The console's list endpoint on a large pool",
        "",
        f"`GET /admin/pools/{{pool}}/sessions` on a pool of {args.size:,} sessions "
        f"(states seeded: {', '.join(f'{k} {v:,}' for k, v in seeded.expected.items())}; 20 % written by the "
        "original library, without hold markers), through the real daemon over HTTP, page size 50. "
        f"Time: median of {args.reps} calls after one warm-up, client side (HTTP, auth, the server time, every "
        "query). Queries: what MongoDB's profiler recorded for one call (plan, index keys and documents "
        f"examined, server milliseconds). Indexes built after seeding in {index_seconds:.0f} s.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GiB; mongod {info['mongod']}, "
        f"Python {info['python']}, PyMongo {info['pymongo']}. Reproduce: "
        f"`{shlex.join(['.venv/bin/python', '-m', 'bench.console', *sys.argv[1:]])}`.",
        "",
        "| filter | status | total | ms (median) | queries: plan; keys, docs examined; server ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for what, params, status, total, took, ops in rows:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        plans = "<br>".join(describe(op) for op in ops) or "none"
        shown = f"{total:,}" if isinstance(total, int) else str(total)[:40]
        lines.append(f"| {what}{f' (`{query}`)' if query else ''} | {status or '-'} | {shown} | {ms(took)} | {plans} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run and write the report."""
    args = parse_args(argv)
    report = asyncio.run(run(args))
    Path(args.out).write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
