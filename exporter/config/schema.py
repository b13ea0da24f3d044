"""The configuration schema: pydantic models of the YAML file, their descriptions and their rules across keys.

The descriptions (attribute docstrings) and examples are the configuration reference:
`python scripts/reference/config.py` writes docs/reference/configuration.md and examples/config.yaml from them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ModelWrapValidatorHandler, PrivateAttr, SecretStr, ValidationError, model_validator

from exporter.config.pools import DiscoveryConfig, PoolDefinition, PoolOptions, inherit
from exporter.config.rules import RULE_ERROR, Given, Problem, Section, again, parse_loc, rule
from exporter.config.shard import ShardConfig
from exporter.config.values import (
    CollectionName,
    DatabaseName,
    Listen,
    Lowercase,
    MongoURI,
    Name,
    PositiveSeconds,
    ReadableFile,
    ReadPreference,
    SecretFile,
    UriFile,
    is_loopback,
    parse_listen,
    read_secret,
)
from exporter.core import MAX_PERIOD, InvalidInput, redact, write_concern

ENV_PREFIX = "SESSION_POOL_EXPORTER_"
ADMIN_TOKEN_ENV = ENV_PREFIX + "ADMIN_TOKEN"
DEFAULT_LISTEN = "0.0.0.0:9810"
DEFAULT_ADMIN_LISTEN = "127.0.0.1:9811"
MIN_TOKEN_LENGTH = 24
TOKEN_COMMAND = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105 - makes one


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


def token_problem(token: str) -> str | None:
    """Why an admin token is not good enough (empty, too short), with the command that makes a good one."""
    if not token:
        return f"the token is empty; make one with: {TOKEN_COMMAND}"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"the token is {len(token)} characters long; use at least {MIN_TOKEN_LENGTH}, e.g. {TOKEN_COMMAND}"
    return None


class TLSConfig(Section):
    """Certificate and key for serving HTTPS."""

    cert_file: ReadableFile
    """The certificate (PEM), with its chain."""
    key_file: ReadableFile
    """Its private key (PEM)."""


class LogConfig(Section):
    """Log level and format."""

    level: Annotated[Literal["debug", "info", "warning", "error", "critical"], Lowercase] = "info"
    """Lowest level logged; at `debug` every HTTP request is logged too. The `--log-level` flag sets it."""
    format: Annotated[Literal["auto", "json", "console"], Lowercase] = "auto"
    """`json` lines, readable `console` lines, or `auto`: json unless stderr is a terminal. Flag `--log-format`."""


class HTTPConfig(Section):
    """Limits of the HTTP listeners (uvicorn has no header deadline and no connection cap of its own)."""

    max_connections: Annotated[int, Field(ge=8, le=100_000)] = 1024
    """Open connections per listener, capped below the open-files limit (minus 128)."""
    header_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    """Seconds a new connection has to send its first request head."""
    keep_alive: Annotated[float, Field(gt=0, le=3600)] = 75.0
    """Seconds an idle kept-alive connection stays open."""


class WriteConcernConfig(Section):
    """Write concern of every write (never w=0)."""

    w: int | str | None = None
    """`majority`, a number of members, or a tag set's name; null is the server's default. 0 is refused."""
    j: bool | None = None
    """Wait for the journal; null is the server's default."""
    wtimeout: Annotated[int, Field(ge=0)] | None = None
    """Milliseconds to wait for the write concern; null is no limit."""

    @rule("w", "j", "wtimeout")
    @staticmethod
    def _acknowledged(w: int | str | None, j: bool | None, wtimeout: int | None) -> Iterator[Problem]:
        """An acknowledged write concern the driver accepts (the client core's check: `w: 0` is refused)."""
        try:
            write_concern(w, j, wtimeout)
        except InvalidInput as exc:
            yield exc.field or "w", exc.message

    @property
    def given(self) -> bool:
        """True when any part is set (otherwise the server's default applies)."""
        return self.w is not None or self.j is not None or self.wtimeout is not None


