"""A thread polling a daemon's /metrics and /readyz, keeping every answer (reliability and failover tests)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.daemon import Daemon, tls_verify
from tests.support.metrics import Samples, parse_metrics


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
