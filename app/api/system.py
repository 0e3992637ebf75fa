"""Liveness, readiness and the API description."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from app.api.openapi_doc import build_openapi
from app.api.operations import operation
from app.api.problems import problem_response
from app.api.schemas import Health
from app.extensions import limiter
from app.http.access import public

bp = Blueprint("system", __name__)
TAG = "system"


@bp.get("/healthz")
@public()
@limiter.exempt
@operation("The process is up", tag=TAG, responses={200: ("Up", Health)})
def healthz() -> ResponseReturnValue:
    return jsonify(Health(status="ok").model_dump())


@bp.get("/readyz")
@public()
@limiter.exempt
@operation(
    "The database and the rate-limit storage answer",
    tag=TAG,
    responses={200: ("Ready", Health)},
)
def readyz() -> ResponseReturnValue:
    checks = {"database": "ok", "ratelimit_storage": "ok"}
    try:
        with current_app.extensions["privid.engine"].connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # any failure means "not ready"; details stay in the logs
        checks["database"] = "unreachable"
    try:
        if not limiter.storage.check():
            checks["ratelimit_storage"] = "unreachable"
    except Exception:
        checks["ratelimit_storage"] = "unreachable"
    if any(value != "ok" for value in checks.values()):
        failing = ", ".join(k for k, v in checks.items() if v != "ok")
        return problem_response(
            "not-ready", 503, "Not ready", f"Cannot reach: {failing}.", headers={"Retry-After": "5"}
        )
    return jsonify(Health(status="ready", checks=checks).model_dump())


@bp.get("/openapi.json")
@public()
@limiter.exempt
def openapi() -> ResponseReturnValue:
    try:
        app_version = version("privid")
    except PackageNotFoundError:
        app_version = "0.0.0"
    cookie = current_app.extensions["privid.settings"].session_cookie_name
    return jsonify(build_openapi(current_app, app_version, cookie))
