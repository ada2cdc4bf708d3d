"""Typed errors from Tailor's error body `{"error": {"code", "message", "details"?}}`.

The class follows the HTTP status (every `*_not_found` code is a `NotFoundError`), and
a few codes an app acts on get their own subclass (`concurrent_update`: read again and
retry). `code` always carries the service's exact code, so nothing is lost for codes
this client does not know yet."""

from __future__ import annotations

from typing import Any


class TailorError(Exception):
    """Any error answer from Tailor (or a stream that failed midway)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after


class UnauthorizedError(TailorError):
    """401: the API key (or admin token) is missing, wrong, revoked or expired."""


class ForbiddenError(TailorError):
    """403: e.g. a user-bound key on a tenant-wide route."""


class NotFoundError(TailorError):
    """404: missing, or another tenant's or user's object (they look the same)."""


class ConflictError(TailorError):
    """409: e.g. `user_exists`, `idempotency_key_in_use`."""


class ConcurrentUpdateError(ConflictError):
    """409 `concurrent_update`: another write won the race; read again and retry."""


class SuggestionAlreadyDecidedError(ConflictError):
    """409 `suggestion_already_decided`: it was accepted or rejected before (perhaps by
    another device); list the suggestions again rather than retrying."""


class PreconditionFailedError(TailorError):
    """412: If-Match named a version that is no longer the current one."""


class PayloadTooLargeError(TailorError):
    """413: the body is over the server's limit."""


class ValidationError(TailorError):
    """422: the request broke a rule of the schema or of the domain (see `details`);
    also `unsupported_parameter` (the model cannot honour a field sent) and
    `backend_rejected_request` (the model server refused the request as invalid)."""


class RateLimitedError(TailorError):
    """429 after the client's retries: rate limit, full edit or capture queue
    (`capture_queue_full`) or busy model."""


class BackendError(TailorError):
    """502, or 503 `backend_unavailable`: the model behind Tailor failed."""


class UnavailableError(TailorError):
    """503 after the client's retries: e.g. the replica is still loading its index."""


_BY_STATUS: dict[int, type[TailorError]] = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    412: PreconditionFailedError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitedError,
    502: BackendError,
    503: UnavailableError,
}

# By code as well as by status: a stream's `error` event arrives after a 200, so only
# its code can type it.
_BY_CODE: dict[str, type[TailorError]] = {
    "concurrent_update": ConcurrentUpdateError,
    "suggestion_already_decided": SuggestionAlreadyDecidedError,
    "capture_queue_full": RateLimitedError,
    "unsupported_parameter": ValidationError,
    "backend_rejected_request": ValidationError,
    "backend_unavailable": BackendError,
    "backend_error": BackendError,
}


def error_class(status: int, code: str) -> type[TailorError]:
    return _BY_CODE.get(code) or _BY_STATUS.get(status, TailorError)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header; Tailor sends seconds, never an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_body(
    status: int, body: Any, fallback_text: str = "", retry_after: float | None = None
) -> TailorError:
    """The typed error for an answer's status and JSON body (or its text when the body
    is not Tailor's error shape, e.g. from a proxy in front of it)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or "http_error")
        message = str(error.get("message") or "")
        details = error.get("details")
    else:
        code, message, details = "http_error", fallback_text[:300], None
    return error_class(status, code)(
        status,
        code,
        message,
        details=details if isinstance(details, list) else None,
        retry_after=retry_after,
    )
