"""Every problem at once: rules across keys run whatever else is wrong; unknown keys and flags get a suggestion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli import main
from exporter.config import Config, ConfigError, load_config
from exporter.config.rules import Rule, Section, rules_of

URI = "mongodb://127.0.0.1:27017/"
TOKEN = "a-good-token-of-enough-characters"
POOL = {"name": "p", "database": "d", "collection": "c"}
COMMAND = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def problems(tmp_path: Path, data: dict[str, Any]) -> list[str]:
    """The problem lines of a config given as data (written to a YAML file)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    return [line.removeprefix(f"{path}:") for line in info.value.lines()]


def line_of(text: str, needle: str) -> str:
    """`line:col` of the first occurrence of `needle` in a text."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return f"{number}:{line.index(needle) + 1}"
    raise AssertionError(needle)


def test_four_kinds_of_problem_at_once_each_located(tmp_path: Path) -> None:
    """A short token, plaintext admin writes on a public address, max_age < interval and an unknown key:
    one run reports all four (and nothing twice), each led by its file:line:col."""
    text = f"""\
mongodb:
  uri: "{URI}"
defaults:
  interval: 30
  max_age: 10
pools:
  - name: telegram
    database: sessions
    colection: telegram
admin:
  listen: "0.0.0.0:9811"
  tokens:
    - name: alice
      token: short
