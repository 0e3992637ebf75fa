"""A surface is one way the service answers: the JSON API with problem
documents, the pages with HTML, the OAuth endpoints with RFC 6749 errors.
Each renders errors and sets security headers its own way; which surface a
request belongs to follows from its blueprint (a capability says which
surface each of its blueprints is on), or, for an address no blueprint
claims, from the surfaces' own ``claims`` tests, else the default."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Blueprint, Flask, current_app, g, request
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Response

from app import metrics
from app.errors import FieldError, ServiceError
from app.http.unit_of_work import record_failure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    """An error, before a surface gives it form (RFC 9457 fields)."""

    slug: str
    status: int
    title: str
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Surface:
    name: str
    render: Callable[[Problem], Response]
    secure: Callable[[Response], None]
    # For a request no blueprint took (an unknown address): is it ours?
    claims: Callable[[], bool] = lambda: False


@dataclass
class Surfaces:
    default: Surface
    by_blueprint: dict[str, Surface] = field(default_factory=dict)
    others: list[Surface] = field(default_factory=list)

    def adopt(self, blueprint: Blueprint, surface: Surface) -> None:
        self.by_blueprint[blueprint.name] = surface
        if surface is not self.default and surface not in self.others:
            self.others.append(surface)

    def current(self) -> Surface:
        name = request.blueprint or _blueprint_refusing_the_method()
        if name is not None:
            known = self.by_blueprint.get(name) or self.by_blueprint.get(name.split(".")[0])
            if known is not None:
                return known
        for surface in self.others:
            if surface.claims():
                return surface
        return self.default


def _blueprint_refusing_the_method() -> str | None:
    """A 405 matched no rule, so it has no blueprint; the address belongs to
    the blueprint whose rule takes another method, and so does the answer."""
    error = request.routing_exception
    if not isinstance(error, MethodNotAllowed) or not error.valid_methods:
        return None
    adapter = current_app.create_url_adapter(request)
    if adapter is None:
        return None
    try:
        endpoint, _ = adapter.match(request.path, method=next(iter(error.valid_methods)))
    except HTTPException:
        return None
    blueprint, dot, _ = str(endpoint).rpartition(".")
    return blueprint if dot else None


def current_surface() -> Surface:
    surfaces: Surfaces = current_app.extensions["privid.surfaces"]
    return surfaces.current()


_HTTP_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("authentication-required", "Sign-in required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}
_HTTP_DETAILS = {
    413: "The request body is larger than this service accepts.",
    404: "There is nothing at this address.",
    405: "This address does not accept that method.",
}


def problem_of_service_error(error: ServiceError) -> Problem:
    if "Retry-After" in error.headers:
        # Kept for the hook in create_app: flask-limiter would overwrite it.
        g.privid_retry_after = error.headers["Retry-After"]
    return Problem(
        error.slug, error.status, error.title, error.detail, error.errors, dict(error.headers)
    )


def problem_of_http_exception(error: HTTPException) -> Problem:
    status = error.code or 500
    slug, title = _HTTP_TITLES.get(status, ("http-error", error.name))
    detail = _HTTP_DETAILS.get(status, error.description or title)
    headers = {}
    allow = error.get_response().headers.get("Allow") if status == 405 else None
    if allow:
        headers["Allow"] = allow
    return Problem(slug, status, title, detail, headers=headers)


RATE_LIMITED = Problem(
    "rate-limited",
    429,
    "Too many requests",
    "Too many requests of this kind. Wait a while and try again.",
)
INTERNAL_ERROR = Problem(
    "internal-error", 500, "Internal error", "Something went wrong on our side."
)


def _log_unexpected(error: Exception) -> None:
    # Exception messages can quote personal data or SQL parameters: log the
    # type and where it happened, never the message.
    stack = traceback.extract_tb(error.__traceback__)
    # Our own frames say where it went wrong; library frames only say how.
    frames = [f for f in stack if "/app/" in f.filename][-6:] or stack[-6:]
    where = " <- ".join(
        f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames)
    )
    log.error("unhandled %s at %s", type(error).__name__, where)


def install_surfaces(app: Flask, surfaces: Surfaces) -> None:
    """One set of error handlers and one header hook for the whole app, each
    handing over to the request's surface."""
    app.extensions["privid.surfaces"] = surfaces

    def answer(problem: Problem, *, keep_changes: bool = False) -> Response:
        record_failure(keep_changes=keep_changes)
        return current_surface().render(problem)

    def on_service_error(error: ServiceError) -> Response:
        return answer(problem_of_service_error(error), keep_changes=error.keep_changes)

    def on_rate_limit(_error: RateLimitExceeded) -> Response:
        metrics.rate_limited("requests")
        # flask-limiter adds Retry-After to this response after the handler runs.
        return answer(RATE_LIMITED)

    def on_http_exception(error: HTTPException) -> Response:
        return answer(problem_of_http_exception(error))

    def on_unexpected(error: Exception) -> Response:
        _log_unexpected(error)
        return answer(INTERNAL_ERROR)

    app.register_error_handler(ServiceError, on_service_error)
    app.register_error_handler(RateLimitExceeded, on_rate_limit)
    app.register_error_handler(HTTPException, on_http_exception)
    app.register_error_handler(Exception, on_unexpected)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        current_surface().secure(response)
        return response
