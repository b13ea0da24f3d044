"""End to end: real mongod, exporter daemon, Prometheus and Alertmanager; dashboards and alerts work."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import queue
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import MongoSessions
from tests.support.daemon import create_pools
from tests.support.tools import require_binary

ROOT = Path(__file__).resolve().parent.parent
EXPORTER = Path(sys.executable).with_name("session-pool-exporter")
LOW_ALERT = "SessionPoolActiveSessionsLow"
STALE_ALERT = "SessionPoolStatisticsStale"
# The whole test is bounded: every wait below has its own deadline well inside this.
pytestmark = pytest.mark.timeout(150)


def binary(name: str) -> str:
    """A Debian binary the test needs (prometheus, prometheus-alertmanager)."""
    return require_binary(name, "Debian packages prometheus, prometheus-alertmanager")


def load_generator() -> Any:
    """dashboards/generate.py, for the dashboards' expressions and template substitution."""
    spec = importlib.util.spec_from_file_location("dashboards_generate_e2e", ROOT / "dashboards" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_json(url: str, *, data: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
    """GET (or POST JSON) a local URL; (status, parsed body or text)."""
    headers = {"Accept": "application/json"}
    body = None
    if data is not None:
        body = json.dumps(data).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if data is not None else "GET")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback only
            raw = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read().decode(), exc.code
    try:
        return status, json.loads(raw)
    except json.JSONDecodeError:
        return status, raw


def wait_for(what: str, check: Callable[[], Any], timeout: float, logs: Callable[[], str] = str) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` and the logs after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, ValueError, KeyError) as exc:
            last_error, result = exc, None
        if result:
            return result
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what} (last error: {last_error!r})\n{logs()}")


class Process:
    """A child process with its output in a file, stopped at the end of the test."""

    def __init__(self, name: str, args: list[str], directory: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = directory / f"{name}.log"
        handle = self.log.open("wb")
        self.popen = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=directory)
        handle.close()

    def tail(self, lines: int = 40) -> str:
        """The last lines of the process's output, for failure messages."""
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.name} (exit {self.popen.poll()}) ---\n" + "\n".join(text)

    def stop(self) -> None:
        """Terminate, then kill if it does not exit in time."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


class Webhook:
    """Alertmanager's webhook receiver: a plain HTTP server collecting the notifications."""

    def __init__(self) -> None:
        self.received: queue.Queue[dict[str, Any]] = queue.Queue()
        self._seen: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.put(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification received so far (drains the queue into a list)."""
        while True:
            try:
                self._seen.append(self.received.get_nowait())
            except queue.Empty:
                break
        return [alert for message in self._seen for alert in message.get("alerts", [])]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def short_for_copy(rules_dir: Path) -> list[Path]:
    """Copy alerts/*.yml with every `for:` rewritten to 1s (and nothing else changed).

    The shipped `for:` durations (2-15 minutes) are right for production but would make this test
    take many minutes; the expressions, labels and annotations under test stay exactly as shipped.
    """
    copies = []
    for source in sorted((ROOT / "alerts").glob("*.yml")):
        text = re.sub(r"(?m)^(\s+for:\s*)\S+\s*$", r"\g<1>1s", source.read_text())
        target = rules_dir / source.name
        target.write_text(text)
        copies.append(target)
    sources = sorted((ROOT / "alerts").glob("*.yml"))
    assert rules_without_for(sources) == rules_without_for(copies)
    return copies


def rules_without_for(paths: list[Path]) -> list[dict[str, Any]]:
    """Every rule of the files, minus its `for:` duration."""
    return [
        {key: value for key, value in rule.items() if key != "for"}
        for path in paths
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


@contextlib.contextmanager
def running_stack(tmp_path: Path, mongo_uri: str, pools: dict[str, int], replicas: int = 1) -> Iterator[dict[str, Any]]:
    """Exporter (pools: name -> min_active_sessions; `replicas` of them on the same pools) + Prometheus +
    Alertmanager + webhook on loopback."""
    prometheus_bin = binary("prometheus")
    alertmanager_bin = binary("prometheus-alertmanager")
    assert EXPORTER.exists(), f"{EXPORTER} missing: pip install -e '.[daemon]'"
    database = f"e2e_{uuid.uuid4().hex[:10]}"
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
        create_pools(config, {"SESSION_POOL_EXPORTER_MONGODB__URI": mongo_uri})  # the daemon creates none
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

        (tmp_path / "alertmanager.yml").write_text(
            yaml.safe_dump(
                {
                    "route": {
                        "receiver": "webhook",
                        "group_by": ["alertname", "pool"],
                        "group_wait": "1s",
                        "group_interval": "1s",
                        "repeat_interval": "1h",
                    },
                    "receivers": [{"name": "webhook", "webhook_configs": [{"url": webhook.url}]}],
                }
            )
        )
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
        rule_files = short_for_copy(rules_dir)
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
        yield {"urls": urls, "token": token, "database": database, "webhook": webhook, "logs": logs}
    finally:
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


async def test_mongodb_outage_fires_the_stale_alert_instead_of_going_quiet(
    tmp_path: Path, mongod_factory: Callable[..., Any]
) -> None:
    """Killing MongoDB withdraws the low-count gauges, and the stale alert reaches the webhook instead."""
    server = mongod_factory()
    async with MongoSessions(server.uri, "outage", "lonely") as pool:
        await pool.add({"session": {"name": "only-one"}})
    with running_stack(tmp_path, server.uri, {"lonely": 5}) as stack:
        prometheus, logs = stack["urls"]["prometheus"], stack["logs"]
        # 1 active of a minimum of 5: the low-count alert fires while MongoDB is up.
        await asyncio.to_thread(
            wait_for, f"{LOW_ALERT} firing", lambda: firing(prometheus, LOW_ALERT, "lonely"), 30, logs
        )
        assert not firing(prometheus, STALE_ALERT, "lonely")

        server.kill()

        def outage_seen() -> bool:
            return (
                bool(firing(prometheus, STALE_ALERT, "lonely"))
                and not instant(prometheus, 'session_pool_active_sessions{pool="lonely"}')
                and not firing(prometheus, LOW_ALERT, "lonely")
            )

        # The gauges are gone (so the low-count alert resolved) and the stale alert fires instead.
        await asyncio.to_thread(wait_for, "the stale alert replacing the low-count one", outage_seen, 45, logs)
        # The failed refreshes show too (a refresh in flight ends at refresh_timeout).
        await asyncio.to_thread(
            wait_for,
            "SessionPoolRefreshFailing firing",
            lambda: firing(prometheus, "SessionPoolRefreshFailing", "lonely"),
            30,
            logs,
        )
        webhook: Webhook = stack["webhook"]

        def delivered() -> list[dict[str, Any]]:
            return [
                a
                for a in webhook.alerts()
                if a["status"] == "firing"
                and a["labels"].get("alertname") == STALE_ALERT
                and a["labels"].get("pool") == "lonely"
            ]

        received = await asyncio.to_thread(wait_for, f"{STALE_ALERT} at the webhook", delivered, 30, logs)
        assert received[0]["labels"]["severity"] == "critical"
        assert received[0]["annotations"]["runbook_url"] == "docs/runbooks.md#sessionpoolstatisticsstale"


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
