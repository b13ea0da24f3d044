"""Property tests of the parsers facing operators: the config loader and the period parser."""

from __future__ import annotations

import math
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import ENV_PREFIX, Config, ConfigError, load_config
from exporter.core import MAX_PERIOD, PERIOD_UNITS, InvalidInput, parse_period
from tests.support.figures import Report

SECRET = "hunter2-SECRET-pw"
KEYS = [
    "listen", "tls", "cert_file", "key_file", "log", "level", "format", "mongodb", "uri", "uri_file", "timeout",
    "server_selection_timeout", "write_concern", "w", "j", "wtimeout", "defaults", "interval", "refresh_timeout",
    "max_age", "jitter", "lock_time", "block_time", "grace", "min_active_sessions", "create_indexes", "pools",
    "name", "database", "collection", "fields", "next_use", "active", "session", "stored_timezone", "admin",
    "tokens", "token", "token_file", "role", "expose_credentials", "max_period", "bulk_unlock_cap",
    "reason_max_length", "audit", "retention",
]  # fmt: skip
GOOD = {
    "mongodb": {"uri": f"mongodb://user:{SECRET}@127.0.0.1:27017/?replicaSet=rs0"},
    "pools": [{"name": "telegram", "database": "sessions", "collection": "telegram"}],
    "admin": {"tokens": [{"name": "alice", "token": SECRET + "-token", "role": "write"}]},
}
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "1e309",
            "nan",
            "majority",
            "mongodb://",
            "mongodb://h:1",
            "0.0.0.0:9810",
            "[::]:99999",
            "Europe/Moscow",
            "Mars/Olympus",
            "read",
            "write",
            "info",
            "json",
            "/dev/null",
            "/",
            "system.x",
            "a$b",
            "../../etc/passwd",
            "\x00",
        ]
    ),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=12))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)
documents = st.one_of(
    st.dictionaries(keys, values, max_size=8),
    # Mutations of a good config: one section replaced by anything.
    st.builds(lambda k, v: {**GOOD, k: v}, st.sampled_from(list(GOOD) + KEYS[:8]), values),
    values,
)
env_names = st.sampled_from(["MONGODB__URI", "MONGODB__TIMEOUT", "DEFAULTS__INTERVAL", "LISTEN", "ADMIN_TOKEN",
                             "POOLS", "LOG__LEVEL", "ADMIN__TOKENS", "DEFAULTS", "TLS__CERT_FILE", "BOGUS",
                             "MONGODB__WRITE_CONCERN__W", "ADMIN__MAX_PERIOD"])  # fmt: skip
# Secrets only where secrets go: the URI (valid or not) and the admin token.
secret_env = st.fixed_dictionaries({}, optional={
    ENV_PREFIX + "MONGODB__URI": st.sampled_from([f"mongodb://u:{SECRET}@127.0.0.1:1/", SECRET,
                                                  f"mongodb://u:{SECRET}@", f"http://u:{SECRET}@h/"]),
    ENV_PREFIX + "ADMIN_TOKEN": st.sampled_from([SECRET, f" {SECRET} "]),
})  # fmt: skip
environments = st.builds(
    lambda random, secret: {**random, **secret},
    st.dictionaries(
        env_names.map(lambda n: ENV_PREFIX + n),
        st.one_of(st.text(max_size=40).filter(lambda t: "\x00" not in t),
                  st.sampled_from(['[{"name": "x"}]', "{", "[]", "1e400", "", " ", "null"])),
        max_size=4,
    ),
    secret_env,
)  # fmt: skip


def _check_outcome(text: str, env: dict[str, str]) -> str:
    """Load a config from YAML text and env: a Config or a ConfigError with located problems; which one."""
    error: ConfigError | None = None
    config: Config | None = None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            config = load_config(path, env)
        except ConfigError as exc:
            error = exc
    if error is not None:
        assert error.problems, "ConfigError without problems"
        for location, message in error.problems:
            assert isinstance(location, str) and location.strip(), error.problems
            assert isinstance(message, str) and message.strip(), error.problems
        assert SECRET not in str(error), str(error)
        return "ConfigError"
    assert isinstance(config, Config)
    config.pool_settings()
    redacted = str(config.redacted())
    assert SECRET not in redacted, redacted
    return "Config"


OUTCOMES: dict[str, int] = {}


