"""Log lines: one JSON object each (time, level, logger, message, request_id
and the record's extra fields), or a readable line for development
(PRIVID_LOG_FORMAT=text). Every handler installed here redacts (redaction.py)
and stamps the request id, whichever logger the record came from: the app's,
gunicorn's, werkzeug's or a library's."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from app.telemetry import request_id
from app.telemetry.redaction import redact

JSON = "json"
TEXT = "text"
# What every LogRecord has; anything else on a record is an extra field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class RequestIdFilter(logging.Filter):
    """Stamps the current request id, unless the record brings its own (an
    access-log line written after the request's context has ended)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.current()
        return True


class RedactionFilter(logging.Filter):
    """Redacts the message, string extra fields and the exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        for key, value in extra_fields(record).items():
            if isinstance(value, str):
                setattr(record, key, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in extra_fields(record).items():
            line.setdefault(key, value)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message key=value ...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in extra_fields(record).items())
        return f"{line} {extras}" if extras else line


def make_handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (stderr by default) in ``log_format`` that redacts and
    stamps request ids."""
    handler = logging.StreamHandler(stream or sys.stderr)
    dress(handler, log_format)
    return handler


def dress(handler: logging.Handler, log_format: str) -> None:
    """Gives an existing handler (gunicorn's) the format and both filters."""
    handler.setFormatter(JsonFormatter() if log_format == JSON else TextFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactionFilter())


def configure_logging(log_format: str, level: str, stream: TextIO | None = None) -> logging.Handler:
    """The root logger writes through one such handler (a process's entry
    point calls this: `privid serve`, `privid worker`, gunicorn's logger)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = make_handler(log_format, stream)
    root.addHandler(handler)
    root.setLevel(level)
    # Python's warnings are written to stderr as they are; send them through
    # the handler too.
    logging.captureWarnings(True)
    return handler
