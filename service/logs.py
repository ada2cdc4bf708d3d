"""Log output: text for a terminal (the default) or one JSON object per line for a log
pipeline (TAILOR_LOG_FORMAT=json). Every line written while a request is handled carries
its request id.

What is logged never includes profile text: the access line names the route template,
not the raw path, and no code path logs a request or response body."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

# The id of the request being handled in this context (an asyncio task, or the worker
# thread a sync route runs in: anyio copies the context there).
request_id_var: ContextVar[str | None] = ContextVar("tailor_request_id", default=None)

# Fields an access line adds to its record (`extra=`), written as they are.
ACCESS_FIELDS = ("method", "route", "status", "latency_ms", "request_id", "aborted")

_HANDLER_MARK = "_tailor_handler"
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"


def _request_id(record: logging.LogRecord) -> str | None:
    explicit = getattr(record, "request_id", None)
    return explicit if isinstance(explicit, str) else request_id_var.get()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        request_id = _request_id(record)
        record.request_tag = f" [{request_id}]" if request_id else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the
    request id when there is one, an access line's fields, and a traceback as `exc`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = _request_id(record)
        if request_id:
            out["request_id"] = request_id
        for name in ACCESS_FIELDS:
            value = record.__dict__.get(name)
            if value is not None and name != "request_id":
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(
    level: str, log_format: Literal["text", "json"], stream: TextIO | None = None
) -> logging.Handler:
    """One Tailor handler on the root logger, replacing the one an earlier app in this
    process installed (tests build many apps)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


class _DropAll(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:  # noqa: ARG002
        return False


def adopt_server_loggers(log_format: Literal["text", "json"]) -> None:
    """Run once the server is up (its logging is configured by then). uvicorn's own
    access line would log every request a second time, with the raw path (user ids);
    Tailor's access line replaces it. In JSON mode uvicorn's other lines go through the
    root handler too, so the output stays one format."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _DropAll) for f in access.filters):
        access.addFilter(_DropAll())
    if log_format == "json":
        for name in ("uvicorn", "uvicorn.error"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