"""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    lines = info.value.lines()
    expected = [
        f"{path}:{line_of(text, 'max_age')}: defaults.max_age: must be >= the pool's interval (30)",
        f"{path}:{line_of(text, 'colection')}: pools[0].colection: unknown key (did you mean collection?)",
        f"{path}:{line_of(text, 'name: telegram')}: pools[0].collection: required",
        f"{path}:{line_of(text, 'listen')}: admin.listen: the admin API would accept writes over plain HTTP on "
        "0.0.0.0:9811: give it TLS (admin.tls), listen on 127.0.0.1, or set admin.allow_plaintext: true if a proxy "
        "in front terminates TLS",
        f"{path}:{line_of(text, 'name: alice')}: admin.tokens[0]: the token is 5 characters long; use at least 24, "
        f"e.g. {COMMAND}",
    ]
    assert sorted(lines) == sorted(expected), lines


# One case per rule: the rule's keys are valid, others in the same section (and elsewhere) are not.
RULE_CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "PoolOptions._max_age_covers_interval": (
        {"defaults": {"max_age": 5, "jitter": -1, "lock_time": "soon"}},
        ["defaults.max_age: must be >= the pool's interval (15)", "defaults.jitter: must be >= 0"],
    ),
    "PoolOptions._grace_within_lock_time": (
        {"pools": [{**POOL, "grace": 700, "interval": 0, "bogus": 1}]},
        ["pools[0].grace: must be <= lock_time (600)", "pools[0].interval: must be > 0", "pools[0].bogus: unknown"],
    ),
    "FieldsConfig._usable": (
        {"pools": [{**POOL, "fields": {"active": "$on", "actve": "x"}, "jitter": -1}]},
        ["pools[0].fields: field name active='$on' is not a usable field name", "pools[0].fields.actve: unknown key"],
    ),
    "WriteConcernConfig._acknowledged": (
        {"mongodb": {"uri": URI, "write_concern": {"w": 0, "wtimout": 5}, "timeout": 0}},
        ["mongodb.write_concern.w: w=0 (unacknowledged writes) is refused", "mongodb.timeout: must be > 0",
         "mongodb.write_concern.wtimout: unknown key (did you mean wtimeout?)"],
    ),
    "AdminToken._one_good_token": (
        {"admin": {"tokens": [{"name": "no spaces", "role": "root", "token": "abc"}]}},
        [f"admin.tokens[0]: the token is 3 characters long; use at least 24, e.g. {COMMAND}",
         "admin.tokens[0].name: must be 1-64 characters", "admin.tokens[0].role: must be one of"],
    ),
    "Config._one_mongodb_uri": (
        {"mongodb": {"timeout": 0}, "listen": "nowhere"},
        ["mongodb.uri: required: set mongodb.uri or mongodb.uri_file", "mongodb.timeout: must be > 0",
         "listen: 'nowhere' is not HOST:PORT"],
    ),
    "Config._something_to_watch": (
        {"pools": [], "listen": "nowhere"},
        ["pools: at least one pool or discovery source is required", "listen: 'nowhere' is not HOST:PORT"],
    ),
    "Config._distinct_pool_names": (
        {"pools": [POOL, {**POOL, "interval": -1}]},
        ["pools[1].name: duplicate pool name 'p' (also pools[0])", "pools[1].interval: must be > 0"],
    ),
    "Config._distinct_token_names": (
        {"admin": {"tokens": [{"name": "ops", "token": TOKEN}, {"name": "ops", "token": "x"}], "max_period": 0}},
        ["admin.tokens[1].name: duplicate token name 'ops' (also admin.tokens[0])", "admin.max_period: must be > 0",
         "admin.tokens[1]: the token is 1 characters long"],
    ),
    "Config._distinct_token_values": (
        {"admin": {"tokens": [{"name": "a", "token": TOKEN}, {"name": "b", "token": TOKEN}], "max_period": 0}},
        ["admin.tokens[1]: same token value as admin.tokens[0]", "admin.max_period: must be > 0"],
    ),
    "Config._admin_port_of_its_own": (
        {"listen": "127.0.0.1:9811", "admin": {"tokens": [{"name": "a", "token": "x"}]}},
        ["admin.listen: uses the port of listen (127.0.0.1:9811)", "admin.tokens[0]: the token is 1 characters long"],
    ),
    "Config._admin_listener_encrypted": (
        {"admin": {"listen": "0.0.0.0:9811", "tokens": [{"name": "a", "token": "x"}], "max_period": 0}},
        ["admin.listen: the admin API would accept writes over plain HTTP on 0.0.0.0:9811",
         "admin.tokens[0]: the token is 1 characters long", "admin.max_period: must be > 0"],
    ),
    "Config._admin_on_main_listener_encrypted": (
        {"admin": {"listen": None, "tokens": [{"name": "a", "token": "x"}]}, "http": {"keep_alive": 0}},
        ["listen: the admin API would accept writes over plain HTTP on 0.0.0.0:9810: give it TLS (tls)",
         "admin.tokens[0]: the token is 1 characters long", "http.keep_alive: must be > 0"],
    ),
    "ShardConfig._index_below_count": (
        {"shard": {"count": 3, "index": 3, "replicas": 0}},
        ["shard.index: is 3, but the daemons are numbered 0 to 2 (count: 3)", "shard.replicas: must be >= 1"],
    ),
    "ShardConfig._replicas_at_most_count": (
        {"shard": {"count": 2, "replicas": 3, "index": -1}},
        ["shard.replicas: is 3, but only 2 daemons share the pools (count: 2)", "shard.index: must be >= 0"],
    ),
}  # fmt: skip


def sections() -> list[type[Section]]:
    """Every config section (Config and the models under it)."""
    found: list[type[Section]] = []
    todo: list[type[Section]] = [Section]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.append(sub)
            todo.append(sub)
    return found


def all_rules() -> dict[str, Rule]:
    """Every rule, by the name of the section that declares it and its own."""
    return {f"{cls.__name__}.{name}": value for cls in sections()
            for name, value in vars(cls).items() if isinstance(value, Rule)}  # fmt: skip


def test_every_rule_has_a_case() -> None:
    """A new rule needs a case below, proving it runs while the rest of its section is invalid."""
    assert set(all_rules()) == set(RULE_CASES)
    assert all(rules_of(Config))


@pytest.mark.parametrize("name", sorted(RULE_CASES))
def test_each_rule_runs_while_the_rest_of_its_section_is_invalid(tmp_path: Path, name: str) -> None:
    """The rule's problem is reported in the same run as the schema's problems around it."""
    data, expected = RULE_CASES[name]
    base = {"mongodb": {"uri": URI}, "pools": [POOL]}
    lines = problems(tmp_path, {**base, **data})
    for want in expected:
        assert any(want in line for line in lines), (want, lines)


def test_no_section_checks_a_key_in_a_field_validator() -> None:
    """A key's checks live in its type, so a rule can validate the key alone from its annotation."""
    for cls in sections():
        assert not cls.__pydantic_decorators__.field_validators, cls


