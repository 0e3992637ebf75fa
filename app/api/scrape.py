"""GET /metrics for Prometheus, behind a bearer token from settings
(PRIVID_METRICS_TOKEN). With no token configured the endpoint does not exist
(404, like any unknown address); a wrong or missing token gets 401."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.exceptions import NotFound

from app.errors import ServiceError
from app.extensions import current_settings, limiter
from app.http.access import public
from app.telemetry.scrape import exposition

bp = Blueprint("metrics", __name__)


def _token_sent() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@bp.get("/metrics")
@public()
@limiter.exempt
def scrape() -> Response:
    expected = current_settings().metrics_token.get_secret_value()
    if not expected:
        raise NotFound()
    if not hmac.compare_digest(_token_sent().encode(), expected.encode()):
        raise ServiceError(
            "metrics-token-required",
            401,
            "Metrics token required",
            "Send the metrics token as a bearer token.",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    runtime = current_app.extensions["privid.runtime"]
    body = exposition(current_app.extensions["privid.session_factory"], runtime.clock)
    return Response(body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
