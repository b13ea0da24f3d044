"""Daemon configuration: YAML file, SESSION_POOL_EXPORTER_* environment and flags, validated by pydantic."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError
from pydantic_settings.sources.utils import parse_env_vars
from pymongo.errors import PyMongoError
from pymongo.uri_parser import parse_uri

from exporter.core import MAX_PERIOD, Fields, InvalidInput, redact

ENV_PREFIX = "SESSION_POOL_EXPORTER_"
ADMIN_TOKEN_ENV = ENV_PREFIX + "ADMIN_TOKEN"
DEFAULT_LISTEN = "0.0.0.0:9810"
POOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# MongoDB refuses these characters in database names.
_BAD_DB_CHARS = set('/\\. "$*<>:|?')
_T = TypeVar("_T")


class ConfigError(Exception):
    """The configuration is invalid; `problems` lists every (location, message) pair."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in problems))

    def lines(self) -> list[str]:
        """One human-readable line per problem."""
        return [f"{loc}: {msg}" if loc else msg for loc, msg in self.problems]


def check_name(value: str) -> str:
    """Pool and token names are label-safe identifiers."""
    if not POOL_NAME.match(value):
        raise ValueError("must be 1-64 characters of letters, digits, '_' or '-'")
    return value


class _Strict(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


PositiveSeconds = Annotated[float, Field(gt=0, le=MAX_PERIOD.total_seconds())]


def _check_file(path: Path) -> Path:
    """Reject a secret/cert file that does not exist or cannot be read."""
    if not path.exists():
        raise ValueError(f"file {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a regular file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"file {str(path)!r} cannot be read: {exc.strerror}") from None
    return path


def _check_uri(uri: str) -> None:
    """Reject a malformed connection string without echoing it (it may hold a password)."""
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError("must start with mongodb:// or mongodb+srv://")
    if uri.startswith("mongodb+srv://"):
        return  # parsing an SRV URI needs DNS; the driver checks it at startup
    try:
        parse_uri(uri, warn=False)
    except (PyMongoError, ValueError) as exc:
        raise ValueError(f"invalid MongoDB URI: {redact(str(exc))}") from None


def _read_secret(path: Path) -> str:
    """Contents of a secret file, without the trailing newline editors add."""
    return path.read_text(encoding="utf-8").strip()


class TLSConfig(_Strict):
    """Certificate and key for serving HTTPS."""

    cert_file: Path
    key_file: Path

    @field_validator("cert_file", "key_file")
    @classmethod
    def _exists(cls, value: Path) -> Path:
        """The certificate or key file must exist and be readable."""
        return _check_file(value)


class LogConfig(_Strict):
    """Log level and format."""

    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    format: Literal["auto", "json", "console"] = "auto"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        """Accept INFO as well as info."""
        return value.lower() if isinstance(value, str) else value


class WriteConcernConfig(_Strict):
    """Write concern of every write (never w=0)."""

    w: int | str | None = None
    j: bool | None = None
    wtimeout: int | None = Field(default=None, ge=0)

    @field_validator("w")
    @classmethod
    def _acknowledged(cls, value: int | str | None) -> int | str | None:
        """Refuse unacknowledged writes (w=0)."""
        if isinstance(value, int) and value < 1:
            raise ValueError("must be >= 1 or 'majority' (unacknowledged writes are refused)")
        if isinstance(value, str) and not value:
            raise ValueError("must not be empty")
        return value


class MongoConfig(_Strict):
    """How to reach MongoDB."""

    uri: SecretStr | None = None
    uri_file: Path | None = None
    timeout: PositiveSeconds = 10.0
    server_selection_timeout: PositiveSeconds = 5.0
    write_concern: WriteConcernConfig = WriteConcernConfig()

    @field_validator("uri_file")
    @classmethod
    def _uri_file_exists(cls, value: Path | None) -> Path | None:
        """The URI file must exist and be readable."""
        return _check_file(value) if value is not None else None

    @field_validator("uri")
    @classmethod
    def _scheme(cls, value: SecretStr | None) -> SecretStr | None:
        """The URI must be a well-formed MongoDB connection string."""
        if value is not None:
            _check_uri(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _one_source(self) -> MongoConfig:
        """Exactly one source of the secret; a file's content is loaded here."""
        if self.uri is not None and self.uri_file is not None:
            raise ValueError("set only one of uri and uri_file")
        if self.uri_file is not None:
            text = _read_secret(self.uri_file)
            try:
                _check_uri(text)
            except ValueError as exc:
                raise ValueError(f"uri_file: {exc}") from None
            self.uri = SecretStr(text)
        return self

    def uri_value(self) -> str:
        """The connection string (secret: never log it)."""
        if self.uri is None:
            raise ConfigError([("mongodb.uri", "required")])
        return self.uri.get_secret_value()


class PoolDefaults(_Strict):
    """Settings every pool inherits unless it overrides them."""

    interval: PositiveSeconds = 15.0
    refresh_timeout: PositiveSeconds = 10.0
    max_age: PositiveSeconds | None = None
    jitter: Annotated[float, Field(ge=0, le=3600)] = 1.0
    lock_time: PositiveSeconds = 600.0
    block_time: PositiveSeconds = 28800.0
    grace: Annotated[float, Field(ge=0, le=MAX_PERIOD.total_seconds())] = 60.0
    min_active_sessions: Annotated[int, Field(ge=0)] = 1
    create_indexes: bool = True


class FieldsConfig(_Strict):
    """Field-name overrides of a pool (the seed's MongoFields)."""

    next_use: str | None = None
    active: str | None = None
    session: str | None = None
    last_use: str | None = None
    hold: str | None = None
    count_use: str | None = None
    count_success: str | None = None
    created: str | None = None

    def as_fields(self) -> Fields:
        """The core's Fields object for these overrides."""
        return Fields(**{k: v for k, v in self.model_dump().items() if v is not None})

    @model_validator(mode="after")
    def _usable(self) -> FieldsConfig:
        """The field names must be usable by the client core."""
        try:
            self.as_fields()
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        return self


class PoolConfig(_Strict):
    """One pool as written in the config; unset overrides inherit `defaults`."""

    name: str
    database: str
    collection: str
    fields: FieldsConfig = FieldsConfig()
    stored_timezone: str | None = None
    interval: PositiveSeconds | None = None
    refresh_timeout: PositiveSeconds | None = None
    max_age: PositiveSeconds | None = None
    jitter: Annotated[float, Field(ge=0, le=3600)] | None = None
    lock_time: PositiveSeconds | None = None
    block_time: PositiveSeconds | None = None
    grace: Annotated[float, Field(ge=0, le=MAX_PERIOD.total_seconds())] | None = None
    min_active_sessions: Annotated[int, Field(ge=0)] | None = None
    create_indexes: bool | None = None

    _name = field_validator("name")(check_name)

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        """A database name MongoDB accepts."""
        bad = sorted(set(value) & _BAD_DB_CHARS)
        if not value or bad or len(value) > 63 or "\x00" in value:
            raise ValueError(f"{value!r} is not a valid MongoDB database name")
        return value

    @field_validator("collection")
    @classmethod
    def _collection(cls, value: str) -> str:
        """A collection name MongoDB accepts."""
        if not value or "$" in value or "\x00" in value or value.startswith("system."):
            raise ValueError(f"{value!r} is not a valid MongoDB collection name")
        return value

    @field_validator("stored_timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        """A known IANA time zone."""
        if value is None or value.upper() == "UTC":
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known IANA time zone (e.g. Europe/Moscow)") from None
        return value


@dataclass(frozen=True)
class PoolSettings:
    """A pool's effective settings: its overrides applied on top of `defaults`."""

    name: str
    database: str
    collection: str
    fields: Fields
    stored_timezone: str | None
    interval: float
    refresh_timeout: float
    max_age: float
    jitter: float
    lock_time: float
    block_time: float
    grace: float
    min_active_sessions: int
    create_indexes: bool


class AdminToken(_Strict):
    """One admin API credential."""

    name: str
    role: Literal["read", "write"] = "read"
    token: SecretStr | None = None
    token_file: Path | None = None

    _name = field_validator("name")(check_name)

    @field_validator("token_file")
    @classmethod
    def _file(cls, value: Path | None) -> Path | None:
        """The token file must exist and be readable."""
        return _check_file(value) if value is not None else None

    @model_validator(mode="after")
    def _one_source(self) -> AdminToken:
        """Exactly one source of the secret; a file's content is loaded here."""
        if (self.token is None) == (self.token_file is None):
            raise ValueError("set exactly one of token and token_file")
        if self.token_file is not None:
            self.token = SecretStr(_read_secret(self.token_file))
        if self.token is None or not self.token.get_secret_value():
            raise ValueError("the token is empty")
        return self

    def secret(self) -> str:
        """The token value (secret: never log it)."""
        assert self.token is not None  # guaranteed by _one_source
        return self.token.get_secret_value()


class AuditConfig(_Strict):
    """Where admin actions are recorded and for how long."""

    database: str = "session_pool_exporter"
    collection: str = "audit"
    retention: Annotated[int, Field(gt=0)] = 7_776_000


class AdminConfig(_Strict):
    """The admin API (off when no token is configured)."""

    tokens: list[AdminToken] = []
    expose_credentials: bool = False
    max_period: Annotated[int, Field(gt=0, le=int(MAX_PERIOD.total_seconds()))] = 604_800
    bulk_unlock_cap: Annotated[int, Field(ge=1)] = 1000
    reason_max_length: Annotated[int, Field(ge=1)] = 500
    audit: AuditConfig = AuditConfig()
    write_concern: WriteConcernConfig | None = None

    @property
    def enabled(self) -> bool:
        """True when at least one token is configured."""
        return bool(self.tokens)


class Config(BaseSettings):
    """The whole daemon configuration (see README, section Configuration)."""

    model_config = SettingsConfigDict(
        extra="forbid",
        validate_default=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
    )

    listen: str = DEFAULT_LISTEN
    tls: TLSConfig | None = None
    log: LogConfig = LogConfig()
    mongodb: MongoConfig = MongoConfig()
    defaults: PoolDefaults = PoolDefaults()
    pools: list[PoolConfig] = []
    admin: AdminConfig = AdminConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only explicit values: `load_config` merges file, environment and flags itself."""
        return (init_settings,)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        """HOST:PORT with a valid port."""
        parse_listen(value)
        return value

    @property
    def listen_host(self) -> str:
        """Host part of `listen`."""
        return parse_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        """Port part of `listen`."""
        return parse_listen(self.listen)[1]

    def pool_settings(self) -> list[PoolSettings]:
        """Every pool with the defaults applied."""
        result = []
        d = self.defaults
        for p in self.pools:
            interval = p.interval if p.interval is not None else d.interval
            max_age = p.max_age if p.max_age is not None else d.max_age
            result.append(
                PoolSettings(
                    name=p.name,
                    database=p.database,
                    collection=p.collection,
                    fields=p.fields.as_fields(),
                    stored_timezone=p.stored_timezone,
                    interval=interval,
                    refresh_timeout=_pick(p.refresh_timeout, d.refresh_timeout),
                    max_age=max_age if max_age is not None else 3 * interval,
                    jitter=_pick(p.jitter, d.jitter),
                    lock_time=_pick(p.lock_time, d.lock_time),
                    block_time=_pick(p.block_time, d.block_time),
                    grace=_pick(p.grace, d.grace),
                    min_active_sessions=_pick(p.min_active_sessions, d.min_active_sessions),
                    create_indexes=_pick(p.create_indexes, d.create_indexes),
                )
            )
        return result

    def admin_write_concern(self) -> WriteConcernConfig:
        """Write concern of admin writes: `admin.write_concern`, else `mongodb.write_concern`."""
        return self.admin.write_concern or self.mongodb.write_concern

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as plain data with every secret masked (for logs)."""
        data: dict[str, Any] = self.model_dump(mode="json")
        if self.mongodb.uri is not None:
            data["mongodb"]["uri"] = redact(self.mongodb.uri.get_secret_value())
        for token in data["admin"]["tokens"]:
            token["token"] = "**********"  # noqa: S105 - the mask, not a password
        data["pools"] = [
            {"name": p.name, "database": p.database, "collection": p.collection, **_settings_dict(p)}
            for p in self.pool_settings()
        ]
        return data


def _settings_dict(settings: PoolSettings) -> dict[str, Any]:
    """A pool's effective settings as plain data, without its identity keys."""
    out = dict(settings.__dict__)
    out["fields"] = dict(settings.fields.__dict__)
    for key in ("name", "database", "collection"):
        out.pop(key)
    return out


def _pick(value: _T | None, default: _T) -> _T:
    """The override when set, else the default."""
    return default if value is None else value


def parse_listen(value: str) -> tuple[str, int]:
    """Split 'host:port' (or '[v6]:port', ':port') into its parts; ValueError if malformed."""
    match = re.fullmatch(r"(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\[\]\s]*)):(?P<port>\d{1,5})", value)
    if not match:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 0.0.0.0:9810 or [::]:9810)")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535")
    host = match["v6"] or match["host"] or "0.0.0.0"
    return host, port


# --- loading ------------------------------------------------------------------------------------


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


def _read_yaml(path: Path) -> dict[str, Any]:
    """Parse the YAML file into a dict; syntax errors become located problems."""
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
    return data


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source reading a given mapping instead of os.environ."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = {k: v for k, v in environ.items() if k.upper() != ADMIN_TOKEN_ENV}
        super().__init__(Config)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        """Read the given mapping instead of os.environ."""
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def _env_layer(environ: Mapping[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The environment as nested config data, plus the problems found in it."""
    problems: list[tuple[str, str]] = []
    known = set(Config.model_fields)
    for key in environ:
        upper = key.upper()
        if upper.startswith(ENV_PREFIX) and upper != ADMIN_TOKEN_ENV:
            top = upper[len(ENV_PREFIX) :].split("__", 1)[0].lower()
            if top not in known:
                problems.append((f"env {key}", "unknown environment variable"))
    remaining = dict(environ)
    data: dict[str, Any] = {}
    for _attempt in range(len(known) + 1):
        try:
            data = _MappingEnvSource(remaining)()
            break
        except SettingsError as exc:
            # Report the variable whose value is not valid JSON, then go on without it.
            match = re.search(r'field "(\w+)"', str(exc))
            if match is None:
                problems.append(("environment", str(exc)))
                break
            top = match[1]
            bad = [k for k in remaining if k.upper().startswith(f"{ENV_PREFIX}{top.upper()}")]
            for key in bad:
                problems.append((f"env {key}", "is not valid JSON for this list/section"))
                remaining.pop(key)
    token = next((v for k, v in environ.items() if k.upper() == ADMIN_TOKEN_ENV), None)
    if token is not None:
        if not token.strip():
            problems.append((f"env {ADMIN_TOKEN_ENV}", "is empty"))
        else:
            admin = data.setdefault("admin", {})
            if isinstance(admin, dict):
                admin["_env_token"] = token.strip()
    return data, problems


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `top` over `base`, section by section."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _apply_flags(data: dict[str, Any], flags: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Apply command-line flags (highest precedence) to the merged data in place."""
    problems: list[tuple[str, str]] = []
    f = {k: v for k, v in flags.items() if v is not None}
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
        for pool in pools if isinstance(pools, list) else []:
            if isinstance(pool, dict):
                pool.pop("interval", None)
    single = {k: f[k] for k in ("database", "collection", "pool_name") if k in f}
    if single:
        if not isinstance(pools, list) or not pools:
            if "database" not in single or "collection" not in single:
                problems.append(("flags", "--database and --collection are both needed to define a pool"))
            pool = {
                "name": single.get("pool_name") or _default_pool_name(str(single.get("collection", "pool"))),
                "database": single.get("database"),
                "collection": single.get("collection"),
            }
            data["pools"] = [pool]
        elif len(pools) == 1 and isinstance(pools[0], dict):
            for key, flag in (("database", "database"), ("collection", "collection"), ("name", "pool_name")):
                if flag in single:
                    pools[0][key] = single[flag]
        else:
            problems.append(
                ("flags", f"--database/--collection/--pool-name need a single pool; the config has {len(pools)}")
            )
    return problems


def _default_pool_name(collection: str) -> str:
    """A valid pool label derived from a collection name."""
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", collection)[:64]
    return name or "pool"


def _loc(parts: tuple[int | str, ...]) -> str:
    """Render a pydantic location as `pools[1].interval`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(error: Any) -> str:
    """A short human message for one pydantic error."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    for name, op in (
        ("greater_than", ">"),
        ("greater_than_equal", ">="),
        ("less_than", "<"),
        ("less_than_equal", "<="),
    ):
        if kind == name:
            bound = ctx.get({">": "gt", ">=": "ge", "<": "lt", "<=": "le"}[op])
            return f"must be {op} {_num(bound)}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    msg = str(error["msg"])
    return msg[0].lower() + msg[1:] if msg else kind


def _num(value: object) -> str:
    """A number without a pointless `.0`."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Every pydantic error as a (location, message) pair."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = list(error["loc"])
        # Union branches add the type name to the location; drop it for humans.
        loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p in ("float", "int", "str", "bool")))]
        problems.append((_loc(tuple(loc)) or "config", _message(error)))
    # The same problem may be reported once per union branch.
    return list(dict.fromkeys(problems))


def _cross_checks(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems across entries that pydantic's per-field checks cannot see."""
    problems: list[tuple[str, str]] = []
    mongodb = data.get("mongodb")
    if not isinstance(mongodb, Mapping) or (mongodb.get("uri") is None and mongodb.get("uri_file") is None):
        problems.append(
            ("mongodb.uri", "required: set mongodb.uri or mongodb.uri_file, "
             f"{ENV_PREFIX}MONGODB__URI, or --mongo-uri"),
        )  # fmt: skip
    if not data.get("pools"):
        problems.append(("pools", "at least one pool is required (or give --database and --collection)"))
    for section, key, what in (("pools", "name", "pool name"), ("admin.tokens", "name", "token name")):
        node: Any = data
        for part in section.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        seen: dict[str, int] = {}
        for i, item in enumerate(node if isinstance(node, list) else []):
            value = item.get(key) if isinstance(item, Mapping) else None
            if isinstance(value, str):
                if value in seen:
                    problems.append(
                        (f"{section}[{i}].{key}", f"duplicate {what} {value!r} (also {section}[{seen[value]}])")
                    )
                else:
                    seen[value] = i
    return problems


def _semantic_checks(config: Config) -> list[tuple[str, str]]:
    """Checks spanning several fields of an otherwise valid config."""
    problems: list[tuple[str, str]] = []
    d = config.defaults
    if d.max_age is not None and d.max_age < d.interval:
        problems.append(("defaults.max_age", f"must be >= defaults.interval ({d.interval:g})"))
    for i, (raw, pool) in enumerate(zip(config.pools, config.pool_settings(), strict=True)):
        if pool.max_age < pool.interval and (raw.max_age is not None or raw.interval is not None):
            problems.append((f"pools[{i}].max_age", f"must be >= the pool's interval ({pool.interval:g})"))
        if pool.grace > pool.lock_time:
            problems.append((f"pools[{i}].grace", f"must be <= lock_time ({pool.lock_time:g})"))
    secrets: dict[str, str] = {}
    for i, token in enumerate(config.admin.tokens):
        value = token.secret()
        if value in secrets:
            problems.append((f"admin.tokens[{i}]", f"same token value as {secrets[value]}"))
        else:
            secrets[value] = f"admin.tokens[{i}]"
    return problems


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config: defaults < YAML file < environment < flags; ConfigError lists every problem."""
    problems: list[tuple[str, str]] = []
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(Path(path))
    env_data, env_problems = _env_layer(env or {})
    problems += env_problems
    env_token = None
    if isinstance(env_data.get("admin"), dict):
        env_token = env_data["admin"].pop("_env_token", None)
        if not env_data["admin"]:
            env_data.pop("admin")
    data = _deep_merge(data, env_data)
    if env_token is not None:
        admin = data.setdefault("admin", {})
        if isinstance(admin, dict):
            raw_tokens = admin.get("tokens")
            tokens: list[Any] = raw_tokens if isinstance(raw_tokens, list) else []
            tokens = [t for t in tokens if not (isinstance(t, dict) and t.get("name") == "admin")]
            admin["tokens"] = [*tokens, {"name": "admin", "role": "write", "token": env_token}]
    try:
        problems += _apply_flags(data, flags or {})
        problems += _cross_checks(data)
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += _validation_problems(exc)
    except RecursionError:
        problems.append(("config", "nested too deeply"))
    else:
        problems += _semantic_checks(config)
    if problems:
        raise ConfigError(problems)
    return config
