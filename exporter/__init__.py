"""session-pool-exporter: client core, monitoring daemon and admin API for MongoDB session pools."""

from exporter._version import __version__
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
