"""Subprocesses the benches drive: the real daemon, the stock-server twin, the Debian exporter, and wrk."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.common import DATABASE
from exporter.mongod import free_port
from tests.support.cli import cli_command


def pools_config(
    collections: list[str], *, busy: str | None = None, busy_interval: float = 1.0
) -> list[dict[str, Any]]:
    """One pool per collection; `busy` (if given) refreshes every `busy_interval` s, the rest hourly."""
    pools = []
    for i, coll in enumerate(collections):
        pool: dict[str, Any] = {"name": f"p{i:02d}", "database": DATABASE, "collection": coll}
        pool["interval"] = busy_interval if coll == busy else 3600
        pool["jitter"] = 0
        pools.append(pool)
    return pools


def daemon_config(mongo_uri: str, port: int, pools: list[dict[str, Any]]) -> dict[str, Any]:
    """A daemon config: generous timeouts so a 1M-session refresh is never cut short."""
    return {
        "listen": f"127.0.0.1:{port}",
        "log": {"level": "info", "format": "json"},
        "mongodb": {"uri": mongo_uri, "timeout": 600},
        "defaults": {"refresh_timeout": 600, "create_indexes": False},
        "pools": pools,
    }


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own local URL
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, *, timeout: float, ok: tuple[int, ...] = (200,), request_timeout: float = 2) -> float:
    """Poll `url` until it answers one of `ok`; seconds waited."""
    started = time.monotonic()
    while True:
        try:
            status, _ = http_get(url, timeout=request_timeout)
            if status in ok:
                return time.monotonic() - started
        except OSError:
            pass
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{url} not ready after {timeout:g} s")
        time.sleep(0.05)


@dataclass
class Proc:
    """A subprocess with its stderr lines timestamped (relative to its start) by a reader thread."""

    args: list[str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    lines: list[tuple[float, str]] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> Proc:
        """Start it; stderr is read line by line in a thread."""
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            self.lines.append((time.monotonic() - self.started, raw.decode("utf-8", "replace").rstrip()))

    @property
    def pid(self) -> int:
        """Process id."""
        assert self.process is not None
        return self.process.pid

    def url(self, path: str = "/metrics") -> str:
        """http://127.0.0.1:<port><path>."""
        return f"http://127.0.0.1:{self.port}{path}"

    def events(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        """JSON log lines whose `event` is `name`, with their arrival time."""
        out = []
        for at, line in list(self.lines):
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if isinstance(data, dict) and data.get("event") == name:
                    out.append((at, data))
        return out

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def tail(self, n: int = 20) -> str:
        """Last stderr lines, for error messages."""
        return "\n".join(line for _, line in self.lines[-n:])


def daemon(mongo_uri: str, pools: list[dict[str, Any]]) -> Proc:
    """A real `session-pool-exporter run` subprocess (not yet started) for these pools."""
    port = free_port()
    tmp = tempfile.TemporaryDirectory(prefix="spe-bench-")
    path = Path(tmp.name) / "config.yaml"
    path.write_text(yaml.safe_dump(daemon_config(mongo_uri, port, pools)))
    proc = Proc([*cli_command(), "run", "--config", str(path)], port=port)
    proc._tmp = tmp
    return proc


def stock_server(mongo_uri: str, pools: list[dict[str, Any]], *, busy: str | None = None) -> Proc:
    """The same collector and registry served by prometheus_client's stock HTTP server (bench.stock_server)."""
    port = free_port()
    tmp = tempfile.TemporaryDirectory(prefix="spe-bench-")
    path = Path(tmp.name) / "config.yaml"
    path.write_text(yaml.safe_dump(daemon_config(mongo_uri, port, pools)))
    args = [sys.executable, "-m", "bench.stock_server", "--config", str(path), "--port", str(port)]
    if busy:
        args += ["--busy", busy]
    proc = Proc(args, port=port)
    proc._tmp = tmp
    return proc


MONGODB_EXPORTER = "prometheus-mongodb-exporter"


def mongodb_exporter(mongo_port: int) -> Proc | None:
    """Debian's prometheus-mongodb-exporter with database and collection stats, or None if not installed."""
    binary = shutil.which(MONGODB_EXPORTER)
    if binary is None:
        return None
    port = free_port()
    return Proc(
        [
            binary,
            f"-mongodb.uri=mongodb://127.0.0.1:{mongo_port}",
            f"-web.listen-address=127.0.0.1:{port}",
            "-mongodb.collect.database",
            "-mongodb.collect.collection",
            "-logtostderr",
        ],
        port=port,
    )


@dataclass
class WrkResult:
    """What wrk reported."""

    rps: float
    p50: float
    p99: float
    requests: int
    errors: int
    body_bytes: int = 0


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"cannot read wrk time {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str, *, duration: float, connections: int = 16, threads: int = 2, headers: tuple[str, ...] = ()
) -> WrkResult:
    """Run wrk with --latency (and `-H` for each header) and parse requests/s, p50, p99 and errors."""
    binary = shutil.which("wrk")
    if binary is None:
        raise FileNotFoundError("wrk is not installed (Debian: apt-get install wrk)")
    out = subprocess.run(
        [
            binary,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "30s",  # the default 2 s would count slow scrapes as errors instead of timing them
            "--latency",
            *(arg for header in headers for arg in ("-H", header)),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    if re.search(r"\s50%\s+(\S+)", out) is None or re.search(r"\b0 requests in", out):  # none completed
        return WrkResult(rps=rps, p50=float("nan"), p99=float("nan"), requests=0, errors=0)
    p50 = _seconds(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (
        r"Non-2xx or 3xx responses: (\d+)",
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
    ):
        match = re.search(pattern, out)
        if match:
            errors += sum(int(g) for g in match.groups())
    return WrkResult(rps=rps, p50=p50, p99=p99, requests=total, errors=errors)