class MongoConfig(Section):
    """How to reach MongoDB."""

    uri: MongoURI | None = Field(default=None, examples=["mongodb://127.0.0.1:27017/?replicaSet=rs0"])
    """The connection string, a secret when it holds a password: then prefer `uri_file` or the environment
    variable. The `--mongo-uri` flag sets it too, visible in `ps`."""
    uri_file: UriFile | None = Field(default=None, examples=["/run/secrets/mongodb-uri"])
    """A file holding the connection string, instead of `uri` (surrounding whitespace is stripped)."""
    timeout: PositiveSeconds = 10.0
    """Seconds one MongoDB operation may take in all, the wait for a server included."""
    server_selection_timeout: PositiveSeconds = 5.0
    """Seconds an operation waits for a usable server when none is known (matters only below `timeout`)."""
    read_preference: ReadPreference = "primary"
    """Members the statistics reads may use; writes, hand-outs and the admin API always use the primary."""
    write_concern: WriteConcernConfig = WriteConcernConfig()
    """Write concern of every write the daemon makes; `{w: majority}` on a replica set."""

    _uri: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _load(self) -> MongoConfig:
        """The connection string, from `uri` or read from `uri_file` once."""
        if self.uri is not None:
            self._uri = self.uri.get_secret_value()
        elif self.uri_file is not None:
            self._uri = read_secret(self.uri_file)
        return self

    def uri_value(self) -> str:
        """The connection string (secret: never log it)."""
        if self._uri is None:
            raise ConfigError([("mongodb.uri", "required")])
        return self._uri


class AdminToken(Section):
    """One admin API credential."""

    name: Name
    """Who uses it: the actor recorded in the audit trail."""
    role: Literal["read", "write"] = "read"
    """`read` may call the GET routes, `write` every route."""
    token: SecretStr | None = None
    """The token itself, at least 24 characters (a secret: prefer `token_file` or the environment variable)."""
    token_file: SecretFile | None = None
    """A file holding the token, instead of `token` (surrounding whitespace is stripped)."""

    _secret: str = PrivateAttr(default="")

    @rule("token", "token_file")
    @staticmethod
    def _one_good_token(token: SecretStr | None, token_file: Path | None) -> Iterator[Problem]:
        """Exactly one of `token` and `token_file`, and the token has at least 24 characters."""
        if (token is None) == (token_file is None):
            yield "", "set exactly one of token and token_file"
            return
        problem = token_problem(token.get_secret_value() if token is not None else read_secret(Path(str(token_file))))
        if problem:
            yield "", problem

    @model_validator(mode="after")
    def _load(self) -> AdminToken:
        """The token, from `token` or read from `token_file` once."""
        self._secret = (
            self.token.get_secret_value() if self.token is not None else read_secret(Path(str(self.token_file)))
        )
        return self

    def secret(self) -> str:
        """The token value (secret: never log it)."""
        return self._secret


class AuditConfig(Section):
    """Where admin actions are recorded and for how long."""

    database: DatabaseName = "session_pool_exporter"
    """Database of the audit trail."""
    collection: CollectionName = "audit"
    """Collection of the audit trail."""
    retention: Annotated[int, Field(gt=0)] = 7_776_000
    """Seconds an audit event is kept (a TTL index; 90 days)."""


