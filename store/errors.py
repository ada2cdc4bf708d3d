"""Domain errors. Each carries a stable machine-readable code; service/errors.py maps
them to HTTP statuses in one table."""

from __future__ import annotations


class TailorError(Exception):
    code = "error"

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        if code is not None:
            self.code = code


class NotFound(TailorError):
    code = "not_found"


class Conflict(TailorError):
    code = "conflict"


class Forbidden(TailorError):
    code = "forbidden"


class Unauthorized(TailorError):
    code = "invalid_api_key"


class NotReady(TailorError):
    code = "not_ready"


class InvalidInput(TailorError):
    code = "invalid_input"


class Overloaded(TailorError):
    """Refused at once rather than queued without bound: retry after `retry_after`."""

    code = "overloaded"


class PreconditionFailed(TailorError):
    """The client's `If-Match` names a version that is no longer the current one."""

    code = "precondition_failed"
