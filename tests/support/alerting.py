"""Prometheus and Alertmanager in tests: processes, a webhook receiver, and the shipped rules and
Alertmanager example rendered for runs of seconds instead of minutes (every change checked)."""

from __future__ import annotations

import json
import queue
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.tools import require_binary

ROOT = Path(__file__).resolve().parent.parent.parent
ALERTMANAGER_EXAMPLE = ROOT / "examples" / "alertmanager.yml"
# A Prometheus duration of one unit, as the rule files and the Alertmanager example write them.
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "y": 31_536_000_000}
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
# A range selector `[15m]`; a subquery (`[1h:5m]`) or an `offset` is refused rather than left unscaled.
_RANGE = re.compile(r"\[(\d+(?:ms|s|m|h|d|w|y))\]")
_UNSCALED = re.compile(r"\[[^\]]*:[^\]]*\]|\boffset\b")
_SCALED_KEYS = ("for", "keep_firing_for")
_ROUTE_TIMINGS = ("group_wait", "group_interval", "repeat_interval")


def binary(name: str) -> str:
    """A Debian binary the test needs (prometheus, prometheus-alertmanager)."""
    return require_binary(name, "Debian packages prometheus, prometheus-alertmanager")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_json(url: str, *, data: dict[str, Any] | list[Any] | None = None, token: str | None = None) -> tuple[int, Any]:
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
        self._terminated = False

    def tail(self, lines: int = 40) -> str:
        """The last lines of the process's output, for failure messages."""
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.name} (exit {self.popen.poll()}) ---\n" + "\n".join(text)

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM, once), without waiting."""
        if self.popen.poll() is None and not self._terminated:
            self._terminated = True
            self.popen.terminate()

    def stop(self) -> None:
        """Terminate, then kill if it does not exit in time."""
        if self.popen.poll() is None:
            self.terminate()
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

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification received so far, in order (drains the queue into a list)."""
        while True:
            try:
                self._seen.append(self.received.get_nowait())
            except queue.Empty:
                break
        return list(self._seen)

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification received so far."""
        return [alert for message in self.notifications() for alert in message.get("alerts", [])]

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


def duration_ms(text: str) -> int:
    """Milliseconds of a one-unit Prometheus duration ("2m", "1d", "500ms")."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a one-unit duration: {text!r}")
    return int(match[1]) * _UNIT_MS[match[2]]


def scaled(text: str, factor: int) -> str:
    """A duration divided by `factor`, in whole milliseconds ("2m" / 12 -> "10000ms")."""
    ms, rest = divmod(duration_ms(text), factor)
    assert rest == 0, f"{text} / {factor} is not a whole number of milliseconds"
    return f"{ms}ms"


def scaled_rule(rule: dict[str, Any], factor: int) -> dict[str, Any]:
    """One rule with its `for:`, `keep_firing_for:` and every range selector of its expression divided by `factor`."""
    expr = str(rule["expr"])
    assert not _UNSCALED.search(expr), f"subquery or offset: extend the scaling first: {expr}"
    out = {**rule, "expr": _RANGE.sub(lambda m: f"[{scaled(m[1], factor)}]", expr)}
    for key in _SCALED_KEYS:
        if key in rule:
            out[key] = scaled(str(rule[key]), factor)
    return out


def scaled_rules(rules_dir: Path, factor: int) -> list[Path]:
    """Copy alerts/*.yml with every duration of the rules (`for:`, range selectors) divided by `factor`.

    Unlike `short_for_copy`, the ratios between durations stay as shipped: the 2m window over
    session_pool_mongodb_up still turns an outage into a cause before the pools' `for: 2m` has run
    out, a minute later on the scaled clock as on the real one. Everything else is unchanged.
    """
    copies = []
    for source in sorted((ROOT / "alerts").glob("*.yml")):
        data = yaml.safe_load(source.read_text())
        for group in data["groups"]:
            group["rules"] = [scaled_rule(rule, factor) for rule in group["rules"]]
        target = rules_dir / source.name
        target.write_text(yaml.safe_dump(data, sort_keys=False))
        copies.append(target)
    return copies


def alertmanager_config(webhook_url: str, factor: int) -> dict[str, Any]:
    """examples/alertmanager.yml with every receiver sent to `webhook_url` and the route's timings
    divided by `factor`; its grouping and inhibit_rules exactly as shipped."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    for timing in _ROUTE_TIMINGS:
        config["route"][timing] = scaled(config["route"][timing], factor)
    for receiver in config["receivers"]:
        receiver["webhook_configs"] = [{"url": webhook_url}]
    return config
