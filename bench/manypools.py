"""Many pools: a real daemon finding hundreds of small pools by discovery; its RSS and how late each refresh runs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import gc
import json
import math
import sys
import tempfile
import time
import urllib.request
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import yaml
from apscheduler.events import (
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobSubmissionEvent,
)
from pymongo import MongoClient

from bench.common import median, seed
from bench.procs import Proc
from exporter.assembly import build
from exporter.cli import freeze_heap
from exporter.collector import PoolJob
from exporter.config import load_config
from exporter.core import State
from exporter.history import HISTORY_SECONDS, HISTORY_STEP, StatesHistory
from exporter.log import setup_logging
from exporter.mongod import free_port
from tests.support.stats import percentile

DATABASE = "bench_many"
# What Prometheus asks for (its default scrape_protocols).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
PREFIX = "many_"
# A refresh's record: when it was due (s since start), its start and end lags, its wait for a slot, its duration.
RECORD_FIELDS = ("due", "start", "end", "wait", "duration")


@dataclass
class ManyResult:
    """RSS samples (s since start, MiB) and one record per refresh: seconds late against its schedule."""

    pools: int
    sessions: int
    concurrency: int
    interval: float
    minutes: float
    configured: int = 0
    seed_seconds: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)
    refreshes: list[dict[str, float]] = field(default_factory=list)
    skipped: int = 0
    discovered_after: float = math.nan
    failures: int = 0
    pools_seen: int = 0
    # (s since start, the daemon's connections to mongod: its appName in $currentOp, idle ones included)
    connections: list[tuple[float, int]] = field(default_factory=list)
    # (s since start, seconds, bytes): a scrape of /metrics as Prometheus makes it, every interval
    scrapes: list[tuple[float, float, int]] = field(default_factory=list)
    history_points: int = 0  # each pool's state history, filled to an hour's worth at its first refresh
    # (s since start, seconds) of each full garbage collection in the probe (the heap freeze's own included)
    gc_pauses: list[tuple[float, float]] = field(default_factory=list)
    frozen_at: float = math.nan  # s since start: the start-up round refreshed, the heap frozen
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (s since start, the probe's CPU seconds so far)

    def lags(self, key: str, *, steady: bool) -> list[float]:
        """`key` ('start' or 'end' lag) of every refresh; `steady` leaves out the first two intervals (start-up)."""
        cut = 2 * self.interval if steady else -math.inf
        return [r[key] for r in self.refreshes if r["due"] >= cut]

    def stat(self, key: str, q: float, *, steady: bool = True) -> float:
        """A percentile of a lag (q=100: the maximum)."""
        values = self.lags(key, steady=steady)
        return percentile(values, q) if values else math.nan

    @property
    def peak(self) -> float:
        """Largest RSS seen (MiB)."""
        return max((s[1] for s in self.samples), default=math.nan)

    @property
    def end_rss(self) -> float:
        """RSS at the last sample (MiB)."""
        return self.samples[-1][1] if self.samples else math.nan

    @property
    def per_pool_refresh(self) -> float:
        """Median seconds of one refresh (slot held)."""
        return median([r["duration"] for r in self.refreshes]) if self.refreshes else math.nan

    @property
    def first_round_bound(self) -> float:
        """One interval plus what every pool's first refresh takes at `concurrency` at once (the goal)."""
        return self.interval + self.pools * self.per_pool_refresh / self.concurrency

    def pauses(self, *, after: bool) -> list[float]:
        """Seconds of the full collections before the heap was frozen (its own included), or `after` it."""
        return [p for at, p in self.gc_pauses if (at > self.frozen_at) == after]

    @property
    def steady_cpu(self) -> float:
        """The probe's CPU in steady state (after two intervals), as a share of one core."""
        later = [(at, cpu) for at, cpu in self.cpu if at >= 2 * self.interval]
        if len(later) < 2 or later[-1][0] <= later[0][0]:
            return math.nan
        return (later[-1][1] - later[0][1]) / (later[-1][0] - later[0][0])

    def scrape_stat(self, q: float) -> float:
        """A percentile of the durations (s) of the scrapes after the first (which waits for the first rendering)."""
        values = [seconds for _, seconds, _ in self.scrapes[1:]]
        return percentile(values, q) if values else math.nan

    @property
    def scrape_size(self) -> float:
        """Median bytes of a scrape's (gzip) body."""
        return median([size for _, _, size in self.scrapes]) if self.scrapes else math.nan

    @property
    def most_connections(self) -> int:
        """The most connections the daemon held to mongod at once."""
        return max((n for _, n in self.connections), default=-1)


