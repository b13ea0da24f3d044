"""The client core handlers embed: MongoSessions, the state model and the core's errors."""

from exporter.core.client import MongoSessions
from exporter.core.errors import (
    InvalidInput,
    OperationFailed,
    OperationTimeout,
    SessionNotFound,
    SessionPoolError,
    TransactionsUnsupported,
    Unavailable,
    guard,
    redact,
)
from exporter.core.fields import MongoFields
from exporter.core.model import (
    MAX_PERIOD,
    PERIOD_UNITS,
    STATES,
    Document,
    Fields,
    Hold,
    Period,
    State,
    Statistics,
    classify,
    parse_period,
    parse_session_id,
    recorded_hold,
    session_filter,
)
from exporter.core.operations import DbSession, Transaction

__all__ = [
    "MAX_PERIOD",
    "PERIOD_UNITS",
    "STATES",
    "DbSession",
    "Document",
    "Fields",
    "Hold",
    "InvalidInput",
    "MongoFields",
    "MongoSessions",
    "OperationFailed",
    "OperationTimeout",
    "Period",
    "SessionNotFound",
    "SessionPoolError",
    "State",
    "Statistics",
    "Transaction",
    "TransactionsUnsupported",
    "Unavailable",
    "classify",
    "guard",
    "parse_period",
    "parse_session_id",
    "recorded_hold",
    "redact",
    "session_filter",
]