@SETTINGS
@given(document=documents, env=environments)
def test_random_config_gives_config_or_located_errors(document: Any, env: dict[str, str]) -> None:
    """Random YAML structures and environments: never an unexpected exception, secrets never echoed."""
    text = yaml.safe_dump(document, allow_unicode=True)
    outcome = _check_outcome(text, env)
    OUTCOMES[outcome] = OUTCOMES.get(outcome, 0) + 1


@SETTINGS
@given(text=st.text(max_size=300))
def test_random_yaml_text_gives_config_or_located_errors(text: str) -> None:
    """Arbitrary text as the config file."""
    outcome = _check_outcome(text, {})
    OUTCOMES["text " + outcome] = OUTCOMES.get("text " + outcome, 0) + 1


def test_hostile_yaml_documents(report: Report) -> None:
    """Python tags, duplicate keys, alias bombs, tabs, binary: ConfigError each, nothing executed."""
    marker = Path(tempfile.gettempdir()) / "spe-yaml-executed"
    marker.unlink(missing_ok=True)
    bomb = (
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
        + "pools: *i\n"
    )
    texts = [
        f"!!python/object/apply:os.system ['touch {marker}']\n",
        f"pools: !!python/object/apply:os.system ['touch {marker}']\n",
        "mongodb: {uri: mongodb://a}\nmongodb: {uri: mongodb://b}\n",
        bomb,
        "pools:\n\t- name: x\n",
        "\x00\x01\x02binary",
        "[1, 2, 3]\n",
        "defaults: {interval: .nan, jitter: -.inf}\n",
        "listen: 0.0.0.0:65536\n",
        "admin: {tokens: [{name: a, token: x, token_file: /etc/hostname}]}\n",
    ]
    for text in texts:
        assert _check_outcome(text, {}) == "ConfigError", text[:80]
    assert not marker.exists()
    report.record("hostile", "config_documents_hostile_yaml", len(texts))
    report.record("hostile", "config_fuzz_outcomes", dict(sorted(OUTCOMES.items())))


PERIODS: dict[str, int] = {}
period_values = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip
periods = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(PERIOD_UNITS), st.text(max_size=8)), period_values, max_size=4),
    st.dictionaries(st.sampled_from(PERIOD_UNITS), st.floats(min_value=0, max_value=1e7), min_size=1, max_size=3),
    st.timedeltas(),
    st.text(max_size=10), st.integers(), st.lists(st.integers(), max_size=3), st.none(),
)  # fmt: skip


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(period=periods)
def test_parse_period_gives_bounded_timedelta_or_invalid_input(period: Any) -> None:
    """parse_period: a timedelta in (0, 366 days], or InvalidInput naming the problem; nothing else."""
    default = timedelta(minutes=10)
    rejected: InvalidInput | None
    try:
        result = parse_period(period, default)
    except InvalidInput as exc:
        rejected = exc
    else:
        rejected = None
    if rejected is not None:
        assert rejected.message and rejected.field == "period", rejected
        PERIODS["InvalidInput"] = PERIODS.get("InvalidInput", 0) + 1
        return
    assert isinstance(result, timedelta)
    assert timedelta(0) < result <= MAX_PERIOD, result
    if period is None:
        assert result == default
    elif isinstance(period, dict):
        expected = sum(timedelta(**{k: v}).total_seconds() for k, v in period.items())
        assert math.isclose(result.total_seconds(), expected, rel_tol=1e-9, abs_tol=1e-5)
    PERIODS["timedelta"] = PERIODS.get("timedelta", 0) + 1


def test_parse_period_huge_integer() -> None:
    """An integer too large for a float is InvalidInput, not OverflowError (found by this suite, fixed in ac2577f)."""
    with pytest.raises(InvalidInput):
        parse_period({"hours": 10**400}, timedelta(minutes=10))


def test_deeply_nested_yaml_is_a_config_error() -> None:
    """A config nested 5000 deep is a ConfigError, not RecursionError (found by this suite, fixed in 8d4d619)."""
    _check_outcome("pools: " + "[" * 5000 + "]" * 5000 + "\n", {})


def test_period_figures(report: Report) -> None:
    """Record how many periods were tried (runs after the property test in file order)."""
    report.record("hostile", "period_fuzz_outcomes", dict(sorted(PERIODS.items())))
