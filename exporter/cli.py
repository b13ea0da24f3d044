"""Command line: `session-pool-exporter [run] | check-config | doctor | demo`, `--version`, `--help`."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import gc
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pymongo

from exporter import __version__
from exporter.assembly import build
from exporter.config import (
    ADMIN_TOKEN_ENV,
    DEFAULT_LISTEN,
    ENV_PREFIX,
    Config,
    ConfigError,
    config_warnings,
    load_config,
)
from exporter.exits import EXIT_CONFIG, EXIT_LISTEN
from exporter.listeners import ListenError
from exporter.log import get_logger, setup_logging

SUBCOMMANDS = ("run", "check-config", "doctor", "demo")

log = get_logger("exporter")

_EPILOG = f"""\
Precedence: flags > environment > YAML file > built-in defaults.
Environment: {ENV_PREFIX}<SECTION>__<KEY>, e.g. {ENV_PREFIX}MONGODB__URI,
{ENV_PREFIX}DEFAULTS__INTERVAL=30, {ENV_PREFIX}LISTEN=127.0.0.1:9810;
{ADMIN_TOKEN_ENV} adds an admin API token named 'admin' with role write.
Prefer the environment or mongodb.uri_file for a URI with a password: flags show up in `ps`.
Commands: run (default) serves /metrics, /healthz, /readyz; check-config validates and exits
(0 ok, {EXIT_CONFIG} invalid); demo starts a throwaway mongod with simulated handlers.
"""


def _config_options(parser: argparse.ArgumentParser) -> None:
    """Add the configuration options shared by run and check-config."""
    g = parser.add_argument_group("configuration (override the YAML file and the environment)")
    g.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="YAML config file (docs/configuration.md; every key: docs/reference/configuration.md)",
    )
    g.add_argument(
        "--mongo-uri", metavar="URI", help="MongoDB connection string (mongodb.uri); secret: prefer the env var"
    )
    g.add_argument("--database", metavar="DB", help="database of the single pool (quick single-pool mode)")
    g.add_argument("--collection", metavar="C", help="collection of the single pool (quick single-pool mode)")
    g.add_argument("--pool-name", metavar="NAME", help="pool label of the single pool (default: the collection name)")
    g.add_argument("--interval", metavar="S", type=float, help="seconds between refreshes, for every pool (default 15)")
    g.add_argument("--listen", metavar="HOST:PORT", help=f"HTTP listen address (default {DEFAULT_LISTEN})")
    g.add_argument(
        "--log-level", metavar="L", choices=["debug", "info", "warning", "error", "critical"],
        help="debug, info (default), warning, error or critical",
    )  # fmt: skip
    g.add_argument(
        "--log-format", metavar="F", choices=["auto", "json", "console"],
        help="auto (default: json unless stderr is a terminal), json or console",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its three commands."""
    parser = argparse.ArgumentParser(
        prog="session-pool-exporter",
        description="Prometheus exporter and admin API for MongoDB-backed session pools.",
        epilog=_EPILOG + "Options of run and check-config (see `session-pool-exporter run --help`): --config FILE,\n"
        "--mongo-uri URI, --database DB, --collection C, --pool-name NAME, --interval S,\n"
        "--listen HOST:PORT, --log-level L, --log-format F. Without a command, `run` is assumed.\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run", help="run the exporter (default command)", epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    _config_options(run)
    run.set_defaults(parser=run)
    check = sub.add_parser(
        "check-config",
        help=f"validate the configuration, list every problem, exit {EXIT_CONFIG} if any",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_options(check)
    check.set_defaults(parser=check)
    doctor = sub.add_parser(
        "doctor",
        help="check, read-only, everything the daemon relies on (server, rights, indexes, documents, time)",
        description="Connect with the configuration `run` would use and check what the daemon relies on: the\n"
        "server, and per pool the user's rights, indexes and query plans, odd documents, the stored time\n"
        "zone and the cost of a refresh. One line per finding: ok, warn or error, what was found, what to\n"
        f"do. Exit 0 all ok, 1 warnings only, {EXIT_CONFIG} invalid configuration, 4 errors. Read-only: nothing\n"
        "is written and no index is built, so a read-only monitoring user can run it.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_options(doctor)
    doctor.set_defaults(parser=doctor)
    doctor.add_argument(
        "--json", action="store_true", help="one JSON document: {verdict, checks: [{pool, check, verdict, found, fix}]}"
    )
    demo = sub.add_parser("demo", help="start a throwaway mongod, simulated handlers and the exporter")
    demo.set_defaults(parser=demo)
    demo.add_argument("--pools", type=int, default=3, metavar="N", help="number of pools (default 3)")
    demo.add_argument("--sessions", type=int, default=300, metavar="N", help="sessions per pool (default 300)")
    demo.add_argument("--handlers", type=int, default=20, metavar="N", help="simulated handlers per pool (default 20)")
    demo.add_argument(
        "--listen", default="127.0.0.1:9810", metavar="HOST:PORT", help="listen address (default 127.0.0.1:9810)"
    )
    demo.add_argument("--interval", type=float, default=2.0, metavar="S", help="refresh interval (default 2)")
    demo.add_argument(
        "--duration", type=float, default=None, metavar="S", help="stop by itself after S seconds (default: never)"
    )
    demo.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log level (default info)"
    )
    demo.add_argument(
        "--log-format", default="auto", choices=["auto", "json", "console"], help="log format (default auto)"
    )
    return parser


def _unrecognized(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """argparse's "unrecognized arguments" message, with the closest option (or command) for each mistyped one."""
    # argparse keeps no public list of its options (3.14's suggest_on_error covers choices only).
    options = list(parser._option_string_actions)
    hints = []
    for arg in extra:
        name = arg.split("=", 1)[0]
        if name.startswith("-"):
            close = difflib.get_close_matches(name, options, n=1)
            hints += [f"did you mean {close[0]}?"] if close else []
        elif close := difflib.get_close_matches(name, SUBCOMMANDS, n=1):
            hints.append(f"did you mean the command {close[0]}?")
    return f"unrecognized arguments: {' '.join(extra)}" + (f" ({'; '.join(hints)})" if hints else "")


def version_text() -> str:
    """Version line printed by --version."""
    return f"session-pool-exporter {__version__} (python {platform.python_version()}, pymongo {pymongo.version})"


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration flags the user gave."""
    keys = ("mongo_uri", "database", "collection", "pool_name", "interval", "listen", "log_level", "log_format")
    given = vars(args)
    return {k: given[k] for k in keys if given.get(k) is not None}


def _load_or_report(args: argparse.Namespace, environ: Mapping[str, str]) -> Config | None:
    """The configuration, or None after printing every problem to stderr."""
    try:
        return load_config(args.config, environ, _flags(args))
    except ConfigError as error:
        _print_problems(error)
        return None


def _print_problems(error: ConfigError) -> None:
    """Every configuration problem, on stderr."""
    print(f"configuration invalid ({len(error.problems)} problem(s)):", file=sys.stderr)
    for line in error.lines():
        print(f"  {line}", file=sys.stderr)


def check_config(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Validate and report: 0 with a summary when fine, EXIT_CONFIG with every problem otherwise."""
    config = _load_or_report(args, environ)
    if config is None:
        return EXIT_CONFIG
    pools = ", ".join(f"{p.name} ({p.database}.{p.collection}, every {p.interval:g} s)" for p in config.pools)
    if config.admin.enabled:
        where, tls = config.admin_listener()
        admin = f"admin API on {'https' if tls else 'http'}://{where} with {len(config.admin.tokens)} token(s)"
    else:
        admin = "admin API off (no token)"
    for warning in config_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"config ok: listen {config.listen}, {len(config.pools)} pool(s): {pools}; {admin}")
    print(
        "MongoDB not contacted: run `session-pool-exporter doctor` (same options) to check the server, rights, indexes"
    )
    return 0


def doctor(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """The `doctor` command: EXIT_CONFIG with every problem, else the report's code (0, 1 warnings, 4 errors)."""
    try:
        config = load_config(args.config, environ, _flags(args))
    except ConfigError as error:
        _print_problems(error)
        if args.json:
            checks = [{"pool": None, "check": "config", "verdict": "error", "found": line, "fix": None}
                      for line in error.lines()]  # fmt: skip
            print(json.dumps({"verdict": "error", "checks": checks}, indent=2))
        return EXIT_CONFIG
    from exporter.doctor import run_doctor

    return run_doctor(config, as_json=args.json)


def freeze_heap() -> None:
    """Leave what start-up built out of every later full garbage collection (gc.freeze).

    Thousands of pools make millions of long-lived objects (their states, clients, jobs, counters) that
    each full collection would walk again: a pause of 300 ms at 5000 pools, felt by the refreshes and
    scrapes due meanwhile. Done once per process, after the start-up round: a frozen object that later
    ends in a reference cycle is never freed, and freezing once bounds that.
    """
    gc.collect()
    gc.freeze()
    log.info("heap_frozen", objects=gc.get_freeze_count())


async def serve(config: Config) -> int:
    """Run the exporter until SIGTERM/SIGINT; 0 after a clean shutdown, EXIT_LISTEN when a port is not ours."""
    daemon = build(config)
    daemon.collector.on_settled.append(freeze_heap)
    try:
        sockets = daemon.bind()
    except ListenError as exc:
        log.error("listen_failed", address=exc.address, error=exc.reason)
        print(f"session-pool-exporter: {exc.message}", file=sys.stderr)
        return EXIT_LISTEN
    log.info("listening", url=f"{'https' if config.tls else 'http'}://{config.listen}/metrics")
    if config.admin.enabled:
        where, tls = config.admin_listener()
        log.info("admin_listening", url=f"{'https' if tls else 'http'}://{where}/admin")
    if not await daemon.serve(sockets=sockets):
        log.error("startup_failed")
        return 1
    log.info("shutdown_complete")
    return 0


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """The `run` command."""
    config = _load_or_report(args, environ)
    if config is None:
        return EXIT_CONFIG
    setup_logging(config.log.level, config.log.format)
    log.info("startup", version=__version__, config=config.redacted())
    for warning in config_warnings(config):
        log.warning("config_warning", warning=warning)
    return asyncio.run(serve(config))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of `python -m exporter`."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0] not in SUBCOMMANDS and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "run")
    parser = build_parser()
    args, extra = parser.parse_known_args(args_list)
    if extra:
        command: argparse.ArgumentParser = getattr(args, "parser", parser)
        command.error(_unrecognized(command, extra))  # exits 2
    if args.command == "check-config":
        return check_config(args, os.environ)
    if args.command == "doctor":
        return doctor(args, os.environ)
    if args.command == "demo":
        from exporter.demo import run_demo

        return run_demo(args)
    return run(args, os.environ)