class AdminConfig(Section):
    """The admin API (off when no token is configured), on a listener of its own by default."""

    tokens: list[AdminToken] = Field(
        default=[],
        examples=[
            [
                {"name": "alice", "role": "write", "token_file": "/run/secrets/alice-token"},
                {"name": "grafana", "role": "read", "token_file": "/run/secrets/grafana-token"},
            ]
        ],
    )
    """Credentials of the admin API; none turns it off (404). The environment variable
    SESSION_POOL_EXPORTER_ADMIN_TOKEN adds a `write` token named `admin`."""
    listen: Listen | None = DEFAULT_ADMIN_LISTEN
    """The admin API's own listener; null serves it on the main listener (`listen`)."""
    tls: TLSConfig | None = None
    """HTTPS for the admin listener: `{cert_file, key_file}` as in `tls`."""
    allow_plaintext: bool = False
    """Allow admin writes over plain HTTP on an address other than loopback (a TLS proxy in front)."""
    request_timeout: PositiveSeconds = 30.0
    """Seconds an admin request may spend on MongoDB in all (then 504, nothing half-applied)."""
    expose_credentials: bool = False
    """Include the `session` field (credentials) in admin reads."""
    max_period: Annotated[int, Field(gt=0, le=int(MAX_PERIOD.total_seconds()))] = 604_800
    """Seconds: the longest lock or block an operator may set."""
    bulk_unlock_cap: Annotated[int, Field(ge=1)] = 1000
    """Most sessions one bulk unlock may change (more: 409, nothing changed)."""
    reason_max_length: Annotated[int, Field(ge=1)] = 500
    """Characters of an action's `reason`."""
    read_searches_per_minute: Annotated[int, Field(ge=1, le=10_000)] = 30
    """Searches a read token may make per minute on masked fields (matched whole, never by prefix); then 429."""
    audit: AuditConfig = AuditConfig()
    """The audit trail of admin actions."""
    write_concern: WriteConcernConfig | None = None
    """`{w, j, wtimeout}` of admin writes; null uses `mongodb.write_concern`."""

    @property
    def enabled(self) -> bool:
        """True when at least one token is configured."""
        return bool(self.tokens)