def seed_pools(mongo_uri: str, pools: int, sessions: int, *, reuse: bool) -> float:
    """`pools` collections `many_NNNN` of `sessions` sessions each in their own database; seconds taken.
    One client seeds them all (thousands of pools in minutes)."""
    started = time.monotonic()
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, tz_aware=True)
    try:
        for i in range(pools):
            seed(mongo_uri, f"{PREFIX}{i:04d}", sessions, seed_value=1000 + i, reuse=reuse, database=DATABASE,
                 client=client)  # fmt: skip
    finally:
        client.close()
    return time.monotonic() - started


def daemon_config(
    mongo_uri: str, port: int, *, interval: float, concurrency: int, configured: int = 0
) -> dict[str, Any]:
    """The first `configured` pools listed in the config, discovery of every other `many_*` collection; the
    defaults otherwise (jitter, sums_interval)."""
    return {
        "listen": f"127.0.0.1:{port}",
        "log": {"level": "warning", "format": "json"},
        "mongodb": {"uri": mongo_uri, "timeout": 120},
        "defaults": {"interval": interval, "refresh_timeout": 120, "create_indexes": False},
        "pools": [
            {"name": f"{PREFIX}{i:04d}", "database": DATABASE, "collection": f"{PREFIX}{i:04d}"}
            for i in range(configured)
        ],
        "discovery": [{"databases": [DATABASE], "include": [f"{PREFIX}*"], "interval": 60}],
        "max_concurrent_refreshes": concurrency,
    }


def daemon_connections(client: MongoClient[dict[str, Any]]) -> int:
    """Connections mongod has from the daemon (its appName), idle ones and the driver's monitors included."""
    rows = client.admin.aggregate(
        [
            {"$currentOp": {"allUsers": True, "idleConnections": True, "localOps": False}},
            {"$match": {"appName": "session-pool-exporter"}},
            {"$count": "n"},
        ]
    )
    found = list(rows)
    return int(found[0]["n"]) if found else 0


