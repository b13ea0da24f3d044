"""Harness of the reliability suite: the daemon as a real subprocess, a /metrics+/readyz poller, figures."""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.mongod import free_port
from tests.daemon_helpers import Samples, parse_metrics

WRITE_TOKEN = "rel-write-token-5f0c9a7e3b2d41c8"
READ_TOKEN = "rel-read-token-8e1d6b2f9c4a7035"
APP_NAME = "session-pool-exporter"


def cli_command() -> list[str]:
    """The installed console script next to this interpreter (what users run)."""
    script = Path(sys.executable).parent / "session-pool-exporter"
    return [str(script)] if script.exists() else [sys.executable, "-m", "exporter"]


def metric(samples: Samples, name: str, **labels: str) -> float | None:
    """One series' value, or None when it is absent."""
    return samples.get((name, frozenset(labels.items())))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """Count, p50, p99 and max of latencies, in milliseconds."""
    return {
        "count": len(seconds),
        "p50_ms": round(percentile(seconds, 50) * 1000, 2),
        "p99_ms": round(percentile(seconds, 99) * 1000, 2),
        "max_ms": round(max(seconds, default=0.0) * 1000, 2),
    }


def base_config(mongo_uri: str, pools: list[dict[str, Any]], **sections: Any) -> dict[str, Any]:
    """A daemon config: short intervals, the two test tokens, and any section overrides."""
    config: dict[str, Any] = {
        "mongodb": {"uri": mongo_uri, "timeout": 2, "server_selection_timeout": 1},
        "defaults": {"interval": 1, "jitter": 0, "refresh_timeout": 1.5},
        "log": {"level": "info", "format": "json"},
        "pools": pools,
        "admin": {
            "tokens": [
                {"name": "alice", "token": WRITE_TOKEN, "role": "write"},
                {"name": "reader", "token": READ_TOKEN, "role": "read"},
            ]
        },
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def tls_verify(verify: str | bool) -> ssl.SSLContext | bool:
    """httpx's verify argument: a CA file becomes an SSL context trusting only it."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


@dataclass
class Daemon:
    """`session-pool-exporter run --config FILE` as a child process on a free port."""

    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    verify: str | bool = True
    process: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="spe-rel-")))

    @property
    def url(self) -> str:
        """Base URL (https when the config has a tls section)."""
        scheme = "https" if self.config.get("tls") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The file receiving the daemon's stderr."""
        return self.workdir / "stderr.log"

    def start(self) -> Daemon:
        """Write the config and start the process."""
        path = self.workdir / "config.yaml"
        path.write_text(yaml.safe_dump({**self.config, "listen": f"127.0.0.1:{self.port}"}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_POOL_EXPORTER_")}
        env.update(self.env)
        with self.log_path.open("wb") as err:
            self.process = subprocess.Popen(
                [*cli_command(), "run", "--config", str(path)], stdout=subprocess.DEVNULL, stderr=err, env=env
            )
        return self

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def logs(self) -> str:
        """Everything logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, token: str | None = WRITE_TOKEN, timeout: float = 30) -> httpx.Client:
        """A sync client sending `token` as bearer."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout, verify=tls_verify(self.verify))

    def async_client(self, token: str | None = WRITE_TOKEN, timeout: float = 30, **kw: Any) -> httpx.AsyncClient:
        """An async client sending `token` as bearer."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify = tls_verify(self.verify)
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout, verify=verify, **kw)

    def get(self, path: str, timeout: float = 10) -> httpx.Response:
        """One unauthenticated GET."""
        return httpx.get(self.url + path, timeout=timeout, verify=tls_verify(self.verify))

    def samples(self) -> Samples:
        """Parsed /metrics."""
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        return parse_metrics(response.text)

    def wait_for(self, predicate: Callable[[], bool], what: str, deadline: float = 60.0) -> float:
        """Poll predicate() every 50 ms; return the seconds it took; fail with the logs on timeout or exit."""
        start = time.monotonic()
        while time.monotonic() - start < deadline:
            if not self.alive():
                pytest.fail(f"daemon exited ({self.process and self.process.returncode}) waiting for {what}:\n"
                            + self.logs()[-5000:])  # fmt: skip
            with contextlib.suppress(httpx.TransportError):
                if predicate():
                    return time.monotonic() - start
            time.sleep(0.05)
        pytest.fail(f"timed out after {deadline:g} s waiting for {what}; daemon logs:\n{self.logs()[-5000:]}")

    def wait_ready(self, deadline: float = 60.0) -> float:
        """Wait until /readyz answers 200."""
        return self.wait_for(lambda: self.get("/readyz").status_code == 200, "/readyz 200", deadline)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        return self.process.returncode


@contextlib.contextmanager
def running(config: Mapping[str, Any], env: Mapping[str, str] | None = None, verify: str | bool = True,
            ready: bool = True) -> Iterator[Daemon]:  # fmt: skip
    """A started daemon (ready unless told otherwise), stopped and cleaned up on exit."""
    daemon = Daemon(dict(config), dict(env or {}), verify=verify).start()
    try:
        if ready:
            daemon.wait_ready()
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(daemon.workdir, ignore_errors=True)


@dataclass
class Probe:
    """One poll of /metrics and /readyz."""

    t: float  # wall clock at the start of the poll
    metrics_status: int | None
    metrics_latency: float | None
    readyz_status: int | None
    readyz_latency: float | None
    samples: Samples
    readyz: dict[str, Any] | None
    error: str | None = None


class Poller:
    """Polls /metrics and /readyz from a thread every `period` seconds, keeping every answer."""

    def __init__(self, daemon: Daemon, period: float = 0.1) -> None:
        self.daemon = daemon
        self.period = period
        self.probes: list[Probe] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.daemon.url, timeout=5, verify=tls_verify(self.daemon.verify)) as http:
            while not self._stop.is_set():
                t = time.time()
                probe = Probe(t, None, None, None, None, {}, None)
                try:
                    s = time.perf_counter()
                    m = http.get("/metrics")
                    probe.metrics_latency, probe.metrics_status = time.perf_counter() - s, m.status_code
                    probe.samples = parse_metrics(m.text) if m.status_code == 200 else {}
                    s = time.perf_counter()
                    r = http.get("/readyz")
                    probe.readyz_latency, probe.readyz_status = time.perf_counter() - s, r.status_code
                    probe.readyz = r.json()
                except (httpx.HTTPError, ValueError) as exc:
                    probe.error = f"{type(exc).__name__}: {exc}"
                self.probes.append(probe)
                self._stop.wait(self.period)

    def between(self, start: float, end: float) -> list[Probe]:
        """Probes whose poll started in [start, end)."""
        return [p for p in self.probes if start <= p.t < end]

    def metrics_latencies(self) -> list[float]:
        """Every /metrics latency measured."""
        return [p.metrics_latency for p in self.probes if p.metrics_latency is not None]

    def failures(self) -> list[Probe]:
        """Polls that got no answer or a non-200 /metrics."""
        return [p for p in self.probes if p.error or p.metrics_status != 200]


def snapshot(client: Any, *namespaces: tuple[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Every document of the given (database, collection) pairs, sorted by _id, for before/after checks."""
    return {f"{db}.{coll}": list(client[db][coll].find().sort("_id", 1)) for db, coll in namespaces}


class Report:
    """Figures the suite produces, written out by conftest when RELIABILITY_REPORT is set."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def record(self, section: str, name: str, value: Any) -> None:
        """Keep one figure under section/name."""
        with self._lock:
            self.data.setdefault(section, {})[name] = value

    def add(self, section: str, name: str, amount: int = 1) -> None:
        """Add to a counter figure."""
        with self._lock:
            bucket = self.data.setdefault(section, {})
            bucket[name] = bucket.get(name, 0) + amount
