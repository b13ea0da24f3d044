"""The admin API: a service applying operators' actions with an audit trail, and its HTTP routes."""

from exporter.admin.actions import ACTIONS
from exporter.admin.auth import Caller
from exporter.admin.errors import (
    AdminDisabled,
    AdminError,
    BadRequest,
    BodyTooLarge,
    Conflict,
    Forbidden,
    InvalidRequest,
    PoolNotFound,
    ShuttingDown,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)
from exporter.admin.http import AdminHTTP
from exporter.admin.models import Action
from exporter.admin.openapi import openapi_document
from exporter.admin.service import AdminService

__all__ = [
    "ACTIONS",
    "Action",
    "AdminDisabled",
    "AdminError",
    "AdminHTTP",
    "AdminService",
    "BadRequest",
    "BodyTooLarge",
    "Caller",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "PoolNotFound",
    "ShuttingDown",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "openapi_document",
]
