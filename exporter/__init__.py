"""session-pool-exporter: client core, monitoring daemon and admin API for MongoDB session pools."""

from importlib.metadata import PackageNotFoundError, version

from exporter.core import (
    STATES,
    Fields,
    Hold,
    InvalidInput,
    MongoSessions,
    OperationFailed,
    OperationTimeout,
    SessionNotFound,
    SessionPoolError,
    State,
    Statistics,
    Transaction,
    TransactionsUnsupported,
    Unavailable,
    classify,
    parse_period,
    parse_session_id,
)

try:
    __version__ = version("session-pool-exporter")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

MongoFields = Fields

__all__ = [
    "STATES",
    "Fields",
    "Hold",
    "InvalidInput",
    "MongoFields",
    "MongoSessions",
    "OperationFailed",
    "OperationTimeout",
    "SessionNotFound",
    "SessionPoolError",
    "State",
    "Statistics",
    "Transaction",
    "TransactionsUnsupported",
    "Unavailable",
    "__version__",
    "classify",
    "parse_period",
    "parse_session_id",
]
