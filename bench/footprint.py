"""Footprint: resident memory of a real daemon watching 20 pools over time, and its time to first refresh."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.procs import daemon, http_get, pools_config, wait_http


@dataclass
class FootprintResult:
    """RSS samples (seconds since start, MiB) and start-up times."""

    samples: list[tuple[float, float]] = field(default_factory=list)
    first_refresh: float = float("nan")
    all_refreshed: float = float("nan")
    refreshes: int = 0
    failures: int = 0
    minutes: float = 0.0

    def rss_at(self, fraction: float) -> float:
        """RSS of the sample nearest to `fraction` of the run."""
        if not self.samples:
            return float("nan")
        end = self.samples[-1][0]
        return min(self.samples, key=lambda s: abs(s[0] - end * fraction))[1]

    @property
    def peak(self) -> float:
        """Largest RSS seen."""
        return max((s[1] for s in self.samples), default=float("nan"))

    @property
    def growth_per_minute(self) -> float:
        """Least-squares slope (MiB/min) over the second half of the run (after warm-up)."""
        half = [s for s in self.samples if s[0] >= self.samples[-1][0] / 2] if self.samples else []
        if len(half) < 2:
            return float("nan")
        n = len(half)
        mx = sum(t for t, _ in half) / n
        my = sum(v for _, v in half) / n
        var = sum((t - mx) ** 2 for t, _ in half)
        if var == 0:
            return float("nan")
        return sum((t - mx) * (v - my) for t, v in half) / var * 60


def _counter(body: bytes, name: str) -> int:
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def run(
    mongo_uri: str, collections: list[str], *, minutes: float, interval: float, every: float, log: Any
) -> FootprintResult:
    """Run `session-pool-exporter run` on 20 pools for `minutes`, sampling RSS every `every` seconds."""
    pools = pools_config(collections)
    for pool in pools:
        pool["interval"] = interval
    proc = daemon(mongo_uri, pools).start()
    out = FootprintResult(minutes=minutes)
    try:
        wait_http(proc.url("/healthz"), timeout=120)
        ps = psutil.Process(proc.pid)
        deadline = proc.started + minutes * 60
        ready = False
        while True:
            now = time.monotonic()
            out.samples.append((now - proc.started, ps.memory_info().rss / 2**20))
            if not ready:
                status, _ = http_get(proc.url("/readyz"), timeout=30)
                if status == 200:
                    ready = True
                    out.all_refreshed = time.monotonic() - proc.started
            if now >= deadline:
                break
            time.sleep(min(every, max(0.0, deadline - now)))
        ups = proc.events("pool_up")
        if ups:
            out.first_refresh = ups[0][0]
        _, body = http_get(proc.url(), timeout=30)
        out.refreshes = _counter(body, "session_pool_refreshes_total")
        out.failures = _counter(body, "session_pool_refresh_failures_total")
    finally:
        proc.stop()
    log(
        f"  RSS start {out.samples[0][1]:.1f} MiB, end {out.samples[-1][1]:.1f} MiB, peak {out.peak:.1f} MiB;"
        f" first refresh {out.first_refresh:.2f} s, all pools {out.all_refreshed:.2f} s"
    )
    return out
