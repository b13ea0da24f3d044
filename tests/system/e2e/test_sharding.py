"""Several daemons sharing the pools, scraped by a real Prometheus: each pool K times, before, during and after
going from 3 daemons to 4; any daemon's admin API acts on any pool.

SHARDING_POOLS (default 60), SHARDING_REPLICAS (2) and SHARDING_INTERVAL (2 s) set the size; the long run
(`SHARDING_POOLS=1000 ... -s`) prints the figures docs/benchmarks.md quotes.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymongo import MongoClient

from exporter.config import owners
from tests.support.alerting import Process, binary, free_port, http_json, wait_for

EXPORTER = Path(sys.executable).with_name("session-pool-exporter")
POOLS = int(os.environ.get("SHARDING_POOLS", "60"))
REPLICAS = int(os.environ.get("SHARDING_REPLICAS", "2"))
INTERVAL = float(os.environ.get("SHARDING_INTERVAL", "2"))
TOKEN = "a-write-token-for-the-sharding-test"
JOB = "session-pool-exporter"
SCRAPE = 1.0  # Prometheus' scrape interval in this test
pytestmark = pytest.mark.timeout(600)


@dataclass
class Fleet:
    """Up to four daemons (index -> process) on one database, and the Prometheus scraping them."""

    tmp: Path
    mongo_uri: str
    database: str
    ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(4)])
    admin_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(4)])
    daemons: dict[int, Process] = field(default_factory=dict)
    others: list[Process] = field(default_factory=list)
    prometheus: str = ""

    def logs(self) -> str:
        return "\n".join(p.tail(15) for p in [*self.daemons.values(), *self.others])

    def start(self, index: int, count: int) -> None:
        """Daemon `index` of `count`, watching its shard of the pools discovery finds."""
        config = {
            "listen": f"127.0.0.1:{self.ports[index]}",
            "log": {"level": "warning", "format": "json"},
            "mongodb": {"timeout": 10},
            "defaults": {"interval": INTERVAL, "refresh_timeout": 10, "sums_interval": 60},
            "discovery": [{"databases": [self.database], "include": ["s_*"], "interval": INTERVAL}],
            "shard": {"index": index, "count": count, "replicas": REPLICAS},
            "admin": {"listen": f"127.0.0.1:{self.admin_ports[index]}"},
        }
        path = self.tmp / f"daemon-{index}-of-{count}.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {
            **os.environ,
            "SESSION_POOL_EXPORTER_MONGODB__URI": self.mongo_uri,
            "SESSION_POOL_EXPORTER_ADMIN_TOKEN": TOKEN,
        }
        name = f"daemon-{index}-of-{count}"
        self.daemons[index] = Process(name, [str(EXPORTER), "run", "--config", str(path)], self.tmp, env)
        url = f"http://127.0.0.1:{self.ports[index]}/readyz"
        wait_for(f"{name} ready", lambda: http_json(url)[0] == 200, 120, self.logs)
        # Ready means its pools are exported; what a rollout's minReadySeconds gives (the chart's default
        # is 30 s): a scrape or two, so that Prometheus has them before the next daemon restarts.
        time.sleep(SCRAPE * 2)

    def stop(self, index: int) -> None:
        daemon = self.daemons.pop(index)
        daemon.terminate()
        daemon.stop()

    def start_prometheus(self) -> None:
        port = free_port()
        config = {
            "global": {"scrape_interval": f"{SCRAPE:g}s", "evaluation_interval": f"{SCRAPE:g}s"},
            "scrape_configs": [
                {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in self.ports]}]}
            ],
        }
        (self.tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        args = [
            binary("prometheus"),
            f"--config.file={self.tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.tmp / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        self.others.append(Process("prometheus", args, self.tmp))
        self.prometheus = f"http://127.0.0.1:{port}"
        wait_for("prometheus ready", lambda: http_json(self.prometheus + "/-/ready")[0] == 200, 30, self.logs)

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, body = http_json(self.prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert status == 200 and body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def watchers(self) -> dict[str, set[int]]:
        """pool -> the indexes of the daemons whose series of it Prometheus has now."""
        index_of = {f"127.0.0.1:{port}": index for index, port in enumerate(self.ports)}
        found: dict[str, set[int]] = {}
        for row in self.query(f'session_pool_up{{job="{JOB}"}}'):
            found.setdefault(row["metric"]["pool"], set()).add(index_of[row["metric"]["instance"]])
        return found

    def counts_over(self, start: float, end: float) -> dict[str, list[int]]:
        """pool -> how many daemons exported it at each second from start to end (0 where none)."""
        expr = f'count by (pool) (session_pool_up{{job="{JOB}"}})'
        query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 1})
        status, body = http_json(self.prometheus + "/api/v1/query_range?" + query)
        assert status == 200 and body["status"] == "success", body
        steps = [round(start + i) for i in range(int(end - start) + 1)]
        counts: dict[str, list[int]] = {}
        for series in body["data"]["result"]:
            values = {round(float(t)): int(float(v)) for t, v in series["values"]}
            counts[series["metric"]["pool"]] = [values.get(t, 0) for t in steps]
        return counts

    def close(self) -> None:
        for process in [*self.daemons.values(), *self.others]:
            process.terminate()
        for process in [*self.daemons.values(), *self.others]:
            process.stop()


@pytest.fixture
def fleet(tmp_path: Path, mongo_uri: str) -> Iterator[Fleet]:
    assert EXPORTER.exists(), f"{EXPORTER} missing: pip install -e ."
    database = f"shard_{uuid.uuid4().hex[:8]}"
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    for n in range(POOLS):
        client[database][f"s_{n:04d}"].insert_one({"session": {"n": n}, "active": True})
    running = Fleet(tmp_path, mongo_uri, database)
    try:
        yield running
    finally:
        running.close()
        client.drop_database(database)
        client.close()


def expected(count: int) -> dict[str, set[int]]:
    return {f"s_{n:04d}": set(owners(f"s_{n:04d}", count, REPLICAS)) for n in range(POOLS)}


def test_each_pool_is_watched_k_times_before_during_and_after_a_fourth_daemon_joins(fleet: Fleet) -> None:
    fleet.start_prometheus()
    for index in range(3):
        fleet.start(index, 3)
    before = wait_for("3 daemons' series", lambda: _when(fleet.watchers(), expected(3)), 120, fleet.logs)
    assert all(len(indexes) == REPLICAS for indexes in before.values())

    # The change as a StatefulSet makes it: the new pod starts, then each old one restarts with count 4.
    began = time.time()
    fleet.start(3, 4)
    for index in range(3):
        fleet.stop(index)
        fleet.start(index, 4)
    after = wait_for("4 daemons' series", lambda: _when(fleet.watchers(), expected(4)), 120, fleet.logs)
    ended = time.time()
    assert all(len(indexes) == REPLICAS for indexes in after.values())
    moved = sum(1 for pool in after if after[pool] != before[pool])
    assert all(after[pool] - before[pool] <= {3} for pool in after), "a pool moved to an old daemon"

    counts = fleet.counts_over(began, ended)
    assert set(counts) == set(expected(4)), "a pool had no series at all during the change"
    lowest = {pool: min(series) for pool, series in counts.items()}
    highest = max(max(series) for series in counts.values())
    gaps = [_longest_zero_run(series) for series in counts.values()]
    print(  # the long run's figures (pytest -s)
        f"\nsharding: {POOLS} pools, replicas {REPLICAS}, interval {INTERVAL:g} s; 3 -> 4 daemons in"
        f" {ended - began:.0f} s; moved {moved} ({moved / POOLS:.0%}; the rule's expectation"
        f" {REPLICAS / 4:.0%}); fewest watchers during the change {min(lowest.values())}, most {highest};"
        f" longest time unwatched {max(gaps)} s"
    )
    if REPLICAS >= 2:
        # One daemon restarts at a time: every pool keeps at least one watcher throughout.
        assert min(lowest.values()) >= REPLICAS - 1 >= 1, sorted(lowest.items(), key=lambda kv: kv[1])[:5]
    assert max(gaps) <= 2 * INTERVAL, f"a pool went unwatched for {max(gaps)} s"
    assert highest <= REPLICAS + 1


def test_any_daemons_admin_api_acts_on_a_pool_it_does_not_watch(fleet: Fleet, mongo_uri: str) -> None:
    fleet.start(0, 3)
    pool = next(name for name, indexes in expected(3).items() if 0 not in indexes)
    admin = f"http://127.0.0.1:{fleet.admin_ports[0]}"
    status, body = http_json(f"{admin}/admin/pools/{pool}/sessions?state=active", token=TOKEN)
    assert status == 200, body
    session = body["sessions"][0]["id"]
    status, body = http_json(
        f"{admin}/admin/pools/{pool}/sessions/{session}/lock",
        data={"period": {"minutes": 5}, "reason": "sharding test"},
        token=TOKEN,
    )
    assert status == 200, body
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    try:
        stored = client[fleet.database][pool].find_one({})
    finally:
        client.close()
    assert stored is not None and stored["next_use"] is not None
    status, body = http_json(f"{admin}/admin/pools", token=TOKEN)
    assert status == 200, body
    listed = {p["name"]: p for p in body["pools"]}
    assert listed[pool]["watched_by"] == sorted(expected(3)[pool])
    assert listed[pool]["watched"] is False


def _when(seen: dict[str, set[int]], wanted: dict[str, set[int]]) -> dict[str, set[int]] | None:
    return seen if seen == wanted else None


def _longest_zero_run(series: list[int]) -> int:
    longest = run = 0
    for value in series:
        run = run + 1 if value == 0 else 0
        longest = max(longest, run)
    return longest
