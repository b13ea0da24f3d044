"""Configuration: every kind of problem is reported with its location, precedence, secrets redacted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.config import ConfigError, load_config
from tests.support.cli import run_cli

URI = "mongodb://127.0.0.1:27017/?directConnection=true"
SECRET_URI = "mongodb://alice:s3cret-pass@db.example:27017/?replicaSet=rs0"
BASE = f"""\
mongodb:
  uri: "{URI}"
pools:
  - name: telegram
    database: sessions
    collection: telegram
"""


def problems_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    """The problem lines load_config reports for a YAML text."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {}, {})
    return info.value.lines()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pools: [\n  {name: a,\n", ":3:1: YAML syntax error"),
        ("listen: a\nlisten: b\n", ":2:1: YAML syntax error: while constructing a mapping found duplicate key"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("pools: " + "[" * 5000 + "]" * 5000 + "\n", "YAML nested too deeply"),
        (BASE + "colour: blue\n", "colour: unknown key"),
        (BASE + "defaults: {intervall: 3}\n", "defaults.intervall: unknown key"),
        (BASE + "  - {name: b, database: d, colection: c}\n", "pools[1].colection: unknown key"),
        (BASE + "  - {name: b, database: d, collection: c, interval: 0}\n", "pools[1].interval: must be > 0"),
        (BASE + "defaults: {jitter: -1}\n", "defaults.jitter: must be >= 0"),
        (BASE + "defaults: {interval: soon}\n", "defaults.interval: input should be a valid number"),
        (BASE + "defaults: {min_active_sessions: -2}\n", "defaults.min_active_sessions: must be >= 0"),
        (BASE + "  - {name: telegram, database: d, collection: c}\n", "pools[1].name: duplicate pool name 'telegram'"),
        (BASE + "  - {name: 'no spaces', database: d, collection: c}\n", "pools[1].name: must be 1-64 characters"),
        (BASE + "  - {name: b, database: 'a.b', collection: c}\n", "pools[1].database: 'a.b' is not a valid"),
        (BASE + "  - {name: b, database: d, collection: '$c'}\n", "pools[1].collection: '$c' is not a valid"),
        (BASE + "  - {name: b, database: d}\n", "pools[1].collection: required"),
        (BASE + "  - {name: b, database: d, collection: c, stored_timezone: Mars/Olympus}\n",
         "pools[1].stored_timezone: 'Mars/Olympus' is not a known IANA time zone"),
        (BASE + "  - {name: b, database: d, collection: c, fields: {active: '$on'}}\n",
         "pools[1].fields: field name active='$on' is not a usable field name"),
        (BASE + "  - {name: b, database: d, collection: c, fields: {actve: on}}\n",
         "pools[1].fields.actve: unknown key"),
        (BASE + "  - {name: b, database: d, collection: c, interval: 10, max_age: 5}\n",
         "pools[1].max_age: must be >= the pool's interval (10)"),
        (BASE + "  - {name: b, database: d, collection: c, grace: 700}\n", "pools[1].grace: must be <= lock_time"),
        (BASE + "listen: 'localhost'\n", "listen: 'localhost' is not HOST:PORT"),
        (BASE + "listen: '0.0.0.0:70000'\n", "listen: port 70000 is out of range"),
        (BASE + "log: {level: loud}\n", "log.level: must be one of"),
        (BASE.replace(f'uri: "{URI}"', f'uri: "{URI}"\n  write_concern: {{w: 0}}'),
         "mongodb.write_concern.w: w=0 (unacknowledged writes) is refused"),
        (BASE.replace(f'uri: "{URI}"', "uri: 'http://db:27017'"), "mongodb.uri: must start with mongodb://"),
        (BASE.replace(f'uri: "{URI}"', "uri_file: /nonexistent/mongo-uri"),
         "mongodb.uri_file: file '/nonexistent/mongo-uri' does not exist"),
        (BASE.replace(f'uri: "{URI}"', "timeout: 5"), "mongodb.uri: required"),
        (f'mongodb: {{uri: "{URI}"}}\n', "pools: at least one pool or discovery source is required"),
        (BASE + "tls: {cert_file: /nonexistent/cert.pem, key_file: /nonexistent/key.pem}\n",
         "tls.cert_file: file '/nonexistent/cert.pem' does not exist"),
        (BASE + "admin: {tokens: [{name: ops, token_file: /nonexistent/tok}]}\n",
         "admin.tokens[0].token_file: file '/nonexistent/tok' does not exist"),
        (BASE + "admin: {tokens: [{name: ops}]}\n", "admin.tokens[0]: set exactly one of token and token_file"),
        (BASE + "admin: {tokens: [{name: ops, token: abc, role: root}]}\n", "admin.tokens[0].role: must be one of"),
        (BASE + "admin: {tokens: [{name: ops, token: abc}]}\n", "admin.tokens[0]: the token is 3 characters long"),
        (BASE + "admin: {listen: '0.0.0.0:9811', tokens: [{name: ops, token: abcdefghijklmnopqrstuvwxyz}]}\n",
         "admin.listen: the admin API would accept writes over plain HTTP on 0.0.0.0:9811"),
        (BASE + "admin: {listen: null, tokens: [{name: ops, token: abcdefghijklmnopqrstuvwxyz}]}\n",
         "listen: the admin API would accept writes over plain HTTP on 0.0.0.0:9810"),
        (BASE + "listen: '127.0.0.1:9811'\nadmin: {tokens: [{name: ops, token: abcdefghijklmnopqrstuvwxyz}]}\n",
         "admin.listen: uses the port of listen"),
        (BASE + "admin: {tokens: [{name: ops, token: abcdefghijklmnopqrstuvwxyz}, {name: ops, token: def}]}\n",
         "admin.tokens[1].name: duplicate token name 'ops'"),
        (BASE + "admin: {tokens: [{name: a, token: same-token-value-24chars},\n"
                "  {name: b, token: same-token-value-24chars}]}\n",
         "admin.tokens[1]: same token value as admin.tokens[0]"),
        (BASE + "admin: {max_period: 0, bulk_unlock_cap: 0, audit: {retention: -1}}\n",
         "admin.max_period: must be > 0"),
        (BASE + "  - {name: b, database: d, collection: c, session_fields: {search: ['$where']}}\n",
         "pools[1].session_fields.search: '$where' is not a sub-field name"),
        (BASE + "  - {name: b, database: d, collection: c, session_fields: {show: [phone, phone]}}\n",
         "pools[1].session_fields.show: names must be distinct"),
        (BASE + "  - {name: b, database: d, collection: c, session_fields: {serch: [phone]}}\n",
         "pools[1].session_fields.serch: unknown key"),
        (BASE + "defaults: {underperforming: {below: 1.5}}\n", "defaults.underperforming.below: must be < 1"),
        (BASE + "defaults: {underperforming: {min_uses: 0, interval: 0}}\n",
         "defaults.underperforming.min_uses: must be >= 1"),
    ],
)  # fmt: skip
def test_each_kind_of_problem_is_located(tmp_path: Path, text: str, expected: str) -> None:
    """The expected located message is among the reported problems."""
    lines = problems_of(tmp_path, text)
    assert any(expected in line for line in lines), lines


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    """Several problems in one file are all reported, each with its location."""
    text = BASE + (
        "  - {name: telegram, database: d, collection: c, interval: -1, bogus: 1}\n"
        "defaults: {refresh_timeout: 0}\n"
        "admin: {bulk_unlock_cap: 0}\n"
    )
    lines = problems_of(tmp_path, text)
    for expected in ("pools[1].name: duplicate", "pools[1].interval: must be > 0", "pools[1].bogus: unknown key",
                     "defaults.refresh_timeout: must be > 0", "admin.bulk_unlock_cap: must be >= 1"):  # fmt: skip
        # Each value from the file is located by its line too.
        assert any(line.startswith(f"{tmp_path / 'config.yaml'}:") and expected in line for line in lines), (
            expected, lines,
        )  # fmt: skip


def test_problems_name_the_line_the_variable_or_the_flag(tmp_path: Path) -> None:
    """Printed lines lead with file:line:col, env NAME or flag --name; `problems` keeps the plain key path."""
    path = tmp_path / "config.yaml"
    path.write_text(BASE + "  - name: b\n    database: d\n    collection: c\n    interval: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {"SESSION_POOL_EXPORTER_LOG__LEVEL": "loud"}, {"listen": "nowhere"})
    assert ("pools[1].interval", "must be > 0") in info.value.problems
    lines = info.value.lines()
    assert f"{path}:10:5: pools[1].interval: must be > 0" in lines, lines
    assert any(line.startswith("env SESSION_POOL_EXPORTER_LOG__LEVEL: log.level: must be one of") for line in lines)
    assert any(line.startswith("flag --listen: listen: 'nowhere' is not HOST:PORT") for line in lines), lines


def test_environment_problems(tmp_path: Path) -> None:
    """Unknown variables with our prefix, bad values and an empty admin token are located."""
    env = {
        "SESSION_POOL_EXPORTER_LISTN": "x",
        "SESSION_POOL_EXPORTER_ADMIN__TOKEN": "x",
        "SESSION_POOL_EXPORTER_DEFAULTS__UNDERPERFORMING__BELOWW": "0.1",
        "SESSION_POOL_EXPORTER_DEFAULTS__INTERVAL": "0",
        "SESSION_POOL_EXPORTER_ADMIN_TOKEN": " ",
        "SESSION_POOL_EXPORTER_POOLS": "[not json",
    }
    lines = problems_of(tmp_path, BASE, env)
    assert (
        "env SESSION_POOL_EXPORTER_LISTN: unknown environment variable (did you mean SESSION_POOL_EXPORTER_LISTEN?)"
        in lines
    )
    assert (
        "env SESSION_POOL_EXPORTER_ADMIN__TOKEN: unknown environment variable (did you mean "
        "SESSION_POOL_EXPORTER_ADMIN_TOKEN?)"
    ) in lines
    assert (
        "env SESSION_POOL_EXPORTER_DEFAULTS__UNDERPERFORMING__BELOWW: unknown environment variable (did you mean "
        "SESSION_POOL_EXPORTER_DEFAULTS__UNDERPERFORMING__BELOW?)"
    ) in lines
    assert "env SESSION_POOL_EXPORTER_DEFAULTS__INTERVAL: defaults.interval: must be > 0" in lines
    assert (
        "env SESSION_POOL_EXPORTER_ADMIN_TOKEN: admin.tokens[0]: the token is empty; make one with: "
        "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    ) in lines
    assert "env SESSION_POOL_EXPORTER_POOLS: is not valid JSON for this list/section" in lines


def test_missing_config_file(tmp_path: Path) -> None:
    """A --config path that does not exist is one located problem."""
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml", {}, {})
    assert info.value.lines() == [f"{tmp_path / 'absent.yaml'}: config file does not exist"]


def test_precedence_flags_over_env_over_yaml_over_defaults(tmp_path: Path) -> None:
    """Each layer overrides the one below it, key by key."""
    path = tmp_path / "config.yaml"
    path.write_text(BASE + "listen: '127.0.0.1:1000'\ndefaults: {interval: 10, grace: 5}\nlog: {level: debug}\n")
    env = {"SESSION_POOL_EXPORTER_DEFAULTS__INTERVAL": "20", "SESSION_POOL_EXPORTER_LISTEN": "127.0.0.1:2000"}
    flags = {"interval": 30.0}
    assert load_config(None, {}, {"database": "d", "collection": "c", "mongo_uri": URI}).defaults.interval == 15
    assert load_config(path, {}, {}).defaults.interval == 10
    config = load_config(path, env, {})
    assert (config.defaults.interval, config.listen_port, config.defaults.grace) == (20, 2000, 5)
    config = load_config(path, env, flags)
    assert (config.defaults.interval, config.listen_port, config.log.level) == (30, 2000, "debug")
    assert load_config(path, env, {"listen": "127.0.0.1:3000"}).listen_port == 3000


def test_pool_overrides_and_interval_flag(tmp_path: Path) -> None:
    """A pool inherits defaults unless it overrides them; --interval wins over every pool's own value."""
    path = tmp_path / "config.yaml"
    path.write_text(BASE + "  - {name: slow, database: d, collection: c, interval: 60, lock_time: 30, grace: 10}\n"
                    "defaults: {interval: 5, max_age: 100}\n")  # fmt: skip
    fast, slow = load_config(path, {}, {}).pool_settings()
    assert (fast.interval, fast.max_age, fast.lock_time, fast.grace) == (5, 100, 600, 60)
    assert (slow.interval, slow.lock_time, slow.grace) == (60, 30, 10)
    fast, slow = load_config(path, {}, {"interval": 2.0}).pool_settings()
    assert fast.interval == slow.interval == 2
    default_age = load_config(None, {}, {"database": "d", "collection": "c", "mongo_uri": URI, "interval": 4.0})
    assert default_age.pool_settings()[0].max_age == 12


def test_underperforming_merges_defaults_and_pool_key_by_key(tmp_path: Path) -> None:
    """A pool that sets one key of `underperforming` keeps the others from `defaults`, not the built-ins."""
    path = tmp_path / "config.yaml"
    path.write_text(BASE + "  - {name: b, database: d, collection: c, underperforming: {min_uses: 50},\n"
                    "     session_fields: {search: [phone, profile.login], show: [country]}}\n"
                    "defaults: {underperforming: {below: 0.3, interval: 600}}\n")  # fmt: skip
    first, second = load_config(path, {}, {}).pool_settings()
    assert first.underperforming.model_dump() == {"min_uses": 100, "below": 0.3, "interval": 600}
    assert second.underperforming.model_dump() == {"min_uses": 50, "below": 0.3, "interval": 600}
    assert second.session_fields.search == ["phone", "profile.login"] and first.session_fields.search == []


def test_quick_single_pool_mode_from_flags_alone() -> None:
    """--mongo-uri, --database, --collection (and --pool-name) make a complete config."""
    config = load_config(None, {}, {"mongo_uri": URI, "database": "sessions", "collection": "tg.main"})
    (pool,) = config.pool_settings()
    assert (pool.name, pool.database, pool.collection) == ("tg_main", "sessions", "tg.main")
    named = load_config(None, {}, {"mongo_uri": URI, "database": "s", "collection": "c", "pool_name": "x"})
    assert named.pools[0].name == "x"
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, {"mongo_uri": URI, "database": "s"})
    assert "flags: --database and --collection are both needed to define a pool" in info.value.lines()


def test_env_uri_admin_token_and_json_pools() -> None:
    """SESSION_POOL_EXPORTER_MONGODB__URI, _ADMIN_TOKEN and JSON lists from the environment."""
    env = {
        "SESSION_POOL_EXPORTER_MONGODB__URI": SECRET_URI,
        "SESSION_POOL_EXPORTER_ADMIN_TOKEN": "tok-from-env-0123456789abcdef",
        "SESSION_POOL_EXPORTER_POOLS": json.dumps([{"name": "p", "database": "d", "collection": "c"}]),
    }
    config = load_config(None, env, {})
    assert config.mongodb.uri_value() == SECRET_URI
    (token,) = config.admin.tokens
    assert (token.name, token.role, token.secret()) == ("admin", "write", "tok-from-env-0123456789abcdef")
    assert config.admin.enabled
    assert config.admin_write_concern() == config.mongodb.write_concern


def test_secrets_from_files_and_redaction(tmp_path: Path) -> None:
    """Secrets read from files are used but never appear in the redacted dump, repr or errors."""
    (tmp_path / "uri").write_text(SECRET_URI + "\n")
    (tmp_path / "alice").write_text("alice-token-value-0123456789abcdef\n")
    path = tmp_path / "config.yaml"
    path.write_text(
        f"mongodb: {{uri_file: {tmp_path / 'uri'}}}\n"
        "pools: [{name: p, database: d, collection: c}]\n"
        f"admin: {{tokens: [{{name: alice, token_file: {tmp_path / 'alice'}, role: write}},"
        " {name: bob, token: bob-token-value-0123456789abcdef}]}\n"
    )
    config = load_config(path, {}, {})
    assert config.mongodb.uri_value() == SECRET_URI
    assert [t.secret() for t in config.admin.tokens] == [
        "alice-token-value-0123456789abcdef",
        "bob-token-value-0123456789abcdef",
    ]
    dumped = json.dumps(config.redacted()) + repr(config) + str(config)
    for secret in ("s3cret-pass", "alice:", "alice-token-value-0123456789abcdef", "bob-token-value-0123456789abcdef"):
        assert secret not in dumped
    assert config.redacted()["mongodb"]["uri"] == "mongodb://***@db.example:27017/?replicaSet=rs0"


@pytest.mark.integration
def test_check_config_cli_lists_problems_and_exits_2(tmp_path: Path) -> None:
    """`check-config` prints every located problem to stderr and exits 2."""
    path = tmp_path / "bad.yaml"
    path.write_text(BASE + "  - {name: telegram, database: d, collection: c, interval: 0}\nextra: 1\n")
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 2
    assert "pools[1].name: duplicate pool name 'telegram' (also pools[0])" in result.stderr
    assert "pools[1].interval: must be > 0" in result.stderr
    assert "extra: unknown key" in result.stderr
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("pools:\n  - name: [unclosed\n")
    result = run_cli("check-config", "--config", str(syntax))
    assert result.returncode == 2
    assert f"{syntax}:3:1: YAML syntax error" in result.stderr


@pytest.mark.integration
def test_check_config_cli_ok_and_secret_free(tmp_path: Path) -> None:
    """A valid config gives exit 0 and a summary; no secret is printed."""
    path = tmp_path / "good.yaml"
    path.write_text(BASE)
    env = {
        "SESSION_POOL_EXPORTER_MONGODB__URI": SECRET_URI,
        "SESSION_POOL_EXPORTER_ADMIN_TOKEN": "env-token-xyz-0123456789abcdef",
    }
    result = run_cli("check-config", "--config", str(path), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config ok")
    assert "MongoDB not contacted" in result.stdout and "doctor" in result.stdout
    assert "telegram" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr
    assert "env-token-xyz-0123456789abcdef" not in result.stdout + result.stderr
    result = run_cli("check-config", "--config", str(path), "--interval", "0")
    assert result.returncode == 2
    assert "defaults.interval: must be > 0" in result.stderr


@pytest.mark.integration
def test_cli_help_and_version() -> None:
    """--help explains every option; --version prints the version."""
    result = run_cli("run", "--help")
    assert result.returncode == 0
    for option in ("--config", "--mongo-uri", "--database", "--collection", "--pool-name", "--interval",
                   "--listen", "--log-level", "--log-format", "SESSION_POOL_EXPORTER_"):  # fmt: skip
        assert option in result.stdout
    top = run_cli("--help")
    for command in ("run", "check-config", "demo"):
        assert command in top.stdout
    version = run_cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("session-pool-exporter ")
