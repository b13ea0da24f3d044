"""The markdown report: machine, command, every figure, the ratios and each goal's verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench import dbcost as dc
from bench import refresh as rf
from bench import scrape as sc
from bench.common import LEGACY_SHARE, MIX, SeedResult, fx, ms, ratio
from bench.footprint import FootprintResult
from bench.handlers import Run
from bench.manypools import ManyResult
from bench.procs import WrkResult
from exporter.collector import MONGO_POOL
from exporter.core import STATES


def _ok(flag: bool | None) -> str:
    return "n/a" if flag is None else ("**met**" if flag else "**missed**")


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def _cmp(value: float, goal: float, *, at_most: bool) -> bool | None:
    if value != value:
        return None
    return value <= goal if at_most else value >= goal


@dataclass
class Report:
    """Everything measured in one run."""

    command: str
    quick: bool = False
    machine: dict[str, Any] = field(default_factory=dict)
    seeds: list[SeedResult] = field(default_factory=list)
    refresh: list[rf.SizeResult] | None = None
    scrape: sc.ScrapeResult | None = None
    handlers: dict[str, dict[str, Run]] | None = None
    handler_pool: int = 0
    footprint: FootprintResult | None = None
    footprint_interval: float = 15
    seconds: float = 0.0
    dbpath: str | None = None
    dbcost: list[dc.CostResult] | None = None
    scaling: list[sc.ScaleRow] | None = None
    many: ManyResult | None = None

    # -- goals ----------------------------------------------------------------------------------

    def goals(self) -> list[tuple[str, str, bool | None]]:
        """(goal, measured, met) rows."""
        rows: list[tuple[str, str, bool | None]] = []
        rows += self._issue14_goals()
        if self.refresh:
            big = self.refresh[-1]
            r = ratio(big.med("ours"), big.med("group"))
            exact = big.counts_equal and big.count_active == big.ours_states.get("active")
            rows.append(
                (
                    f"refresh at {big.size:,}: <= 0.25x the `$group` scan",
                    f"{fx(r)} ({ms(big.med('ours'))} ms vs {ms(big.med('group'))} ms, medians)",
                    _cmp(r, 0.25, at_most=True),
                )
            )
            rows.append(
                (
                    "exact state counts (ours == `$group`, and `count_active` == active)",
                    "equal at every size" if all(x.counts_equal for x in self.refresh) else "DIFFERENT",
                    all(x.counts_equal for x in self.refresh) and exact,
                )
            )
        if self.scrape:
            res = self.scrape.results
            for cond in ("idle", "refreshing"):
                ours = res.get(("ours", cond))
                for target, goal in (("stock", 1.0), ("mongodb_exporter", 10.0)):
                    other = res.get((target, cond))
                    if ours and other:
                        r = ratio(ours.rps, other.rps)
                        rows.append(
                            (
                                f"scrape throughput ({cond}) >= {goal:g}x {sc.LABELS[target]}",
                                f"{fx(r)} ({ours.rps:.0f} vs {other.rps:.0f} req/s)",
                                _cmp(r, goal, at_most=False),
                            )
                        )
                stock = res.get(("stock", cond))
                if ours and stock:
                    rows.append(
                        (
                            f"scrape p99 ({cond}) <= stock server's p99",
                            f"{ms(ours.p99)} ms vs {ms(stock.p99)} ms",
                            _cmp(ours.p99, stock.p99, at_most=True),
                        )
                    )
        if self.handlers:
            idle = self.handlers["idle"]
            r = ratio(idle["ours"].rate, idle["raw"].rate)
            rows.append(
                (
                    "`get_session` throughput >= 0.9x raw PyMongo",
                    f"{fx(r)} ({idle['ours'].rate:.0f} vs {idle['raw'].rate:.0f} ops/s)",
                    _cmp(r, 0.9, at_most=False),
                )
            )
            dup = sum(run.duplicates for cond in ("idle", "refreshing") for run in self.handlers[cond].values())
            rows.append(("zero duplicates (every run, both methods)", f"{dup} duplicates", dup == 0))
            busy = self.handlers["refreshing"]["ours"]
            r2 = ratio(busy.p99, idle["ours"].p99)
            rows.append(
                (
                    "`get_session` p99 during a refresh <= 1.5x p99 without",
                    f"{fx(r2)} ({ms(busy.p99)} ms vs {ms(idle['ours'].p99)} ms)",
                    _cmp(r2, 1.5, at_most=True),
                )
            )
        if self.footprint:
            fp = self.footprint
            end = fp.samples[-1][1] if fp.samples else float("nan")
            rows.append(
                (
                    f"RSS after {fp.minutes:g} min watching 20 pools < 80 MB",
                    f"{end:.1f} MiB (peak {fp.peak:.1f} MiB)",
                    _cmp(end * 2**20 / 1e6, 80, at_most=True),
                )
            )
            g = fp.growth_per_minute
            rows.append(
                (
                    "no RSS growth (slope over the second half of the run)",
                    "n/a" if g != g else f"{g:+.2f} MiB/min",
                    None if g != g else abs(g) < 0.5,
                )
            )
        return rows

    def _issue14_goals(self) -> list[tuple[str, str, bool | None]]:
        rows: list[tuple[str, str, bool | None]] = []
        if self.dbcost:
            for c in self.dbcost:
                if c.size < 1_000_000 and c is not self.dbcost[-1]:
                    continue
                rows.append(
                    (
                        f"mongod CPU per interval at {c.size:,} sessions <= 0.10x one `$group` scan",
                        f"{fx(c.ratio)} ({ms(c.per_interval)} ms = counts {ms(c.cpu_med('counts'))} ms"
                        f" + sums {ms(c.cpu_med('sums'))} ms / {c.per_sums:g}; scan {ms(c.cpu_med('group'))} ms)",
                        _cmp(c.ratio, 0.10, at_most=True),
                    )
                )
            exact = all(c.exact and c.sums_equal for c in self.dbcost)
            rows.append(
                (
                    "state counts, total and `count_active` of the refresh == the `$group` scan's; sums pass exact",
                    "equal at every size" if exact else "DIFFERENT",
                    exact,
                )
            )
        rows += self._scaling_goals()
        if self.many:
            m = self.many
            rows.append(
                (
                    f"{m.pools} pools ({m.configured} configured, the rest discovered): every one refreshed, none"
                    " skipped, none down",
                    f"{m.pools_seen} pools, {len(m.refreshes):,} refreshes, {m.skipped} skipped, {m.failures} down",
                    m.pools_seen == m.pools and m.skipped == 0 and m.failures == 0,
                )
            )
            rows.append((f"{m.pools} pools: RSS < 256 MiB", f"peak {m.peak:.1f} MiB", _cmp(m.peak, 256, at_most=True)))
            rows.append(
                (
                    f"{m.pools} pools: refresh start lag p99 (steady state) < 1 s",
                    f"p50 {m.stat('start', 50):.3f} s, p99 {m.stat('start', 99):.3f} s,"
                    f" max {m.stat('start', 100):.3f} s",
                    _cmp(m.stat("start", 99), 1.0, at_most=True),
                )
            )
            bound = MONGO_POOL + 2  # the shared client's pool and its two monitor connections
            rows.append(
                (
                    f"{m.pools} pools: connections to MongoDB <= the client's pool ({MONGO_POOL}) + its monitors",
                    f"at most {m.most_connections} (max_concurrent_refreshes {m.concurrency})",
                    0 <= m.most_connections <= bound,
                )
            )
            rows.append(
                (
                    f"{m.pools} pools: first round within one interval + the refreshes' time at that concurrency",
                    f"{m.discovered_after:.1f} s (bound {m.first_round_bound:.1f} s: {m.interval:g} s +"
                    f" {m.pools} x {ms(m.per_pool_refresh)} ms / {m.concurrency})",
                    _cmp(m.discovered_after, m.first_round_bound, at_most=True),
                )
            )
        return rows

    @property
    def scale_counts(self) -> list[int]:
        """Pool counts of the scaling runs."""
        return sorted({r.pools for r in self.scaling or []})

    def headlines(self) -> list[str]:
        """One line per goal, for the console."""
        return [f"{goal}: {measured} -> {_ok(met).strip('*')}" for goal, measured, met in self.goals()]

    # -- rendering ------------------------------------------------------------------------------

    def render(self) -> str:
        """The whole markdown document."""
        out: list[str] = []
        w = out.append
        w("# Benchmarks\n")
        where = (
            f"a real `mongod` (single-node replica set) whose data is kept in `{self.dbpath}`"
            if self.dbpath
            else "a throwaway real `mongod` (single-node replica set)"
        )
        w(
            f"Generated by `bench/` in one run on {where}."
            " Every figure below was measured in that run; nothing is copied from elsewhere.\n"
        )
        if self.quick:
            w("> **Quick (smoke) run**: tiny pools and runs of a second; the figures are not meaningful.\n")
        w(f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; run time {self.seconds / 60:.1f} min")
        w(f"- Reproduce: `.venv/bin/{self.command}`")
        w(
            "- Sections: `--only dbcost,refresh,scrape,scaling,manypools,handlers,footprint` (any subset);"
            " `--dbpath DIR` keeps the data between runs (a pool already seeded with its size is reused, its"
            " holds moved to start now); `python -m bench --help` lists every option.\n"
        )
        w("## Machine\n")
        w("| | |\n| --- | --- |")
        m = self.machine
        for key, label in (
            ("cpu", "CPU"),
            ("cores", "Cores"),
            ("ram_gb", "RAM (GiB)"),
            ("os", "OS"),
            ("mongod", "mongod"),
            ("python", "Python"),
            ("pymongo", "PyMongo"),
            ("prometheus_client", "prometheus-client"),
            ("wrk", "wrk"),
            ("mongodb_exporter", "prometheus-mongodb-exporter"),
            ("load_before", "load average (1/5/15 min) at the start"),
            ("load_after", "load average (1/5/15 min) at the end"),
        ):
            w(f"| {label} | {m.get(key) if m.get(key) is not None else 'not installed'} |")
        w(
            "\nEverything (mongod, the exporter, the baselines, the load generators) shares these cores,"
            " as a sidecar would share a small node.\n"
        )
        w("## Goals\n")
        w("| goal | measured | verdict |\n| --- | --- | --- |")
        for goal, measured, met in self.goals():
            w(f"| {goal} | {measured} | {_ok(met)} |")
        w("")
        self._seed_section(w)
        if self.dbcost:
            self._dbcost_section(w)
        if self.scaling:
            self._scaling_section(w)
        if self.many:
            self._many_section(w)
        if self.refresh:
            self._refresh_section(w)
        if self.scrape:
            self._scrape_section(w)
        if self.handlers:
            self._handler_section(w)
        if self.footprint:
            self._footprint_section(w)
        not_run = [
            name
            for name, value in (
                ("dbcost", self.dbcost),
                ("scaling", self.scaling),
                ("manypools", self.many),
                ("refresh", self.refresh),
                ("scrape", self.scrape),
                ("handlers", self.handlers),
                ("footprint", self.footprint),
            )
            if not value
        ]
        if not_run:
            w(f"## Not run\n\n{', '.join(not_run)} (excluded with `--only`).\n")
        return "\n".join(out) + "\n"

    def _seed_section(self, w: Any) -> None:
        w("## Data\n")
        mix = ", ".join(f"{name} {share:.0%}" for name, share in MIX)
        w(
            f"Each pool is seeded with `insert_many` in batches of 10 000, then given the two indexes"
            f" `MongoSessions.connect()` creates. Mix: {mix}, the rest active; {LEGACY_SHARE:.0%} of the"
            " documents are legacy (written by the original library: no hold marker, a quarter of those without"
            " `active`, which the state rules count as inactive). Holds are set hours ahead so the mix cannot"
            " drift during the run.\n"
        )
        if self.seeds:
            w("| pool | sessions | seeded in (s) | " + " | ".join(str(s) for s in STATES) + " |")
            w("| --- | --- | --- |" + " --- |" * len(STATES))
            for s in self.seeds:
                seeded = f"{s.seconds:.1f}" + (
                    f" (earlier run; reused, {s.shifted:,} holds moved in {s.shift_seconds:.1f} s)" if s.reused else ""
                )
                w(
                    f"| `{s.collection}` | {s.size:,} | {seeded} | "
                    + " | ".join(f"{s.expected[str(st)]:,}" for st in STATES)
                    + " |"
                )
            w("")

    def _dbcost_section(self, w: Any) -> None:
        assert self.dbcost is not None
        first = self.dbcost[0]
        w("## Issue 14, goal 1: database cost (mongod CPU)\n")
        w(
            "mongod's own CPU time (utime + stime of its process, `/proc/<pid>/stat`, net of its idle rate measured"
            " just before) per call, the median of repeated batches (methods interleaved, one warm-up each; a batch"
            " lasts about a second of wall time, so small pools run many calls per batch and the clock tick does"
            " not matter). CPU time is what the monitored database pays; it barely depends on other load on the"
            " machine, wall time does. *counts* is exactly what the daemon runs every interval"
            " (`exporter.collector.refresh`:"
            " held and inactive sessions from the index, the total from `$collStats`; `count_active` derived from"
            " the same snapshot); *sums* is its slower job (`exporter.collector.sums`: `aggregate_sums()`, one pass"
            f" over every document) every `sums_interval` ({first.sums_interval:g} s by default), that is once per"
            f" {first.per_sums:g} intervals of {first.interval:g} s. Per interval = counts + sums / {first.per_sums:g}."
            " The `$group` scan classifies every document into the five states with the same rules, with the sums"
            " and the two key times (the old statistics).\n"
        )
        w(
            "| sessions | `$group` scan CPU (ms) | refresh CPU: counts (ms) | sums pass CPU (ms) |"
            " per interval, amortized (ms) | vs scan (goal <= 0.10x) | counts alone vs scan |"
            " refresh wall (ms, median) | sums wall (ms) | scan wall (ms) | reps x calls (scan/counts/sums) |"
            " mongod idle (ms/s) |"
        )
        w("| --- |" + " --- |" * 11)
        for c in self.dbcost:
            calls = "/".join(str(c.calls.get(m, 0)) for m in dc.METHODS)
            w(
                f"| {c.size:,} | {ms(c.cpu_med('group'))} | {ms(c.cpu_med('counts'))} | {ms(c.cpu_med('sums'))} |"
                f" {ms(c.per_interval)} | {fx(c.ratio)} | {fx(ratio(c.cpu_med('counts'), c.cpu_med('group')))} |"
                f" {ms(c.wall_med('counts'))} | {ms(c.wall_med('sums'))} | {ms(c.wall_med('group'))} |"
                f" {len(c.cpu.get('group', []))} x {calls} | {c.idle_rate * 1000:.1f} |"
            )
        w("")
        if len(self.dbcost) > 1:
            w("Growth (median CPU ratio between consecutive sizes):\n")
            w("| from -> to | size x | scan | counts | sums |\n| --- | --- | --- | --- | --- |")
            for a, b in zip(self.dbcost, self.dbcost[1:], strict=False):
                w(
                    f"| {a.size:,} -> {b.size:,} | {b.size / a.size:g}x | "
                    + " | ".join(fx(ratio(b.cpu_med(m), a.cpu_med(m))) for m in dc.METHODS)
                    + " |"
                )
            w("")
        w("Exactness, the daemon's counts against the `$group` scan at the same instant:\n")
        w("| sessions | " + " | ".join(str(st) for st in STATES) + " | `count_active` | total | sums pass | equal |")
        w("| --- |" + " --- |" * (len(STATES) + 4))
        for c in self.dbcost:
            cells = " | ".join(
                f"{c.ours_states.get(str(st), 0):,}"
                + (
                    ""
                    if c.ours_states.get(str(st)) == c.group_states.get(str(st))
                    else f" (scan {c.group_states.get(str(st), 0):,})"
                )
                for st in STATES
            )
            w(
                f"| {c.size:,} | {cells} | {c.count_active:,} | {_yes(c.total_equal)} | {_yes(c.sums_equal)} |"
                f" {_yes(c.exact and c.sums_equal)} |"
            )
        w("")
        w("### Where the per-interval CPU goes\n")
        w(
            "Each part of the per-interval pipeline run alone (mongod CPU per call, median of 3 batches; the parts"
            " after the first run as a `$unionWith` behind a match on no document, as in the pipeline). Run as"
            " separate commands, with fewer repetitions, they need not add up to the pipeline's own figure above;"
            " their shares are the profile:\n"
        )
        names = list(first.parts)
        w("| sessions | " + " | ".join(names) + " | sum of parts | held + inactive sessions |")
        w("| --- |" + " --- |" * (len(names) + 2))
        for c in self.dbcost:
            held = sum(c.ours_states.get(k, 0) for k in ("in_use", "locked", "blocked"))
            inactive = c.ours_states.get("inactive", 0)
            w(
                f"| {c.size:,} | "
                + " | ".join(f"{ms(c.parts.get(n, math.nan))} ms" for n in names)
                + f" | {ms(sum(c.parts.values()))} ms | {held + inactive:,} ({ratio(held + inactive, c.size):.0%}) |"
            )
        w("")
        big = next((c for c in self.dbcost if c.size >= 1_000_000), self.dbcost[-1])
        w(_cost_explanation(big))

    def _scale_by(self) -> dict[tuple[int, str, bool, int], WrkResult]:
        return {(r.pools, r.server, r.gzip, r.connections): r.result for r in self.scaling or []}

    def _scaling_goals(self) -> list[tuple[str, str, bool | None]]:
        rows: list[tuple[str, str, bool | None]] = []
        if not self.scaling:
            return rows
        by = self._scale_by()
        first, last = self.scale_counts[0], self.scale_counts[-1]
        most = max(r.connections for r in self.scaling)
        fewest = min(r.connections for r in self.scaling)
        ours, stock = by.get((first, "ours", False, most)), by.get((first, "stock", False, most))
        if ours and stock:
            r = ratio(ours.rps, stock.rps)
            rows.append(
                (
                    f"/metrics req/s at {first} pools, {most} connections >= 10x the stock server's (same registry)",
                    f"{fx(r)} ({ours.rps:.0f} vs {stock.rps:.0f} req/s)",
                    _cmp(r, 10, at_most=False),
                )
            )
        for gz in (False, True):
            o = by.get((first, "ours", gz, most))
            if o:
                rows.append(
                    (
                        f"/metrics p99 at {first} pools{' (gzip)' if gz else ''} < 10 ms",
                        f"{ms(o.p99)} ms",
                        _cmp(o.p99, 0.010, at_most=True),
                    )
                )
        ours, stock = by.get((last, "ours", True, fewest)), by.get((last, "stock", True, fewest))
        if ours and stock:
            r = ratio(ours.rps, stock.rps)
            where = f"{last} pools, gzip, {fewest} connections, pools refreshing"
            rows.append((f"/metrics p99 at {where} < 10 ms", f"{ms(ours.p99)} ms", _cmp(ours.p99, 0.010, at_most=True)))
            rows.append(
                (
                    f"/metrics req/s at {where} >= 10x the stock server's",
                    f"{fx(r)} ({ours.rps:.0f} vs {stock.rps:.0f} req/s)",
                    _cmp(r, 10, at_most=False),
                )
            )
        worst = max((r for r in self.scaling if r.server == "ours"), key=lambda r: r.result.p99)
        rows.append(
            (
                "/metrics p99 < 10 ms at every pool count (" + ", ".join(str(n) for n in self.scale_counts) + ")",
                f"worst {ms(worst.result.p99)} ms ({worst.pools} pools, {worst.connections} connections"
                f"{', gzip' if worst.gzip else ''})",
                all(r.result.p99 < 0.010 for r in self.scaling if r.server == "ours"),
            )
        )
        return rows

    def _scaling_section(self, w: Any) -> None:
        assert self.scaling is not None
        w("## Issue 14, goal 2: /metrics as pools grow\n")
        w(
            "`wrk -t2 -cC --latency` (10 s unless `--wrk-seconds`; C connections, `--scale-connections`) against"
            " `/metrics` of a process holding the daemon's registry with N pools filled with a successful refresh"
            " and sums pass (`bench/synthetic.py`: no MongoDB, so only serving is measured), while a task in that"
            " process refreshes every pool once per `--scale-refresh-interval` seconds (new figures, its counter,"
            " `changed(pool)`: at 1000 pools and 15 s, one pool every 15 ms): *ours* is the daemon's own uvicorn"
            " server; *stock* is `prometheus_client.start_http_server` on the same registry. *gzip* adds"
            " `-H 'Accept-Encoding: gzip'` (both servers compress then). wrk runs on the same two cores.\n"
        )
        w(
            "| pools | connections | encoding | ours req/s | ours p50 (ms) | ours p99 (ms) | stock req/s |"
            " stock p99 (ms) | ours vs stock | body (bytes) | errors |"
        )
        w("| --- |" + " --- |" * 10)
        by = self._scale_by()
        conns = sorted({r.connections for r in self.scaling})
        for n in self.scale_counts:
            for c in conns:
                for gz in (False, True):
                    o, st = by.get((n, "ours", gz, c)), by.get((n, "stock", gz, c))
                    if o is None:
                        continue
                    w(
                        f"| {n:,} | {c} | {'gzip' if gz else 'identity'} | {o.rps:.0f} | {ms(o.p50)} | {ms(o.p99)} |"
                        f" {st.rps if st else math.nan:.0f} | {ms(st.p99) if st else 'n/a'} |"
                        f" {fx(ratio(o.rps, st.rps)) if st else 'n/a'} | {o.body_bytes:,} |"
                        f" {o.errors + (st.errors if st else 0)} |"
                    )
        w("")
        lines = []
        for n in self.scale_counts:
            row = next((r for r in self.scaling if r.pools == n and r.server == "ours"), None)
            if row is None:
                continue
            plain = next((r.render for r in self.scaling if r.pools == n and not r.gzip), math.nan)
            packed = next((r.render for r in self.scaling if r.pools == n and r.gzip), math.nan)
            one, daemon, whole = row.passes
            lines.append(f"| {n:,} | {ms(plain)} | {ms(packed)} | {ms(one)} | {ms(daemon)} | {ms(whole)} |")
        if lines:
            w(
                "In-process, median of several: *whole rendering* is prometheus_client's `generate_latest` of the"
                " registry (what the stock server does on every scrape; + gzip: with `gzip.compress`); *pass after"
                " one change* is what ours does after a pool's refresh (that pool rendered in the format served,"
                " its group's pieces re-joined and re-compressed, the gzip answer joined), steps"
                " summed; *daemon families* is the part rendered by prometheus_client at most once a second or per"
                " change (process, GC, platform, build and shard info, MongoDB, connections, clocks); *first pass*"
                " renders every pool (once per content type, at start, made aside in steps).\n"
            )
            w(
                "| pools | whole rendering (ms) | + gzip (ms) | pass after one change (ms) | daemon families (ms) |"
                " first pass (ms) |"
            )
            w("| --- |" + " --- |" * 5)
            for line in lines:
                w(line)
            w("")
        w(
            "The stock server renders every series on every request. Ours serves stored bytes. Each pool's series"
            " are rendered apart (`exporter/pieces.py`, by prometheus_client's own encoder, so the lines are its"
            " lines) and kept per family and group of 32 pools; a refresh, a sums pass, an admin action or the pool"
            " going stale re-renders that pool only, re-joins its group's pieces and re-compresses them (each piece"
            " a raw deflate stream ended by a sync flush: concatenated between one gzip header and trailer, with"
            " the CRC-32 of the plain body, they are one valid gzip member; pieces compressed apart make the gzip"
            " answer somewhat larger than one `gzip.compress` of the whole, see *body*). The daemon's own families"
            " are rendered by prometheus_client at most once a second. With more than 64 pools a pass is made aside"
            " on the event loop in steps of at most 2 ms while scrapes get the previous bytes (a scrape never waits"
            " for a rendering), its own cost (daemon part, joins, CRC) at most 5 % of the time.\n"
        )

    def _many_section(self, w: Any) -> None:
        assert self.many is not None
        m = self.many
        w("## Many pools on one daemon\n")
        w(
            f"{m.pools} collections of {m.sessions} sessions each (same mix; seeded in {m.seed_seconds:.1f} s) in their"
            f" own database, {m.configured} listed in the config and the rest found by one discovery source"
            f" (`include: [many_*]`); a real daemon (`build` + its"
            f" uvicorn server, in a probe process: `python -m bench.manypools`) watches them for {m.minutes:g} min"
            f" with interval {m.interval:g} s, the default jitter and sums_interval, max_concurrent_refreshes"
            f" {m.concurrency}. The probe listens to the scheduler: each refresh's *start lag* is when its read"
            " began (after waiting for a slot) minus when the scheduler had it due; *end lag* is when it finished"
            " minus when it was due. RSS of the probe process read with psutil every second.\n"
        )
        w("| | all refreshes | steady state (after 2 intervals) |\n| --- | --- | --- |")
        for key, label in (("start", "start lag"), ("end", "end lag")):
            for q, qn in ((50, "p50"), (99, "p99"), (100, "max")):
                w(f"| {label} {qn} (s) | {m.stat(key, q, steady=False):.3f} | {m.stat(key, q):.3f} |")
        w(f"| refreshes recorded | {len(m.refreshes):,} | {len(m.lags('start', steady=True)):,} |")
        w("")
        w("| | |\n| --- | --- |")
        w(f"| pools watched (configured + discovered) | {m.pools_seen} |")
        w(f"| start to every pool refreshed once | {m.discovered_after:.1f} s (bound {m.first_round_bound:.1f} s) |")
        w(f"| connections to mongod (the daemon's appName, monitors included), most at once | {m.most_connections} |")
        w(f"| median refresh duration (slot held) | {ms(m.per_pool_refresh)} ms |")
        w(f"| refreshes skipped (previous one still running) / pools down at the end | {m.skipped} / {m.failures} |")
        start = m.samples[0][1] if m.samples else math.nan
        w(f"| RSS first sample / end / peak (MiB) | {start:.1f} / {m.end_rss:.1f} / {m.peak:.1f} |")
        w(f"| the daemon's CPU in steady state (share of one core) | {m.steady_cpu:.0%} |")
        w(f"| state history kept per pool (points: an hour at the interval) | {m.history_points} |")
        first = m.scrapes[0][1] if m.scrapes else math.nan
        w(
            f"| scrapes of `/metrics` every interval (gzip, Prometheus' Accept): count; the first (it waits for the"
            f" first whole rendering), ms; the others p50 / max (ms); size (KiB) | {len(m.scrapes)}; {ms(first)};"
            f" {ms(m.scrape_stat(50))} / {ms(m.scrape_stat(100))}; {m.scrape_size / 1024:.0f} |"
        )
        w(
            f"| full garbage collections in the probe before the heap was frozen at {m.frozen_at:.1f} s (its own"
            f" included) / after: count, longest (ms) | {len(m.pauses(after=False))},"
            f" {ms(max(m.pauses(after=False), default=0.0))} / {len(m.pauses(after=True))},"
            f" {ms(max(m.pauses(after=True), default=0.0))} |\n"
        )
        w(
            "What keeps these figures down at this size: a statistics read takes the primary's clock from the"
            " driver's recent heartbeat (one round trip, not two); after its first run each pool's refresh moves to"
            " a random point of its interval, so thousands of pools do not fall due in the same second; a pool's"
            " first refresh takes a slot before any later refresh or sums pass; a pool's hour of state counts is kept"
            " in arrays (28 bytes a point); per-pool counters are one dict each; and once the start-up round is"
            " refreshed the daemon freezes its heap (`gc.freeze`), so full collections no longer walk every pool's"
            " long-lived objects. The probe copies an hour of state history into each pool at its first refresh, so"
            " RSS is that of a daemon that has run an hour; Prometheus' scrape runs every interval throughout. The"
            " first scrape of a content type waits for its first whole rendering, made while the start-up round"
            " still runs; later ones get the stored bytes while changed pools are rendered aside.\n"
        )

    def _refresh_section(self, w: Any) -> None:
        assert self.refresh is not None
        w("## 1. Refresh cost\n")
        w(
            "Wall time of one refresh from the client, repeated (methods interleaved, one warm-up each)."
            " `ours` is exactly what the daemon runs per interval (`exporter.collector.refresh`). Baseline (a) is the"
            " original library's `aggregate_statistics` (4 `count_documents` with `gather`; its counts are"
            " not the five states). Baseline (b) is one `$group` over the collection classifying every"
            " document into the five states with the same rules, plus the sums and the two key times.\n"
        )
        w("| sessions | method | runs | median (ms) | p95 (ms) | vs `$group` | vs original |")
        w("| --- | --- | --- | --- | --- | --- | --- |")
        for r in self.refresh:
            for method in rf.METHODS:
                w(
                    f"| {r.size:,} | {rf.LABELS[method]} | {len(r.times[method])} | {ms(r.med(method))} |"
                    f" {ms(r.p95(method))} | {fx(ratio(r.med(method), r.med('group')))} |"
                    f" {fx(ratio(r.med(method), r.med('original')))} |"
                )
        w("")
        if len(self.refresh) > 1:
            w("Growth with size (median time ratio between consecutive sizes):\n")
            w("| from -> to | size x | " + " | ".join(f"`{m}`" for m in rf.METHODS) + " |")
            w("| --- | --- |" + " --- |" * len(rf.METHODS))
            for a, b in zip(self.refresh, self.refresh[1:], strict=False):
                w(
                    f"| {a.size:,} -> {b.size:,} | {b.size / a.size:g}x | "
                    + " | ".join(fx(ratio(b.med(m), a.med(m))) for m in rf.METHODS)
                    + " |"
                )
            w("")
        w("State counts, ours against the `$group` scan at the same instant (and the seeded mix):\n")
        w("| sessions | state | seeded | ours | `$group` | equal |\n| --- | --- | --- | --- | --- | --- |")
        for r in self.refresh:
            for st in STATES:
                k = str(st)
                w(
                    f"| {r.size:,} | {k} | {r.seeded_states.get(k, 0):,} | {r.ours_states.get(k, 0):,} |"
                    f" {r.group_states.get(k, 0):,} | {_yes(r.ours_states.get(k) == r.group_states.get(k))} |"
                )
            w(
                f"| {r.size:,} | `count_active()` | | {r.count_active:,} | | "
                f"{'yes' if r.count_active == r.group_states.get('active') else 'NO'} |"
            )
        w("")
        sums = all(r.sums_equal for r in self.refresh)
        times = all(r.times_equal for r in self.refresh)
        w(
            f"Sums of `count_use`/`count_success` equal: {'yes' if sums else 'NO'};"
            f" next unlock and oldest active `last_use` equal: {'yes' if times else 'NO'}.\n"
        )
        big = self.refresh[-1]
        w(f"### Profile at {big.size:,} sessions\n")
        w("Winning plans (`explain`, executionStats), one per pipeline branch, innermost stage last:\n")
        for key in ("ours", "group", "count_active"):
            w(f"- `{key}`: {big.plans.get(key, 'n/a')}")
        keys, docs = big.count_active_examined
        held_keys, held_docs = big.held_examined
        held = sum(big.ours_states.get(k, 0) for k in ("in_use", "locked", "blocked"))
        w(
            f"- the held sessions' counts (the first stages of `ours`) examined {held_keys:,} index keys for"
            f" {held:,} held sessions and fetched {held_docs:,} documents;"
        )
        w(f"- `count_active()` examined {keys:,} index keys and fetched {docs:,} documents.\n")
        w(
            f"The daemon runs one aggregation per refresh: {ms(big.med('ours'))} ms at {big.size:,} sessions,"
            f" {fx(ratio(big.med('ours'), big.med('group')))} the `$group` scan. Its state counts cost what the"
            " held and inactive sessions cost (index keys only), and `count_active` comes from the same snapshot"
            " (total minus inactive minus held; the total from `$collStats`), so the separate `count_active()` and"
            " `aggregate_statistics()` rows are for callers, not the daemon, whose sums pass runs on its own slower"
            " cadence (its mongod CPU is in the database cost section). Wall time here is the client's view and"
            " depends on the machine's load; the database cost section measures mongod's CPU instead.\n"
        )

    def _scrape_section(self, w: Any) -> None:
        assert self.scrape is not None
        w("## 2. Scrape\n")
        w(
            "`wrk -t2 -c16 --latency` against `/metrics` of each server, 20 pools (one of them the largest"
            " pool, 19 small). (a) runs the daemon's own `Collector` and `Metrics` in a process served by"
            " `prometheus_client.start_http_server`, so both expose the same registry. (b) is Debian's"
            " `prometheus-mongodb-exporter` with database and collection metrics on, scraping the same mongod."
            " *refreshing*: the largest pool refreshes back to back inside the exporter under test (for (b),"
            " in a separate client loop against the same mongod).\n"
        )
        w("| server | condition | req/s | p50 (ms) | p99 (ms) | body (bytes) | ours vs it (req/s) | errors |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- |")
        res = self.scrape.results
        for cond in ("idle", "refreshing"):
            ours = res.get(("ours", cond))
            for target in sc.TARGETS:
                r = res.get((target, cond))
                if r is None:
                    continue
                rel = fx(ratio(ours.rps, r.rps)) if ours else "n/a"
                w(
                    f"| {sc.LABELS[target]} | {cond} | {r.rps:.0f} | {ms(r.p50)} | {ms(r.p99)} | {r.body_bytes:,} |"
                    f" {rel} | {r.errors} |"
                )
        w("")
        if self.scrape.refreshes_during:
            w(
                "Refreshes completed during the *refreshing* wrk runs: "
                + ", ".join(f"{k}: {v}" for k, v in self.scrape.refreshes_during.items())
                + ".\n"
            )
        for note in self.scrape.notes:
            w(f"- {note}")
        if self.scrape.notes:
            w("")

    def _handler_section(self, w: Any) -> None:
        assert self.handlers is not None
        w("## 3. Handlers\n")
        w(
            f"64 asyncio callers in one process share one `AsyncMongoClient` and take sessions from a pool of"
            f" {self.handler_pool:,} (seeded with the same mix) for timed rounds, raw and ours alternating."
            " Raw is `find_one_and_update` with the very filter, sort, pipeline update, projection and"
            " `ReturnDocument.BEFORE` that `get_session` sends. Each taken session is held for an hour, so"
            " an id returned twice within a round is a duplicate; every round (and each warm-up) starts on a"
            " freshly seeded pool, so both methods meet the same documents. *refreshing*: a real"
            " `session-pool-exporter run` subprocess refreshes the largest pool back to back meanwhile.\n"
        )
        w("| condition | method | ops | ops/s | p50 (ms) | p99 (ms) | none free | duplicates | ours vs raw |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for cond in ("idle", "refreshing"):
            runs = self.handlers.get(cond, {})
            for name in ("raw", "ours"):
                r = runs.get(name)
                if r is None:
                    continue
                rel = fx(ratio(runs["ours"].rate, runs["raw"].rate)) if name == "ours" else ""
                w(
                    f"| {cond} | {'raw PyMongo' if name == 'raw' else '`get_session`'} | {r.ops:,} | {r.rate:.0f} |"
                    f" {ms(r.p50)} | {ms(r.p99)} | {r.empty} | {r.duplicates} | {rel} |"
                )
        w("")
        idle, busy = self.handlers["idle"], self.handlers["refreshing"]
        fresh = idle["raw"].keys_after[0] if idle["raw"].keys_after else None
        after = [k for r in idle.values() for k in r.keys_after[1 if r is idle["raw"] else 0 :]]
        if fresh is not None and after:
            w(
                f"Index keys the next `get_session` examines (`explain`): {fresh:,} on a fresh pool, "
                f"{min(after):,}-{max(after):,} after a round. Taking a session moves it to the end of the"
                " `last_use` order; locked and blocked sessions stay where they are, so the head of the order"
                " fills with held sessions every call must step over (the index filters them on `next_use`"
                " without fetching, but the scan grows with them).\n"
            )
        count = self.handlers.get("_refreshes", {}).get("count")
        w(
            f"p99 during the refresh loop against p99 without: ours {fx(ratio(busy['ours'].p99, idle['ours'].p99))},"
            f" raw {fx(ratio(busy['raw'].p99, idle['raw'].p99))}"
            + (f"; the daemon completed {count.ops} refreshes meanwhile." if count else ".")
            + "\n"
        )

    def _footprint_section(self, w: Any) -> None:
        assert self.footprint is not None
        fp = self.footprint
        w("## 4. Footprint\n")
        w(
            f"A real `session-pool-exporter run` subprocess watching the same 20 pools (interval"
            f" {self.footprint_interval:g} s) for {fp.minutes:g} min; RSS read with psutil.\n"
        )
        w("| | |\n| --- | --- |")
        w(f"| start to first successful refresh (first `pool_up` log line) | {fp.first_refresh:.2f} s |")
        w(f"| start to `/readyz` 200 (all 20 pools refreshed) | {fp.all_refreshed:.2f} s |")
        start = fp.samples[0][1] if fp.samples else math.nan
        end = fp.samples[-1][1] if fp.samples else math.nan
        w(
            "| RSS first sample / at half time / at the end / peak (MiB) |"
            f" {start:.1f} / {fp.rss_at(0.5):.1f} / {end:.1f} / {fp.peak:.1f} |"
        )
        w(f"| RSS slope over the second half | {fp.growth_per_minute:+.3f} MiB/min |")
        w(f"| refreshes / failures | {fp.refreshes} / {fp.failures} |\n")
        if fp.samples:
            step = max(1, len(fp.samples) // 12)
            picked = fp.samples[::step]
            if picked[-1] != fp.samples[-1]:
                picked.append(fp.samples[-1])
            w("RSS over time: " + ", ".join(f"{t:.0f} s: {v:.1f} MiB" for t, v in picked) + ".\n")


def _count_cell(c: dc.CostResult, state: str) -> str:
    """The daemon's count of a state, with the scan's beside it when they differ."""
    ours, scan = c.ours_states.get(state, 0), c.group_states.get(state, 0)
    return f"{ours:,}" if ours == scan else f"{ours:,} (scan {scan:,})"


def _cost_explanation(c: dc.CostResult) -> str:
    """Why the per-interval cost is what it is, from the measured parts, and what 0.10x would take."""
    held = sum(c.ours_states.get(k, 0) for k in ("in_use", "locked", "blocked"))
    inactive = c.ours_states.get("inactive", 0)
    scan = c.cpu_med("group")
    by_keys = sum(v for k, v in c.parts.items() if k in dc.PARTS[:3])  # held, inactive, deactivated: index keys
    fixed = sum(v for k, v in c.parts.items() if k not in dc.PARTS[:3])
    per_key = ratio(by_keys, held + inactive)
    budget = 0.10 * scan - c.cpu_med("sums") / c.per_sums - fixed
    keys = budget / per_key if per_key == per_key and per_key > 0 else math.nan
    share = ratio(keys, c.size)
    text = (
        f"At {c.size:,} sessions the counts cost {fx(ratio(c.cpu_med('counts'), scan))} of a scan and the"
        f" amortized sums pass adds {fx(ratio(c.cpu_med('sums') / c.per_sums, scan))}: {fx(c.ratio)} per interval."
        f" The counts read index keys only (no document) of the {held:,} held and {inactive:,} inactive sessions"
        f" ({ratio(held + inactive, c.size):.0%} of this pool); the held sessions' classification is the largest"
        f" part ({ms(c.parts.get(dc.PARTS[0], math.nan))} ms), and the parts read by key come to"
        f" {per_key * 1e6:.2f} µs of mongod CPU per held or inactive session."
    )
    if c.ratio == c.ratio and c.ratio > 0.10:
        room = (
            f" At that measured cost per key, 0.10x leaves room for about {keys:,.0f} held and inactive sessions"
            f" ({share:.0%} of the pool) after the amortized sums and the fixed parts (an estimate from these"
            " figures, not a measurement)."
            if keys == keys and keys > 0
            else " At this size the amortized sums and the fixed parts (total, oldest) alone exceed 0.10x."
        )
        text += (
            " **The 0.10x goal is missed for this mix.**" + room + " Below the floor of"
            " the held-session classification, only counts maintained by the writers themselves (a counter"
            " document changed with every hold) would go; the original library's workers, which keep writing to"
            " the same collections during a migration, would not maintain them, so this is not done."
        )
    return text + "\n"
