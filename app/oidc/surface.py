"""The OAuth surface: errors as RFC 6749 section 5.2 JSON (``error``,
``error_description``), never problem documents, because relying-party
libraries read those members. authlib answers its own errors this way; this
renders the ones raised around it (the gate, DPoP proofs, rate limits, 404s,
405s, 500s)."""

from __future__ import annotations

from flask import Response, json, request
from werkzeug.wrappers import Response as BaseResponse

from app.api.problems import API_SECURITY_HEADERS
from app.http.surfaces import Problem, Surface

# Problem slugs with an OAuth name of their own; any other is invalid_request
# (4xx) or server_error (5xx).
OAUTH_ERRORS = {
    "invalid-dpop-proof": "invalid_dpop_proof",
    "authentication-required": "invalid_token",
    "rate-limited": "temporarily_unavailable",
    "service-unavailable": "temporarily_unavailable",
    "forbidden": "access_denied",
}


def oauth_error(problem: Problem) -> str:
    if problem.slug in OAUTH_ERRORS:
        return OAUTH_ERRORS[problem.slug]
    return "server_error" if problem.status >= 500 else "invalid_request"


def _render(problem: Problem) -> Response:
    body = {"error": oauth_error(problem), "error_description": problem.detail}
    response = Response(json.dumps(body), status=problem.status, mimetype="application/json")
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def _secure(response: BaseResponse) -> None:
    for name, value in API_SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    # RFC 6749 section 5.1: token answers are never cached; nor is anything else here.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Pragma", "no-cache")


def _claims() -> bool:
    # Unknown addresses under the provider's prefix answer in its form.
    return request.path.startswith("/oauth/")


OAUTH = Surface("oauth", _render, _secure, _claims)
