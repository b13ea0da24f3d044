"""End to end: real mongod, exporter daemon, Prometheus and Alertmanager; dashboards and alerts work."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import MongoSessions
from tests.support.alerting import (
    Process,
    Webhook,
    alertmanager_config,
    binary,
    free_port,
    http_json,
    scaled_rules,
    short_for_copy,
    wait_for,
)
from tests.support.paths import ROOT

EXPORTER = Path(sys.executable).with_name("session-pool-exporter")
LOW_ALERT = "SessionPoolActiveSessionsLow"
MONGODB_ALERT = "SessionPoolMongoDBUnreachable"
PER_POOL_SYMPTOMS = "SessionPool(StatisticsStale|RefreshFailing|RefreshErrors)"
OUTAGE_POOLS = 20
# The outage test's clock: every duration of the rules and of Alertmanager's grouping divided by 12
# (the pools' `for: 2m` and the 2m window over session_pool_mongodb_up -> 10 s, group_wait -> 2.5 s).
OUTAGE_SCALE = 12
# Seconds after the kill by which a pool's alert would have been notified had the rules not held it
# back: max_age (3 s) + its scaled `for:` (10 s) + group_wait (2.5 s), and a margin.
OUTAGE_QUIET = 20.0
# The whole test is bounded: every wait below has its own deadline well inside this.
pytestmark = pytest.mark.timeout(150)


def load_generator() -> Any:
    """dashboards/generate.py, for the dashboards' expressions and template substitution."""
    spec = importlib.util.spec_from_file_location("dashboards_generate_e2e", ROOT / "dashboards" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def running_stack(
    tmp_path: Path,
    mongo_uri: str,
    pools: dict[str, int],
    replicas: int = 1,
    scale: int | None = None,
    database: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Exporter (pools: name -> min_active_sessions; `replicas` of them on the same pools) + Prometheus +
    Alertmanager (examples/alertmanager.yml) + webhook on loopback.

    The rules' `for:` are 1s, or with `scale` every duration of the rules (windows included) is
    divided by it; Alertmanager's group timings are divided by `scale` (30 by default: 1s to wait).
    """
    prometheus_bin = binary("prometheus")
    alertmanager_bin = binary("prometheus-alertmanager")
    assert EXPORTER.exists(), f"{EXPORTER} missing: pip install -e ."
    database = database or f"e2e_{uuid.uuid4().hex[:10]}"
    token = secrets.token_urlsafe(24)
    ports = {name: free_port() for name in ("exporter", "admin", "prometheus", "alertmanager")}
    more = [(free_port(), free_port()) for _ in range(replicas - 1)]
    processes: list[Process] = []
    webhook = Webhook()

    def logs() -> str:
        return "\n".join(p.tail() for p in processes)

    try:
        config = {
            "listen": f"127.0.0.1:{ports['exporter']}",
            "log": {"level": "info", "format": "json"},
            # The admin API on its own loopback listener, as deployed.
            "admin": {"listen": f"127.0.0.1:{ports['admin']}"},
            # Sums every 2 s (300 s in production) so the success-ratio panels get data within the test.
            "defaults": {
                "interval": 1,
                "jitter": 0,
                "refresh_timeout": 5,
                "min_active_sessions": 1,
                "sums_interval": 2,
            },
            "pools": [
                {"name": name, "database": database, "collection": name, "min_active_sessions": minimum}
                for name, minimum in pools.items()
            ],
        }
        (tmp_path / "exporter.yaml").write_text(yaml.safe_dump(config))
        # Secrets go through the environment, not the config file or the command line.
        env = {
            **os.environ,
            "SESSION_POOL_EXPORTER_MONGODB__URI": mongo_uri,
            "SESSION_POOL_EXPORTER_ADMIN_TOKEN": token,
        }
        processes.append(
            Process("exporter", [str(EXPORTER), "run", "--config", str(tmp_path / "exporter.yaml")], tmp_path, env)
        )
        for index, (port, admin_port) in enumerate(more, start=2):
            replica = {**config, "listen": f"127.0.0.1:{port}", "admin": {"listen": f"127.0.0.1:{admin_port}"}}
            path = tmp_path / f"exporter-{index}.yaml"
            path.write_text(yaml.safe_dump(replica))
            processes.append(Process(f"exporter-{index}", [str(EXPORTER), "run", "--config", str(path)], tmp_path, env))

        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(webhook.url, scale or 30)))
        processes.append(
            Process(
                "alertmanager",
                [
                    alertmanager_bin,
                    f"--config.file={tmp_path / 'alertmanager.yml'}",
                    f"--storage.path={tmp_path / 'alertmanager-data'}",
                    f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                    "--cluster.listen-address=",
                ],
                tmp_path,
            )
        )

        rules_dir = tmp_path / "rules"
        rules_dir.mkdir()
        rule_files = scaled_rules(rules_dir, scale) if scale else short_for_copy(rules_dir)
        (tmp_path / "prometheus.yml").write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(p) for p in rule_files],
                    "alerting": {
                        "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports['alertmanager']}"]}]}]
                    },
                    "scrape_configs": [
                        {
                            "job_name": "session-pool-exporter",
                            "static_configs": [
                                {
                                    "targets": [
                                        f"127.0.0.1:{port}" for port in [ports["exporter"], *(p for p, _ in more)]
                                    ]
                                }
                            ],
                        }
                    ],
                }
            )
        )
        processes.append(
            Process(
                "prometheus",
                [
                    prometheus_bin,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                ],
                tmp_path,
            )
        )
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        wait_for("alertmanager ready", lambda: http_json(urls["alertmanager"] + "/-/ready")[0] == 200, 30, logs)
        wait_for("prometheus ready", lambda: http_json(urls["prometheus"] + "/-/ready")[0] == 200, 30, logs)
        wait_for("exporter healthy", lambda: http_json(urls["exporter"] + "/healthz")[0] == 200, 30, logs)
        targets = [f"127.0.0.1:{port}" for port in [ports["exporter"], *(p for p, _ in more)]]
        yield {"urls": urls, "token": token, "database": database, "webhook": webhook, "logs": logs, "targets": targets}
    finally:
        # All asked to stop at once, so that slow stoppers wait in parallel.
        for process in processes:
            process.terminate()
        for process in reversed(processes):
            process.stop()
        webhook.close()


@pytest.fixture
def stack(tmp_path: Path, mongo_uri: str) -> Iterator[dict[str, Any]]:
    """The stack on the session's mongod, with a pool to drain (minimum 2) and a steady one."""
    with running_stack(tmp_path, mongo_uri, {"drain": 2, "steady": 1}) as running:
        yield running


def instant(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """Run an instant query; the result vector (empty when no data)."""
    status, body = http_json(prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200 and body["status"] == "success", (expr, status, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def firing(prometheus: str, alertname: str, pool: str) -> list[dict[str, Any]]:
    """The alerts Prometheus reports as firing for that name and pool."""
    status, body = http_json(prometheus + "/api/v1/alerts")
    assert status == 200, body
    return [
        a
        for a in body["data"]["alerts"]
        if a["labels"].get("alertname") == alertname and a["labels"].get("pool") == pool and a["state"] == "firing"
    ]


def low_alerts(alerts: list[dict[str, Any]], pool: str) -> list[dict[str, Any]]:
    """The low-active alerts of one pool among webhook notifications."""
    return [a for a in alerts if a["labels"].get("alertname") == LOW_ALERT and a["labels"].get("pool") == pool]


async def traffic(pool: MongoSessions, stop: asyncio.Event) -> int:
    """Workers' usage: take a session, report success, again; keeps uses/successes moving."""
    rounds = 0
    while not stop.is_set():
        session = await pool.get_session(next_use_delay=0)
        if session is not None:
            if rounds % 4:
                await pool.session_success(session, next_use_delay=0)
            rounds += 1
        await asyncio.sleep(0.05)
    return rounds


async def test_dashboards_have_data_and_low_active_alert_reaches_the_webhook(
    stack: dict[str, Any], mongo_uri: str
) -> None:
    """Every dashboard query returns data; draining a pool fires the low-active alert to the webhook."""
    urls, logs = stack["urls"], stack["logs"]
    prometheus = urls["prometheus"]
    generator = load_generator()
    async with (
        MongoSessions(mongo_uri, stack["database"], "drain") as drain,
        MongoSessions(mongo_uri, stack["database"], "steady") as steady,
    ):
        for index in range(4):
            await drain.add({"session": {"name": f"drain-{index}"}})
        steady_ids = [(await steady.add({"session": {"name": f"steady-{index}"}})).inserted_id for index in range(6)]

        # A lock through the admin API: the admin counters, the audit, and a next unlock time.
        status, body = await asyncio.to_thread(
            http_json,
            f"{urls['admin']}/admin/pools/steady/sessions/{steady_ids[0]}/lock",
            data={"period": {"minutes": 10}, "reason": "e2e test"},
            token=stack["token"],
        )
        assert status == 200, (status, body)

        stop = asyncio.Event()
        worker = asyncio.create_task(traffic(steady, stop))
        try:
            await asyncio.to_thread(
                wait_for, "the exporter ready", lambda: http_json(urls["exporter"] + "/readyz")[0] == 200, 30, logs
            )
            # Every dashboard query (and the pool variable) returns data through Prometheus.
            pending = {}
            for name in sorted(generator.DASHBOARDS):
                model = json.loads((ROOT / "dashboards" / name).read_text())
                for where, expr in generator.expressions(model):
                    pending[f"{name}: {where}"] = generator.substitute(expr, pool=".*", rate_interval="15s")

            def all_have_data() -> bool:
                for where, expr in list(pending.items()):
                    if instant(prometheus, expr):
                        del pending[where]
                return not pending

            await asyncio.to_thread(
                wait_for, "data for every dashboard query", all_have_data, 45, lambda: f"{pending}\n{logs()}"
            )
            assert instant(prometheus, 'session_pool_active_sessions{pool="drain"}')[0]["value"][1] == "4"
            assert not firing(prometheus, LOW_ALERT, "drain")
        finally:
            stop.set()
            rounds = await worker
        assert rounds > 0

        # Drain the pool through the client core: lock half, deactivate the rest.
        for index, doc in enumerate(await drain.get_sessions()):
            if index % 2:
                await drain.session_lock(doc)
            else:
                await drain.session_inactive(doc)
        assert await drain.count_active() == 0

    alerts = await asyncio.to_thread(
        wait_for, f"{LOW_ALERT} firing in Prometheus", lambda: firing(prometheus, LOW_ALERT, "drain"), 30, logs
    )
    assert alerts[0]["labels"]["severity"] == "warning"

    webhook: Webhook = stack["webhook"]

    def delivered() -> list[dict[str, Any]]:
        return [a for a in low_alerts(webhook.alerts(), "drain") if a["status"] == "firing"]

    received = await asyncio.to_thread(wait_for, f"{LOW_ALERT} at the webhook via Alertmanager", delivered, 30, logs)
    alert = received[0]
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["job"] == "session-pool-exporter"
    assert alert["annotations"]["runbook_url"] == "docs/runbooks.md#sessionpoolactivesessionslow"
    assert alert["annotations"]["summary"] == "Pool drain has fewer active sessions than its minimum"
    # The healthy pool stays quiet.
    assert not low_alerts(webhook.alerts(), "steady")


async def test_mongodb_outage_pages_once_per_exporter(tmp_path: Path, mongod_factory: Callable[..., Any]) -> None:
    """20 pools watched by two exporter replicas, MongoDB killed: Alertmanager pages once (one
    notification group: SessionPoolMongoDBUnreachable of both replicas), and no pool's stale or
    refresh alert fires. Before the outage, a pool whose collection is missing pages as that; the
    outage withdraws the state gauges, so the low-count alerts cannot fire (unknown is not fixed)."""
    server = mongod_factory()
    database = f"e2e_{uuid.uuid4().hex[:10]}"
    names = [f"p{index:02d}" for index in range(1, OUTAGE_POOLS + 1)]
    missing = names[0]

    async def create(name: str) -> None:
        async with MongoSessions(server.uri, database, name) as pool:
            await pool.add({"session": {"name": name}})

    # Every pool but one: its collection is missing.
    await asyncio.gather(*(create(name) for name in names if name != missing))
    with running_stack(
        tmp_path, server.uri, dict.fromkeys(names, 1), replicas=2, scale=OUTAGE_SCALE, database=database
    ) as stack:
        prometheus, logs = stack["urls"]["prometheus"], stack["logs"]
        webhook: Webhook = stack["webhook"]

        def paged(alertname: str, pool: str) -> bool:
            return any(
                a["status"] == "firing" and a["labels"]["alertname"] == alertname and a["labels"].get("pool") == pool
                for a in webhook.alerts()
            )

        def before_outage() -> bool:
            fresh = instant(prometheus, "session_pool_active_sessions")
            return paged("SessionPoolCollectionMissing", missing) and len(fresh) == 2 * (OUTAGE_POOLS - 1)

        await asyncio.to_thread(wait_for, "the missing collection paged", before_outage, 40, logs)
        before = len(webhook.notifications())
        killed = time.monotonic()
        server.kill()

        def pages() -> list[dict[str, Any]]:
            return [n for n in webhook.notifications()[before:] if n["status"] == "firing"]

        def cause_notified() -> bool:
            named = {a["labels"].get("instance") for n in pages() for a in n["alerts"]}
            return named >= set(stack["targets"])

        # Both replicas' alert, usually in one notification; in two of the same group when one
        # replica noticed the outage more than group_wait later (the second at group_interval).
        await asyncio.to_thread(wait_for, f"{MONGODB_ALERT} of both replicas at the webhook", cause_notified, 60, logs)
        # Time for any pool's alert to fire and be notified had the rules not held it back.
        await asyncio.sleep(max(0.0, killed + OUTAGE_QUIET - time.monotonic()))
        sent = pages()
        # What Prometheus saw of each replica, should the counts below be wrong.
        seen = {
            expr: [
                (r["metric"].get("instance"), [v for _, v in r["values"]]) for r in instant(prometheus, f"{expr}[1m]")
            ]
            for expr in ("up", "session_pool_mongodb_up")
        }
        why = f"{sent}\n{seen}\n{logs()}"
        assert len({n["groupKey"] for n in sent}) == 1, f"{len(sent)} notifications for one outage: {why}"
        alerts = [a for n in sent for a in n["alerts"]]
        assert {a["labels"]["alertname"] for a in alerts} == {MONGODB_ALERT}, why
        assert {a["labels"]["instance"] for a in alerts} == set(stack["targets"]), why
        assert len(sent) <= 2, why
        assert alerts[0]["labels"]["severity"] == "critical"
        assert alerts[0]["annotations"]["runbook_url"] == "docs/runbooks.md#sessionpoolmongodbunreachable"
        # Prometheus agrees: no pool's stale or refresh alert fired at any time of the test.
        fired = instant(
            prometheus, f'max_over_time(ALERTS{{alertstate="firing",alertname=~"{PER_POOL_SYMPTOMS}"}}[10m])'
        )
        assert fired == [], fired
        # Every state gauge is withdrawn: the low-count alerts cannot fire.
        assert not instant(prometheus, "session_pool_active_sessions or session_pool_sessions")


async def test_two_replicas_count_a_pool_once(tmp_path: Path, mongo_uri: str) -> None:
    """Two daemons on the same pool, both scraped: the recorded sums and the alert are one replica's, not double."""
    with running_stack(tmp_path, mongo_uri, {"twice": 5}, replicas=2) as stack:
        prometheus, logs = stack["urls"]["prometheus"], stack["logs"]
        async with MongoSessions(mongo_uri, stack["database"], "twice") as pool:
            for name in ("a", "b", "c"):
                await pool.add({"session": {"name": name}})
        await asyncio.to_thread(
            wait_for, f"{LOW_ALERT} firing", lambda: firing(prometheus, LOW_ALERT, "twice"), 30, logs
        )

        def both_scraped() -> bool:
            return len(instant(prometheus, 'session_pool_active_sessions{pool="twice"} == 3')) == 2

        await asyncio.to_thread(wait_for, "both replicas exporting 3 active", both_scraped, 30, logs)
        total = instant(prometheus, 'pool:session_pool_sessions:sum{pool="twice"}')
        assert [float(r["value"][1]) for r in total] == [3.0]
        ratio = instant(prometheus, 'pool:session_pool_active_ratio:ratio{pool="twice"}')
        assert [float(r["value"][1]) for r in ratio] == [1.0]
        alerts = firing(prometheus, LOW_ALERT, "twice")
        assert len(alerts) == 1 and "instance" not in alerts[0]["labels"], alerts
