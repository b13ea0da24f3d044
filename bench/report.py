"""The markdown report: machine, command, every figure, the ratios and each goal's verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench import refresh as rf
from bench import scrape as sc
from bench.common import LEGACY_SHARE, MIX, SeedResult, fx, ms, ratio
from bench.footprint import FootprintResult
from bench.handlers import Run
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

    # -- goals ----------------------------------------------------------------------------------

    def goals(self) -> list[tuple[str, str, bool | None]]:
        """(goal, measured, met) rows."""
        rows: list[tuple[str, str, bool | None]] = []
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

    def headlines(self) -> list[str]:
        """One line per goal, for the console."""
        return [f"{goal}: {measured} -> {_ok(met).strip('*')}" for goal, measured, met in self.goals()]

    # -- rendering ------------------------------------------------------------------------------

    def render(self) -> str:
        """The whole markdown document."""
        out: list[str] = []
        w = out.append
        w("# Benchmarks\n")
        w(
            "Generated by `bench/` in one run on a throwaway real `mongod` (single-node replica set)."
            " Every figure below was measured in that run; nothing is copied from elsewhere.\n"
        )
        if self.quick:
            w("> **Quick (smoke) run**: tiny pools and runs of a second; the figures are not meaningful.\n")
        w(f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; run time {self.seconds / 60:.1f} min")
        w(f"- Reproduce: `.venv/bin/{self.command}`\n")
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
                w(
                    f"| `{s.collection}` | {s.size:,} | {s.seconds:.1f} | "
                    + " | ".join(f"{s.expected[str(st)]:,}" for st in STATES)
                    + " |"
                )
            w("")

    def _refresh_section(self, w: Any) -> None:
        assert self.refresh is not None
        w("## 1. Refresh cost\n")
        w(
            "Wall time of one refresh from the client, repeated (methods interleaved, one warm-up each)."
            " `ours` is exactly what the daemon runs per interval (`Collector._fetch`). Baseline (a) is the"
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
            " (total minus inactive minus held), so the separate `count_active()` row is for callers, not the"
            " daemon. The floor is the one `$group` pass that sums `count_use`/`count_success` over every"
            " document.\n"
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
