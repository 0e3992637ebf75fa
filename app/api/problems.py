"""RFC 9457 problem documents: the one place errors become HTTP responses."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from flask import Flask, Response, g, json
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import HTTPException

from app.errors import FieldError, ServiceError

PROBLEM_BASE = "https://privid.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

log = logging.getLogger(__name__)


def problem_response(
    slug: str,
    status: int,
    title: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [{"pointer": e.pointer, "detail": e.detail} for e in errors]
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _from_service_error(error: ServiceError) -> Response:
    g.keep_changes = error.keep_changes
    if "Retry-After" in error.headers:
        # Kept for the hook in create_app: flask-limiter would overwrite it.
        g.privid_retry_after = error.headers["Retry-After"]
    return problem_response(
        error.slug, error.status, error.title, error.detail, error.errors, error.headers
    )


_HTTP_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("authentication-required", "Sign-in required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def _from_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    slug, title = _HTTP_SLUGS.get(status, ("http-error", error.name))
    detail = {
        413: "The request body is larger than this service accepts.",
        404: "There is nothing at this address.",
        405: "This address does not accept that method.",
    }.get(status, error.description or title)
    headers = {}
    if status == 405 and error.get_response().headers.get("Allow"):
        headers["Allow"] = error.get_response().headers["Allow"]
    return problem_response(slug, status, title, detail, headers=headers)


def _from_rate_limit(error: RateLimitExceeded) -> Response:
    # flask-limiter adds Retry-After to this response after the handler runs.
    return problem_response(
        "rate-limited",
        429,
        "Too many requests",
        "Too many requests of this kind. Wait a while and try again.",
    )


def _from_unexpected(error: Exception) -> Response:
    # Exception messages can quote personal data or SQL parameters: log the
    # type and where it happened, never the message.
    stack = traceback.extract_tb(error.__traceback__)
    # Our own frames say where it went wrong; library frames only say how.
    frames = [f for f in stack if "/app/" in f.filename][-6:] or stack[-6:]
    where = " <- ".join(
        f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames)
    )
    log.error("unhandled %s at %s", type(error).__name__, where)
    return problem_response(
        "internal-error", 500, "Internal error", "Something went wrong on our side."
    )


def register_problem_handlers(app: Flask) -> None:
    app.register_error_handler(ServiceError, _from_service_error)
    app.register_error_handler(RateLimitExceeded, _from_rate_limit)
    app.register_error_handler(HTTPException, _from_http_exception)
    app.register_error_handler(Exception, _from_unexpected)