def test_a_problem_inherited_from_defaults_is_reported_once(tmp_path: Path) -> None:
    """Pools that inherit a bad value are not reported again; one that sets a key of the rule itself is."""
    data = {
        "mongodb": {"uri": URI},
        "defaults": {"max_age": 10, "interval": 30, "jitter": -1},
        "pools": [POOL, {**POOL, "name": "q"}, {**POOL, "name": "r", "interval": 20}],
    }
    lines = problems(tmp_path, data)
    assert sorted(line.split(": ", 1)[1] for line in lines) == [
        "defaults.jitter: must be >= 0",
        "defaults.max_age: must be >= the pool's interval (30)",
        "pools[2].max_age: must be >= the pool's interval (20)",
    ], lines


def test_discovery_options_are_checked_over_defaults(tmp_path: Path) -> None:
    """A source's options are valid or not as its pools will run: over `defaults`, with the same rules."""
    source = {"databases": ["sessions"], "options": {"max_age": 5}}
    config = {"mongodb": {"uri": URI}, "defaults": {"interval": 2}, "discovery": [source]}
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(config))
    (loaded,) = load_config(path, {}, {}).discovery
    assert loaded.pool(load_config(path, {}, {}).defaults, "sessions", "tg").max_age == 5
    lines = problems(tmp_path, {**config, "discovery": [{**source, "options": {"grace": 700, "lock_time": 60}}]})
    assert any(line.endswith("discovery[0].options.grace: must be <= lock_time (60)") for line in lines), lines


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"listn": "x"}, "listn: unknown key (did you mean listen?)"),
        ({"pools": [{**POOL, "colection": "c"}]}, "pools[0].colection: unknown key (did you mean collection?)"),
        ({"defaults": {"underperforming": {"min_use": 3}}},
         "defaults.underperforming.min_use: unknown key (did you mean min_uses?)"),
        ({"discovery": [{"databases": ["d"], "options": {"intervall": 3}}]},
         "discovery[0].options.intervall: unknown key (did you mean interval?)"),
        ({"pools": [{**POOL, "session_fields": {"serch": ["phone"]}}]},
         "pools[0].session_fields.serch: unknown key (did you mean search?)"),
        ({"admin": {"tokens": [{"name": "a", "tokn": TOKEN}]}},
         "admin.tokens[0].tokn: unknown key (did you mean token?)"),
        ({"colour": "blue"}, "colour: unknown key"),
    ],
)  # fmt: skip
def test_unknown_keys_get_the_closest_key_of_their_section(tmp_path: Path, data: dict[str, Any], expected: str) -> None:
    """At any depth, the suggestion comes from the section the key is in."""
    lines = problems(tmp_path, {"mongodb": {"uri": URI}, "pools": [POOL], **data})
    assert any(line.endswith(f": {expected}") for line in lines), lines


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--colection", "telegarm"], "run: error: unrecognized arguments: --colection telegarm "
                                      "(did you mean --collection?)"),
        (["check-config", "--intervall=3"], "check-config: error: unrecognized arguments: --intervall=3 "
                                            "(did you mean --interval?)"),
        (["check-confg"], "run: error: unrecognized arguments: check-confg (did you mean the command check-config?)"),
        (["doctor", "--jsn"], "doctor: error: unrecognized arguments: --jsn (did you mean --json?)"),
    ],
)  # fmt: skip
def test_unknown_flags_get_the_closest_option(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse's refusal (exit 2) names the closest option of the command, or the closest command."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert expected in capsys.readouterr().err
