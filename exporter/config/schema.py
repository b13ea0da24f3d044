"""The configuration schema: pydantic models of the YAML file (unknown keys are errors)."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pymongo.errors import PyMongoError
from pymongo.uri_parser import parse_uri

from exporter.core import MAX_PERIOD, Fields, InvalidInput, redact

ENV_PREFIX = "SESSION_POOL_EXPORTER_"
ADMIN_TOKEN_ENV = ENV_PREFIX + "ADMIN_TOKEN"
DEFAULT_LISTEN = "0.0.0.0:9810"
DEFAULT_ADMIN_LISTEN = "127.0.0.1:9811"
MIN_TOKEN_LENGTH = 24
_LOOPBACK = ("127.", "::1", "localhost")
NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
NAME_RULE = "must be 1-64 characters of letters, digits, '_' or '-'"
# MongoDB refuses these characters in database names.
_BAD_DB_CHARS = set('/\\. "$*<>:|?')


class ConfigError(Exception):
    """The configuration is invalid; `problems` lists every (location, message) pair.

    `origins` maps a location to where its value came from (`config.yaml:7:5`, `env NAME`,
    `flag --name`); the printed lines lead with it, `problems` stays the plain key path.
    """

    def __init__(self, problems: list[tuple[str, str]], origins: dict[str, str] | None = None) -> None:
        self.problems = problems
        self.origins = origins or {}
        super().__init__("; ".join(self.lines()))

    def lines(self) -> list[str]:
        """One human-readable line per problem, led by where the value came from when known."""
        lines = []
        for loc, msg in self.problems:
            origin = self.origins.get(loc)
            where = f"{origin}: {loc}" if origin else loc
            lines.append(f"{where}: {msg}" if where else msg)
        return lines


def check_name(value: str) -> str:
    """Pool, token and actor names are label-safe identifiers."""
    if not NAME.match(value):
        raise ValueError(NAME_RULE)
    return value


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


class _Strict(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


PositiveSeconds = Annotated[float, Field(gt=0, le=MAX_PERIOD.total_seconds())]
Seconds = Annotated[float, Field(ge=0, le=MAX_PERIOD.total_seconds())]


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


class HTTPConfig(_Strict):
    """Limits of the HTTP listeners (uvicorn has no header deadline and no connection cap of its own)."""

    max_connections: Annotated[int, Field(ge=8, le=100_000)] = 1024
    header_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    keep_alive: Annotated[float, Field(gt=0, le=3600)] = 75.0


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

    @property
    def given(self) -> bool:
        """True when any part is set (otherwise the server's default applies)."""
        return self.w is not None or self.j is not None or self.wtimeout is not None


class MongoConfig(_Strict):
    """How to reach MongoDB."""

    uri: SecretStr | None = None
    uri_file: Path | None = None
    timeout: PositiveSeconds = 10.0
    server_selection_timeout: PositiveSeconds = 5.0
    read_preference: Literal["primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest"] = "primary"
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


class UnderperformingConfig(_Strict):
    """Which sessions count as underperforming, and how often the daemon counts them."""

    min_uses: Annotated[int, Field(ge=1)] = 100
    below: Annotated[float, Field(gt=0, lt=1)] = 0.2
    interval: PositiveSeconds = 300.0


_SUBFIELD = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class SessionFieldsConfig(_Strict):
    """Sub-fields of a pool's `session` field the console may use; every other credential stays hidden."""

    search: Annotated[list[str], Field(max_length=8)] = []
    show: Annotated[list[str], Field(max_length=16)] = []
    # Trailing characters a masked search field shows (at most a quarter of the value).
    reveal: Annotated[int, Field(ge=0, le=4)] = 2

    @field_validator("search", "show")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        """Dotted names of sub-fields (`phone`, `profile.login`), each once."""
        for name in value:
            if not _SUBFIELD.match(name) or len(name) > 100:
                raise ValueError(f"{name!r} is not a sub-field name such as phone or profile.login")
        if len(set(value)) != len(value):
            raise ValueError("names must be distinct")
        return value


class PoolOptions(_Strict):
    """The options of a pool: `defaults` sets them for every pool, a pool may override each one.

    A new pool option is added here only (and to the chart's values and schema).
    """

    interval: PositiveSeconds = 15.0
    refresh_timeout: PositiveSeconds = 10.0
    max_age: PositiveSeconds | None = None
    jitter: Annotated[float, Field(ge=0, le=3600)] = 1.0
    lock_time: PositiveSeconds = 600.0
    block_time: PositiveSeconds = 28800.0
    grace: Seconds = 60.0
    min_active_sessions: Annotated[int, Field(ge=0)] = 1
    create_indexes: bool = True
    sums_interval: PositiveSeconds = 300.0
    sums_timeout: PositiveSeconds = 120.0
    underperforming: UnderperformingConfig = UnderperformingConfig()

    def problems(self) -> list[tuple[str, str]]:
        """Checks spanning several options: (option, message) pairs."""
        out: list[tuple[str, str]] = []
        if self.max_age is not None and self.max_age < self.interval:
            out.append(("max_age", f"must be >= the pool's interval ({self.interval:g})"))
        if self.grace > self.lock_time:
            out.append(("grace", f"must be <= lock_time ({self.lock_time:g})"))
        return out


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


class Pool(PoolOptions):
    """One pool: where its sessions live, and its options (unset ones inherit `defaults`)."""

    name: str
    database: str
    collection: str
    fields: FieldsConfig = FieldsConfig()
    stored_timezone: str | None = None
    session_fields: SessionFieldsConfig = SessionFieldsConfig()

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

    @model_validator(mode="after")
    def _effective_max_age(self) -> Pool:
        """Without a `max_age`, the state series are withdrawn after three intervals."""
        if self.max_age is None:
            self.max_age = 3 * self.interval
        return self

    @property
    def staleness_limit(self) -> float:
        """Age in seconds after which the pool's state series are withdrawn."""
        return self.max_age if self.max_age is not None else 3 * self.interval

    @property
    def sums_staleness_limit(self) -> float:
        """Age in seconds after which the pool's sums (uses, successes) are withdrawn."""
        return 3 * max(self.sums_interval, self.interval)


class DiscoveredOptions(PoolOptions):
    """What every pool a discovery source finds gets, over `defaults` (only the keys given here)."""

    fields: FieldsConfig = FieldsConfig()
    stored_timezone: str | None = None
    session_fields: SessionFieldsConfig = SessionFieldsConfig()


class DiscoveryConfig(_Strict):
    """A pool source: every collection of `databases` whose name matches `include` and no `exclude`.

    Listed again every `interval` seconds: pools appear and disappear without a restart. A
    collection that a pool of `pools` already watches is left to that pool.
    """

    databases: Annotated[list[str], Field(min_length=1)]
    include: list[str] = ["*"]
    exclude: list[str] = []
    name: str = "{collection}"
    interval: PositiveSeconds = 60.0
    options: DiscoveredOptions = DiscoveredOptions()

    @field_validator("databases")
    @classmethod
    def _databases(cls, value: list[str]) -> list[str]:
        """Database names MongoDB accepts."""
        for name in value:
            if not name or any(c in name for c in '/\\. "$\x00'):
                raise ValueError(f"{name!r} is not a valid MongoDB database name")
        return value

    @field_validator("name")
    @classmethod
    def _template(cls, value: str) -> str:
        """A template naming the pool from `{database}` and `{collection}`."""
        try:
            value.format(database="d", collection="c")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{value!r}: use {{database}} and {{collection}} only ({exc})") from None
        return value

    def pool_name(self, database: str, collection: str) -> str:
        """The name of the pool watching `database.collection`."""
        return self.name.format(database=database, collection=collection)

    def matches(self, collection: str) -> bool:
        """Whether a collection of one of the databases belongs to this source."""
        if collection.startswith("system."):
            return False
        return any(fnmatch.fnmatchcase(collection, p) for p in self.include) and not any(
            fnmatch.fnmatchcase(collection, p) for p in self.exclude
        )

    def pool(self, defaults: PoolOptions, database: str, collection: str) -> Pool:
        """The pool for a found collection (ValueError when its name or settings are not valid)."""
        data = _inherit(defaults.model_dump(exclude_unset=True), self.options.model_dump(exclude_unset=True))
        data.update(name=self.pool_name(database, collection), database=database, collection=collection)
        return Pool.model_validate(data)


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
        length = len(self.token.get_secret_value())
        if length < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"the token is {length} characters long; use at least {MIN_TOKEN_LENGTH}, e.g. "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
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


def _inherit(inherited: dict[str, Any], pool: dict[str, Any]) -> dict[str, Any]:
    """A pool's keys over the defaults it inherits; a section set in both (`underperforming`) merges key by key."""
    merged = {**inherited, **pool}
    for key, value in pool.items():
        if isinstance(value, dict) and isinstance(inherited.get(key), dict):
            merged[key] = {**inherited[key], **value}
    return merged


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach."""
    return host.startswith(_LOOPBACK)


class AdminConfig(_Strict):
    """The admin API (off when no token is configured), on a listener of its own by default."""

    tokens: list[AdminToken] = []
    listen: str | None = DEFAULT_ADMIN_LISTEN
    tls: TLSConfig | None = None
    allow_plaintext: bool = False
    request_timeout: PositiveSeconds = 30.0
    expose_credentials: bool = False
    max_period: Annotated[int, Field(gt=0, le=int(MAX_PERIOD.total_seconds()))] = 604_800
    bulk_unlock_cap: Annotated[int, Field(ge=1)] = 1000
    reason_max_length: Annotated[int, Field(ge=1)] = 500
    # Searches a read token may make per minute on masked fields (which it matches whole, never by prefix).
    read_searches_per_minute: Annotated[int, Field(ge=1, le=10_000)] = 30
    audit: AuditConfig = AuditConfig()
    write_concern: WriteConcernConfig | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        """HOST:PORT with a valid port, or null to serve the admin API on the main listener."""
        if value is not None:
            parse_listen(value)
        return value

    @property
    def enabled(self) -> bool:
        """True when at least one token is configured."""
        return bool(self.tokens)


class Config(_Strict):
    """The whole daemon configuration (see README, section Configuration)."""

    listen: str = DEFAULT_LISTEN
    tls: TLSConfig | None = None
    http: HTTPConfig = HTTPConfig()
    log: LogConfig = LogConfig()
    mongodb: MongoConfig = MongoConfig()
    defaults: PoolOptions = PoolOptions()
    pools: list[Pool] = []
    discovery: list[DiscoveryConfig] = []
    max_concurrent_refreshes: Annotated[int, Field(ge=1, le=1000)] = 16
    admin: AdminConfig = AdminConfig()

    @model_validator(mode="before")
    @classmethod
    def _inherit_defaults(cls, data: Any) -> Any:
        """Each pool starts from `defaults` (the options set there); its own keys win."""
        if not isinstance(data, dict) or not isinstance(data.get("pools"), list):
            return data
        try:
            defaults = PoolOptions.model_validate(data.get("defaults") or {})
        except ValueError:
            return data  # reported at defaults.*, not again under every pool
        if defaults.problems():
            return data
        inherited = defaults.model_dump(exclude_unset=True)
        pools = [_inherit(inherited, pool) if isinstance(pool, dict) else pool for pool in data["pools"]]
        return {**data, "pools": pools}

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

    def pool_settings(self) -> list[Pool]:
        """Every pool, with what it inherits from `defaults` applied."""
        return list(self.pools)

    def admin_listener(self) -> tuple[str, TLSConfig | None]:
        """Where the admin API is served (HOST:PORT) and with which TLS: its own listener, or the main one."""
        if self.admin.listen is None:
            return self.listen, self.tls
        return self.admin.listen, self.admin.tls

    def listener_problems(self) -> list[tuple[str, str]]:
        """Refusals about where the admin API would be served (checked with the rest of the config)."""
        if not self.admin.enabled:
            return []
        address, tls = self.admin_listener()
        where = "admin.listen" if self.admin.listen is not None else "listen"
        problems = []
        if self.admin.listen is not None and parse_listen(self.admin.listen)[1] == self.listen_port:
            problems.append(("admin.listen", f"uses the port of listen ({self.listen}); pick another, or null"))
        if tls is None and not self.admin.allow_plaintext and not is_loopback(parse_listen(address)[0]):
            problems.append(
                (
                    where,
                    f"the admin API would accept writes over plain HTTP on {address}: give it TLS "
                    f"({'admin.tls' if self.admin.listen is not None else 'tls'}), listen on 127.0.0.1, "
                    "or set admin.allow_plaintext: true if a proxy in front terminates TLS",
                )
            )
        return problems

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
        return data