class Config(Section):
    """The whole daemon configuration (docs/reference/configuration.md lists every key)."""

    listen: Listen = DEFAULT_LISTEN
    """Where `/metrics`, `/healthz` and `/readyz` are served. The `--listen` flag sets it."""
    tls: TLSConfig | None = Field(
        default=None,
        examples=[
            {"cert_file": "/etc/session-pool-exporter/tls.crt", "key_file": "/etc/session-pool-exporter/tls.key"}
        ],
    )
    """HTTPS for `listen`: a certificate and its key; null serves plain HTTP."""
    http: HTTPConfig = HTTPConfig()
    """Limits of both listeners."""
    log: LogConfig = LogConfig()
    """Log level and format."""
    mongodb: MongoConfig = MongoConfig()
    """How to reach MongoDB: `uri` or `uri_file` is required."""
    defaults: PoolOptions = PoolOptions()
    """Options every pool inherits unless it sets them itself."""
    pools: list[PoolDefinition] = Field(
        default=[],
        examples=[
            [
                {
                    "name": "telegram",
                    "database": "sessions",
                    "collection": "telegram",
                    "session_fields": {"search": ["phone", "login"]},
                    "interval": 30,
                }
            ]
        ],
    )
    """The pools, each one collection of sessions; any key of `defaults` may be set per pool. The flags
    `--database`, `--collection` and `--pool-name` define a single pool instead."""
    discovery: list[DiscoveryConfig] = Field(
        default=[],
        examples=[
            [{"databases": ["sessions"], "include": ["tg_*"], "exclude": ["*_archive"], "options": {"interval": 30}}]
        ],
    )
    """Pools found by listing collections, listed again every `interval` seconds (no restart needed)."""
    shard: ShardConfig = ShardConfig()
    """Several daemons sharing the pools (the manual's Scaling page); by default one daemon watches them all."""
    max_concurrent_refreshes: Annotated[int, Field(ge=1, le=1000)] = 16
    """Refreshes and sums passes talking to MongoDB at once; the others wait their turn."""
    admin: AdminConfig = AdminConfig()
    """The admin API and the console; off without tokens."""

    @model_validator(mode="wrap")
    @classmethod
    def _inherit_defaults(cls, data: Any, handler: ModelWrapValidatorHandler[Config]) -> Config:
        """Each pool, and each discovery source's options, starts from `defaults`; its own keys win.

        A problem that comes wholly from `defaults` is reported once, at `defaults`, not again under every pool.
        """
        defaults = data.get("defaults") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(defaults, dict):
            return handler(data)
        inherited = {key: value for key, value in defaults.items() if key in PoolOptions.model_fields}
        merged = dict(data)
        if isinstance(data.get("pools"), list):
            merged["pools"] = [inherit(inherited, p) if isinstance(p, dict) else p for p in data["pools"]]
        if isinstance(data.get("discovery"), list):
            merged["discovery"] = [
                {**source, "options": inherit(inherited, source["options"])}
                if isinstance(source, dict) and isinstance(source.get("options"), dict)
                else source
                for source in data["discovery"]
            ]
        try:
            return handler(merged)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            kept = [error for error in errors if not _from_defaults(error, data, inherited)]
            if not kept or len(kept) == len(errors):
                raise
            raise ValidationError.from_exception_data(cls.__name__, [again(error) for error in kept]) from None

    @rule("mongodb.uri", "mongodb.uri_file")
    @staticmethod
    def _one_mongodb_uri(uri: SecretStr | None, uri_file: Path | None) -> Iterator[Problem]:
        """Exactly one of `mongodb.uri` and `mongodb.uri_file` (from the file, the environment or `--mongo-uri`)."""
        if uri is None and uri_file is None:
            yield (
                "mongodb.uri",
                f"required: set mongodb.uri or mongodb.uri_file, {ENV_PREFIX}MONGODB__URI, or --mongo-uri",
            )
        elif uri is not None and uri_file is not None:
            yield "mongodb", "set only one of uri and uri_file"

    @rule(Given("pools"), Given("discovery"))
    @staticmethod
    def _something_to_watch(pools: bool, discovery: bool) -> Iterator[Problem]:
        """At least one pool or discovery source."""
        if not pools and not discovery:
            yield "pools", "at least one pool or discovery source is required (or give --database and --collection)"

    @rule("pools[].name")
    @staticmethod
    def _distinct_pool_names(names: list[tuple[int, str]]) -> Iterator[Problem]:
        """Pool names are distinct."""
        yield from _duplicates("pools", "name", "pool name", names)

    @rule("admin.tokens[].name")
    @staticmethod
    def _distinct_token_names(names: list[tuple[int, str]]) -> Iterator[Problem]:
        """Admin token names are distinct."""
        yield from _duplicates("admin.tokens", "name", "token name", names)

    @rule("admin.tokens[]")
    @staticmethod
    def _distinct_token_values(tokens: list[tuple[int, AdminToken]]) -> Iterator[Problem]:
        """Admin token values are distinct."""
        seen: dict[str, int] = {}
        for i, token in tokens:
            if token.secret() in seen:
                yield f"admin.tokens[{i}]", f"same token value as admin.tokens[{seen[token.secret()]}]"
            else:
                seen[token.secret()] = i

    @rule("listen", "admin.listen", Given("admin.tokens"))
    @staticmethod
    def _admin_port_of_its_own(listen: str, admin_listen: str | None, enabled: bool) -> Iterator[Problem]:
        """With the admin API on, `admin.listen` does not use the port of `listen`."""
        if enabled and admin_listen is not None and parse_listen(admin_listen)[1] == parse_listen(listen)[1]:
            yield "admin.listen", f"uses the port of listen ({listen}); pick another, or null"

    @rule("admin.listen", "admin.tls", "admin.allow_plaintext", Given("admin.tokens"))
    @staticmethod
    def _admin_listener_encrypted(
        listen: str | None, tls: TLSConfig | None, plaintext: bool, enabled: bool
    ) -> Iterator[Problem]:
        """The admin API's own listener (`admin.listen`) on an address other than loopback has `admin.tls`,
        or `admin.allow_plaintext: true` says a TLS proxy sits in front."""
        if enabled and listen is not None and tls is None and not plaintext:
            yield from _plaintext("admin.listen", listen, "admin.tls")

    @rule("listen", "tls", "admin.listen", "admin.allow_plaintext", Given("admin.tokens"))
    @staticmethod
    def _admin_on_main_listener_encrypted(
        listen: str, tls: TLSConfig | None, admin_listen: str | None, plaintext: bool, enabled: bool
    ) -> Iterator[Problem]:
        """The admin API on the main listener (`admin.listen: null`) of an address other than loopback needs
        `tls`, or `admin.allow_plaintext: true`."""
        if enabled and admin_listen is None and tls is None and not plaintext:
            yield from _plaintext("listen", listen, "tls")

    @property
    def listen_host(self) -> str:
        """Host part of `listen`."""
        return parse_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        """Port part of `listen`."""
        return parse_listen(self.listen)[1]

    def pool_settings(self) -> list[PoolDefinition]:
        """Every pool, with what it inherits from `defaults` applied."""
        return list(self.pools)

    def admin_listener(self) -> tuple[str, TLSConfig | None]:
        """Where the admin API is served (HOST:PORT) and with which TLS: its own listener, or the main one."""
        if self.admin.listen is None:
            return self.listen, self.tls
        return self.admin.listen, self.admin.tls

    def admin_write_concern(self) -> WriteConcernConfig:
        """Write concern of admin writes: `admin.write_concern`, else `mongodb.write_concern`."""
        return self.admin.write_concern or self.mongodb.write_concern

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as plain data with every secret masked (for logs)."""
        data: dict[str, Any] = self.model_dump(mode="json")
        data["mongodb"]["uri"] = redact(self.mongodb.uri_value())
        for token in data["admin"]["tokens"]:
            token["token"] = "**********"  # noqa: S105 - the mask, not a password
        return data


def _duplicates(section: str, key: str, what: str, values: list[tuple[int, str]]) -> Iterator[Problem]:
    """A problem for each value seen before in a list."""
    seen: dict[str, int] = {}
    for i, value in values:
        if value in seen:
            yield f"{section}[{i}].{key}", f"duplicate {what} {value!r} (also {section}[{seen[value]}])"
        else:
            seen[value] = i


def _plaintext(where: str, address: str, tls_key: str) -> Iterator[Problem]:
    """The refusal of admin writes over plain HTTP on `address`, unless it is loopback."""
    if not is_loopback(parse_listen(address)[0]):
        yield (
            where,
            f"the admin API would accept writes over plain HTTP on {address}: give it TLS ({tls_key}), "
            "listen on 127.0.0.1, or set admin.allow_plaintext: true if a proxy in front terminates TLS",
        )


def _sets(data: Any, path: tuple[int | str, ...]) -> bool:
    """Whether raw data sets a value at `path`."""
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _from_defaults(error: Any, data: dict[str, Any], inherited: dict[str, Any]) -> bool:
    """Whether a problem of a pool (or of a source's options) comes wholly from what it inherited from `defaults`."""
    loc = tuple(error["loc"])
    if len(loc) > 2 and loc[0] == "pools":
        own, rest = _item(data, "pools", loc[1]), loc[2:]
    elif len(loc) > 3 and loc[0] == "discovery" and loc[2] == "options":
        source = _item(data, "discovery", loc[1])
        own, rest = source.get("options") if isinstance(source, dict) else None, loc[3:]
    else:
        return False
    if not isinstance(own, dict):
        return False
    if error["type"] == RULE_ERROR:
        at = parse_loc(error["ctx"]["at"])
        if rest[len(rest) - len(at) :] != at:
            return False  # a rule of the whole config (distinct pool names), not one of the pool's
        section = rest[: len(rest) - len(at)]
        paths = [section + parse_loc(key) for key in error["ctx"]["reads"]]
    else:
        paths = [rest]
    return not any(_sets(own, path) for path in paths) and any(_sets(inherited, path) for path in paths)


def _item(data: dict[str, Any], key: str, index: int | str) -> Any:
    """Item `index` of the raw list `data[key]`, or None."""
    items = data.get(key)
    return items[index] if isinstance(items, list) and isinstance(index, int) and index < len(items) else None
