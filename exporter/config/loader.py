"""Loading the configuration: YAML file, environment and flags as plain dict layers, validated once."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from exporter.config.rules import RULE_ERROR, section_model
from exporter.config.schema import ADMIN_TOKEN_ENV, ENV_PREFIX, Config, ConfigError

Problems = list[tuple[str, str]]


# --- the file layer -------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    """Build a mapping, failing on a key seen twice (with both line numbers)."""
    seen: dict[Any, int] = {}
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark,
            )  # fmt: skip
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class Origins(dict[str, str]):
    """Where each configured value came from: a config path (`pools[1].interval`) -> `file:line:col`,
    `env NAME` or `flag --name`. Later layers replace what they override."""

    def set(self, location: str, origin: str) -> None:
        """`location` (and everything under it) now comes from `origin`."""
        for key in [k for k in self if k == location or k.startswith((location + ".", location + "["))]:
            del self[key]
        self[location] = origin

    def set_value(self, location: str, value: Any, origin: str) -> None:
        """Like `set`, for every leaf of a value (a section given as JSON merges key by key)."""
        if isinstance(value, Mapping) and value:
            for key, child in value.items():
                self.set_value(f"{location}.{key}" if location else str(key), child, origin)
        else:
            self.set(location, origin)

    def of(self, location: str) -> str | None:
        """The origin of `location`, or of its nearest configured parent."""
        while location:
            if location in self:
                return self[location]
            cut = max(location.rfind("."), location.rfind("["))
            location = location[:cut] if cut > 0 else ""
        return None


_MAX_ORIGINS = 10_000


def _walk(node: yaml.Node, location: str, path: Path, origins: Origins, seen: set[int] | None = None) -> None:
    """Record the line of every key and list item under `node`.

    An alias is the node of its anchor: it is walked once (a nest of aliases would otherwise be
    walked exponentially often: the "billion laughs" document), and at most _MAX_ORIGINS lines are kept.
    """
    seen = set() if seen is None else seen
    if id(node) in seen or len(origins) >= _MAX_ORIGINS:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            name = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else repr(key)
            child = f"{location}.{name}" if location else name
            origins[child] = f"{path}:{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}"
            _walk(value_node, child, path, origins, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{location}[{i}]"
            origins[child] = f"{path}:{item.start_mark.line + 1}:{item.start_mark.column + 1}"
            _walk(item, child, path, origins, seen)


def file_layer(path: Path, origins: Origins | None = None) -> dict[str, Any]:
    """The YAML file as a dict (and the line of every key in `origins`); syntax errors are located problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([(str(path), "config file does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([(str(path), f"cannot read the config file: {exc}")]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError([(where, f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([(str(path), f"YAML error: {exc}")]) from None
    except RecursionError:
        raise ConfigError([(str(path), "YAML nested too deeply")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([(str(path), f"the top level must be a mapping, got {type(data).__name__}")])
    if origins is not None:
        with contextlib.suppress(RecursionError):  # only the lines would be lost; the data loaded
            root = yaml.compose(text, Loader=yaml.SafeLoader)
            if root is not None:
                _walk(root, "", path, origins)
    return data


# --- the environment layer ------------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """The type inside Optional[...] / X | None, else the annotation itself."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _setting(path: list[str]) -> Any:
    """The annotation of the config key at `path` (lower-case names), or None when there is none."""
    node: Any = Config
    for part in path:
        if not (isinstance(node, type) and issubclass(node, BaseModel)) or part not in node.model_fields:
            return None
        node = _unwrap(node.model_fields[part].annotation)
    return node


def _takes_json(annotation: Any) -> bool:
    """True when the key holds a section or a list, written as JSON in a variable."""
    return (isinstance(annotation, type) and issubclass(annotation, BaseModel)) or get_origin(annotation) in (
        list,
        dict,
    )


def env_layer(environ: Mapping[str, str], origins: Origins | None = None) -> tuple[dict[str, Any], Problems]:
    """`SESSION_POOL_EXPORTER_<SECTION>__<KEY>` variables as nested config data, and their problems.

    Scalars stay strings (the schema converts them); sections and lists are JSON.
    """
    data: dict[str, Any] = {}
    problems: Problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == ADMIN_TOKEN_ENV:
            continue
        path = upper[len(ENV_PREFIX) :].lower().split("__")
        annotation = _setting(path)
        if annotation is None or not all(path):
            problems.append((f"env {name}", f"unknown environment variable{_did_you_mean(upper, path)}"))
            continue
        value: Any = environ[name]
        if _takes_json(annotation):
            try:
                value = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                problems.append((f"env {name}", "is not valid JSON for this list/section"))
                continue
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[-1]] = value
            if origins is not None:
                origins.set_value(".".join(path), value, f"env {name}")
    return data, problems


def keys_at(path: list[int | str]) -> list[str]:
    """The keys the config section at `path` accepts (`pools[0]`: a pool's); none when no section is there."""
    node: type[BaseModel] = Config
    for part in path:
        if isinstance(part, int):
            continue  # an item of the list the previous part named
        field = node.model_fields.get(part)
        if field is None:
            return []
        try:
            node = section_model(field.annotation)
        except TypeError:
            return []
    return list(node.model_fields)


def close_key(path: list[int | str]) -> str | None:
    """The accepted key closest to the last part of `path` (a mistyped key), from the section it is in."""
    *where, typo = path
    close = difflib.get_close_matches(str(typo), keys_at(where), n=1)
    return close[0] if close else None


def _did_you_mean(name: str, path: list[str]) -> str:
    """A suggestion for a mistyped variable: the admin token's, or the closest key at the level of the typo."""
    if difflib.get_close_matches(name, [ADMIN_TOKEN_ENV], cutoff=0.9):
        return f" (did you mean {ADMIN_TOKEN_ENV}?)"
    for depth in range(len(path)):
        if path[depth] not in keys_at(list(path[:depth])):
            close = close_key(list(path[: depth + 1]))
            if close is None:
                return ""
            return f" (did you mean {ENV_PREFIX}{'__'.join([*path[:depth], close]).upper()}?)"
    return ""


def _admin_token_from_env(data: dict[str, Any], environ: Mapping[str, str], origins: Origins | None = None) -> None:
    """`SESSION_POOL_EXPORTER_ADMIN_TOKEN` becomes the write token named 'admin' (replacing one of that name).

    A short or empty one too: the token rule reports it, with the command that makes a good one.
    """
    token = next((v.strip() for k, v in environ.items() if k.upper() == ADMIN_TOKEN_ENV), None)
    if token is None:
        return
    admin = data.setdefault("admin", {})
    if isinstance(admin, dict):
        raw = admin.get("tokens")
        others = raw if isinstance(raw, list) else []
        tokens = [t for t in others if not (isinstance(t, dict) and t.get("name") == "admin")]
        admin["tokens"] = [*tokens, {"name": "admin", "role": "write", "token": token}]
        if origins is not None:
            origins.set(f"admin.tokens[{len(tokens)}]", f"env {ADMIN_TOKEN_ENV}")


# --- the flags layer ------------------------------------------------------------------------------


def _default_pool_name(collection: str) -> str:
    """A valid pool label derived from a collection name."""
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", collection)[:64]
    return name or "pool"


# Where each flag puts its value (None: handled with the pools).
FLAG_LOCATIONS: dict[str, str | None] = {
    "listen": "listen",
    "mongo_uri": "mongodb.uri",
    "log_level": "log.level",
    "log_format": "log.format",
    "interval": "defaults.interval",
    "database": None,
    "collection": None,
    "pool_name": None,
}


def apply_flags(data: dict[str, Any], flags: Mapping[str, Any], origins: Origins | None = None) -> Problems:
    """Apply command-line flags (highest precedence) to the merged data in place."""
    problems: Problems = []
    f = {k: v for k, v in flags.items() if v is not None}
    origins = origins if origins is not None else Origins()
    for flag, location in FLAG_LOCATIONS.items():
        if flag in f and location is not None:
            origins.set(location, f"flag --{flag.replace('_', '-')}")
    if "listen" in f:
        data["listen"] = f["listen"]
    if "mongo_uri" in f:
        mongodb = data.setdefault("mongodb", {})
        if isinstance(mongodb, dict):
            mongodb.pop("uri_file", None)
            mongodb["uri"] = f["mongo_uri"]
    raw_log = data.get("log")
    log: dict[str, Any] = raw_log if isinstance(raw_log, dict) else {}
    if "log_level" in f:
        log["level"] = f["log_level"]
    if "log_format" in f:
        log["format"] = f["log_format"]
    if log:
        data["log"] = log
    pools = data.get("pools")
    if "interval" in f:
        defaults = data.setdefault("defaults", {})
        if isinstance(defaults, dict):
            defaults["interval"] = f["interval"]
        # The flag wins over every pool's own interval too.
        for i, pool in enumerate(pools if isinstance(pools, list) else []):
            if isinstance(pool, dict):
                pool.pop("interval", None)
                origins.set(f"pools[{i}].interval", "flag --interval")
    single = {k: f[k] for k in ("database", "collection", "pool_name") if k in f}
    if single:
        if not isinstance(pools, list) or not pools:
            if "database" not in single or "collection" not in single:
                problems.append(("flags", "--database and --collection are both needed to define a pool"))
            data["pools"] = [
                {
                    "name": single.get("pool_name") or _default_pool_name(str(single.get("collection", "pool"))),
                    "database": single.get("database"),
                    "collection": single.get("collection"),
                }
            ]
            origins.set("pools[0]", "flags --database/--collection")
        elif len(pools) == 1 and isinstance(pools[0], dict):
            for key, flag in (("database", "database"), ("collection", "collection"), ("name", "pool_name")):
                if flag in single:
                    pools[0][key] = single[flag]
                    origins.set(f"pools[0].{key}", f"flag --{flag.replace('_', '-')}")
        else:
            problems.append(
                ("flags", f"--database/--collection/--pool-name need a single pool; the config has {len(pools)}")
            )
    return problems


# --- merging and validating -----------------------------------------------------------------------


def deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `top` over `base`, section by section."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _loc(parts: tuple[int | str, ...]) -> str:
    """Render a pydantic location as `pools[1].interval`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # A key that is not a plain name (a typo with a space, a control character) is quoted.
            name = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else repr(part)
            out += f".{name}" if out else name
    return out


def _num(value: object) -> str:
    """A number without a pointless `.0`."""
    return f"{value:g}" if isinstance(value, float) else str(value)


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_BOUND_KEYS = {">": "gt", ">=": "ge", "<": "lt", "<=": "le"}


def _message(error: Any) -> str:
    """A short human message for one pydantic error, from its type and context (never its wording)."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        close = close_key(list(error["loc"]))
        return f"unknown key (did you mean {close}?)" if close else "unknown key"
    if kind == RULE_ERROR:
        return str(ctx["message"])
    if kind == "missing":
        return "required"
    if kind in _BOUNDS:
        op = _BOUNDS[kind]
        return f"must be {op} {_num(ctx.get(_BOUND_KEYS[op]))}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    msg = str(error["msg"])
    return msg[0].lower() + msg[1:] if msg else kind


def validation_problems(exc: ValidationError) -> Problems:
    """Every pydantic error as a (location, message) pair."""
    problems: Problems = []
    for error in exc.errors(include_input=False, include_url=False):
        # Union branches add the type name to the location; drop it for humans.
        loc = [
            p for p in error["loc"] if not (isinstance(p, str) and ("[" in p or p in ("float", "int", "str", "bool")))
        ]
        problems.append((_loc(tuple(loc)) or "config", _message(error)))
    # The same problem may be reported once per union branch.
    return list(dict.fromkeys(problems))


def _read_through_group(uid: int, gid: int) -> bool:
    """The file belongs to someone else and to one of our groups, so its group bit is what lets us read it."""
    return uid != os.geteuid() and gid in {os.getegid(), *os.getgroups()}


def config_warnings(config: Config) -> list[str]:
    """What is allowed but unwise, for check-config and the start-up log: secret files others can read."""
    warnings = []
    files = [("mongodb.uri_file", config.mongodb.uri_file)]
    files += [(f"admin.tokens[{i}].token_file", t.token_file) for i, t in enumerate(config.admin.tokens)]
    for where, path in files:
        if path is None:
            continue
        try:
            status = path.stat()
        except OSError:
            continue
        mode = status.st_mode
        if not mode & 0o007 and _read_through_group(status.st_uid, status.st_gid):
            # Kubernetes mounts secrets root-owned with the pod's fsGroup: the group bit is how we read it.
            continue
        if mode & 0o077:
            warnings.append(
                f"{where}: {path} can be read by {'others' if mode & 0o007 else 'its group'} "
                f"(mode {mode & 0o777:o}); chmod 600 it"
            )
    mongodb = config.mongodb
    if mongodb.server_selection_timeout >= mongodb.timeout:
        warnings.append(
            f"mongodb.server_selection_timeout ({mongodb.server_selection_timeout:g} s) is not below "
            f"mongodb.timeout ({mongodb.timeout:g} s): an operation gives up at the timeout first, so it has no effect"
        )
    return warnings


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config: defaults < YAML file < environment < flags; ConfigError lists every problem."""
    environ = env or {}
    origins = Origins()
    data = file_layer(Path(path), origins) if path is not None else {}
    env_data, problems = env_layer(environ, origins)
    data = deep_merge(data, env_data)
    _admin_token_from_env(data, environ, origins)
    try:
        problems += apply_flags(data, flags or {}, origins)
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += validation_problems(exc)
    except RecursionError:
        problems.append(("config", "nested too deeply"))
    if problems:
        raise ConfigError(problems, _origins_of(problems, origins))
    return config


def _origins_of(problems: list[tuple[str, str]], origins: Origins) -> dict[str, str]:
    """Where each problem's value came from (`config.yaml:7:5`, `env NAME`, `flag --name`), when known."""
    found = {}
    for location, _ in problems:
        if location.startswith(("env ", "flags")) or location == "config":
            continue
        origin = origins.of(location)
        if origin:
            found[location] = origin
    return found
