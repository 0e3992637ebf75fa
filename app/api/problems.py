"""The JSON API's surface: RFC 9457 problem documents and headers for a
machine client (nothing may be rendered, framed or cached)."""

from __future__ import annotations

from typing import Any

from flask import Response, json
from werkzeug.wrappers import Response as BaseResponse

from app.errors import FieldError
from app.http.surfaces import Problem, Surface

PROBLEM_BASE = "https://privid.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

API_SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


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


def _render(problem: Problem) -> Response:
    return problem_response(
        problem.slug, problem.status, problem.title, problem.detail, problem.errors, problem.headers
    )


def _secure(response: BaseResponse) -> None:
    for name, value in API_SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")


JSON_API = Surface("json-api", _render, _secure)