def scrape(port: int) -> tuple[float, int]:
    """One scrape of /metrics as Prometheus makes it (its Accept header, gzip): seconds, bytes received."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        size = len(answer.read())
    return time.perf_counter() - started, size


def run(
    mongo_uri: str,
    *,
    pools: int,
    sessions: int,
    minutes: float,
    interval: float,
    concurrency: int,
    reuse: bool,
    log: Callable[[str], None],
    configured: int = 0,
) -> ManyResult:
    """Seed, then run the probe daemon for `minutes`, sampling its RSS and its MongoDB connections every second."""
    out = ManyResult(
        pools=pools,
        sessions=sessions,
        concurrency=concurrency,
        interval=interval,
        minutes=minutes,
        configured=configured,
    )
    out.seed_seconds = seed_pools(mongo_uri, pools, sessions, reuse=reuse)
    log(f"  seeded {pools} pools of {sessions} sessions in {out.seed_seconds:.1f} s")
    with tempfile.TemporaryDirectory(prefix="spe-bench-") as tmp:
        config = Path(tmp) / "config.yaml"
        result = Path(tmp) / "result.json"
        port = free_port()
        data = daemon_config(mongo_uri, port, interval=interval, concurrency=concurrency, configured=configured)
        config.write_text(yaml.safe_dump(data))
        args = ["--config", str(config), "--seconds", str(minutes * 60), "--out", str(result), "--expect", str(pools)]
        proc = Proc([sys.executable, "-m", "bench.manypools", *args], port=port).start()
        watcher: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, appname="bench")
        next_scrape = interval
        try:
            ps = psutil.Process(proc.pid)
            while proc.process is not None and proc.process.poll() is None:
                try:
                    at = time.monotonic() - proc.started
                    out.samples.append((at, ps.memory_info().rss / 2**20))
                    cpu = ps.cpu_times()
                    out.cpu.append((at, cpu.user + cpu.system))
                    out.connections.append((at, daemon_connections(watcher)))
                except psutil.Error:
                    break
                if at >= next_scrape:
                    next_scrape += interval
                    with contextlib.suppress(OSError):
                        out.scrapes.append((at, *scrape(port)))
                time.sleep(1)
            if not result.exists():
                raise RuntimeError(f"probe wrote no result: {proc.tail()}")
            data = json.loads(result.read_text())
            data["refreshes"] = read_records(result)
        finally:
            proc.stop()
            watcher.close()
    out.refreshes = data["refreshes"]
    out.skipped = int(data["skipped"])
    out.discovered_after = float(data["discovered_after"])
    out.failures = int(data["failures"])
    out.pools_seen = int(data["pools"])
    out.history_points = int(data["history_points"])
    out.gc_pauses = [(float(at), float(p)) for at, p in data["gc_pauses"]]
    out.frozen_at = float(data["frozen_at"])
    log(
        f"  connections to mongod at most {out.most_connections}; every pool refreshed once after"
        f" {out.discovered_after:.1f} s (bound {out.first_round_bound:.1f} s)"
    )
    log(
        f"  RSS end {out.end_rss:.1f} MiB (peak {out.peak:.1f}); {len(out.refreshes)} refreshes, start lag"
        f" p50 {out.stat('start', 50):.3f} s p99 {out.stat('start', 99):.3f} s max {out.stat('start', 100):.3f} s"
        f" (steady p99 {out.stat('start', 99, steady=True):.3f} s); {len(out.scrapes)} scrapes p50"
        f" {out.scrape_stat(50) * 1000:.1f} ms max {out.scrape_stat(100) * 1000:.1f} ms after the first;"
        f" history {out.history_points} points a pool; heap frozen at {out.frozen_at:.1f} s,"
        f" then {len(out.pauses(after=True))} full collections,"
        f" longest {max(out.pauses(after=True), default=0) * 1000:.0f} ms;"
        f" steady CPU {out.steady_cpu:.0%} of a core"
    )
    return out


# -- the probe: the real daemon in this process, its scheduler watched -------------------------------------


async def probe(config_path: str, seconds: float, expect: int) -> dict[str, Any]:
    """Serve the daemon for `seconds`; record each scheduled refresh's due time, start and end."""
    config = load_config(config_path, {}, {})
    setup_logging(config.log.level, config.log.format)  # as `run` does: the daemon's own logging
    daemon = build(config)
    collector = daemon.collector
    collector.on_settled.append(freeze_heap)  # as `run` does
    due: dict[str, datetime] = {}
    counts = {"skipped": 0}
    # One array per field, not a dict per refresh: the probe's bookkeeping must not weigh in the daemon's RSS.
    records = {key: array("d") for key in RECORD_FIELDS}
    t0 = time.time()
    discovered: list[float] = []
    seen: set[str] = set()

    def listen(event: JobEvent) -> None:
        owner = collector.scheduler.owner(event.job_id)
        if owner is None or owner[1] is not PoolJob.REFRESH:
            return
        name = owner[0]
        if isinstance(event, JobSubmissionEvent) and event.code == EVENT_JOB_SUBMITTED:
            due[name] = event.scheduled_run_times[-1]
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            counts["skipped"] += 1  # a refresh still running when the next one was due
        elif event.code == EVENT_JOB_EXECUTED:
            record(name)

    def record(name: str) -> None:
        """One scheduled refresh has just ended: when it was due, started and ended, its wait for a slot."""
        when = due.pop(name, None)
        pool = collector.pools.get(name)
        if when is None or pool is None or pool.refresh.duration is None:
            return
        end = time.time()
        for key, value in (
            ("due", when.timestamp() - t0),
            ("start", end - pool.refresh.duration - when.timestamp()),
            ("end", end - when.timestamp()),
            ("wait", pool.refresh.wait or 0.0),
            ("duration", pool.refresh.duration),
        ):
            records[key].append(value)
        if name not in seen:
            # The memory of a daemon that has run an hour, without running it an hour: a copy of the
            # hour (its arrays copied whole, not rebuilt point by point during the first round).
            pool.history = copy.deepcopy(hour)
            points.append(len(pool.history))
        seen.add(name)
        if expected and len(seen) >= expected and not discovered:
            discovered.append(time.time() - t0)  # every pool discovery found has refreshed once

    expected = expect
    points: list[int] = []
    interval = min((p.interval for p in collector.pools.values()), default=15.0)
    hour = an_hour_of_history(interval, dict.fromkeys(State, 40))
    collector.scheduler.listen(listen, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_EXECUTED)
    pauses: list[tuple[float, float]] = []  # the full garbage collections (generation 2): when, seconds
    frozen: list[float] = []
    collector.on_settled.append(lambda: frozen.append(time.time() - t0))
    began: list[float] = []

    def collected(phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2:
            if phase == "start":
                began[:] = [time.perf_counter()]
            elif began:
                pauses.append((time.time() - t0, time.perf_counter() - began[0]))

    gc.callbacks.append(collected)
    server = daemon.server(install_signals=False)
    task = asyncio.create_task(server.serve())
    await asyncio.sleep(max(0.0, seconds - (time.time() - t0)))
    server.should_exit = True
    await task
    return {
        "refreshes": records,
        "skipped": counts["skipped"],
        "discovered_after": discovered[0] if discovered else math.nan,
        "failures": sum(1 for p in collector.pools.values() if not p.up),
        "pools": len(collector.pools),
        "history_points": max(points, default=0),
        "gc_pauses": pauses,
        "frozen_at": frozen[0] if frozen else math.nan,
    }


def an_hour_of_history(interval: float, states: Mapping[State, int]) -> StatesHistory:
    """The state history an hour of refreshes every `interval` seconds leaves, ending now (its counts: `states`)."""
    step = max(interval, HISTORY_STEP)
    now = time.time()
    filled = StatesHistory()
    for k in range(int(HISTORY_SECONDS / step), -1, -1):
        filled.add(now - k * step, states)
    return filled


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.manypools --config FILE --seconds S --out FILE` (the probe the bench runs)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--expect", type=int, required=True, help="pools configured and discovered in all")
    args = parser.parse_args(argv)
    result = asyncio.run(probe(args.config, args.seconds, args.expect))
    out = Path(args.out)
    for key, values in result.pop("refreshes").items():
        with record_path(out, key).open("wb") as f:
            values.tofile(f)  # raw, not through JSON: no burst of memory while the parent still samples RSS
    out.write_text(json.dumps(result))


def record_path(out: Path, key: str) -> Path:
    """Where the probe writes one field of its refresh records (raw doubles) beside its result `out`."""
    return out.with_name(f"{out.name}.{key}")


def read_records(out: Path) -> list[dict[str, float]]:
    """The refresh records the probe wrote beside `out`, one dict each."""
    fields: dict[str, array[float]] = {}
    for key in RECORD_FIELDS:
        fields[key] = array("d")
        fields[key].frombytes(record_path(out, key).read_bytes())
    return [dict(zip(RECORD_FIELDS, values, strict=True)) for values in zip(*fields.values(), strict=True)]


if __name__ == "__main__":
    main()
