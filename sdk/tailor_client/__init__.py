"""Tailor's Python client: `TailorClient` (sync) and `AsyncTailorClient` (asyncio),
with the same methods, typed answers (`tailor_client.types`), retries that honour
`Retry-After` (`RetryPolicy`) and typed errors by status and code."""

from tailor_client._core import Call, RetryPolicy
from tailor_client._http import AsyncHttp, SyncHttp
from tailor_client.async_client import AsyncTailorClient
from tailor_client.client import TailorClient
from tailor_client.errors import (
    BackendError,
    ConcurrentUpdateError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionFailedError,
    RateLimitedError,
    SuggestionAlreadyDecidedError,
    TailorError,
    UnauthorizedError,
    UnavailableError,
    ValidationError,
)

__all__ = [
    "AsyncHttp",
    "AsyncTailorClient",
    "BackendError",
    "Call",
    "ConcurrentUpdateError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PreconditionFailedError",
    "RateLimitedError",
    "RetryPolicy",
    "SuggestionAlreadyDecidedError",
    "SyncHttp",
    "TailorClient",
    "TailorError",
    "UnauthorizedError",
    "UnavailableError",
    "ValidationError",
]
