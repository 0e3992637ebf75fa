"""Password strength, asked while a password is being typed: the verdict the
registration itself would give, from the same policy."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from app.api.operations import operation
from app.api.schemas import PasswordCheck, PasswordVerdict
from app.extensions import limiter
from app.http.access import public
from app.http.limits import setting
from app.http.scope import services

bp = Blueprint("passwords", __name__, url_prefix="/api/v1/password")
TAG = "registration"


@bp.post("/check")
@public()
@limiter.limit(setting("limit_password_check_per_ip"))
@operation(
    "Would registration accept this password? (live feedback while typing; nothing is stored)",
    tag=TAG,
    body=PasswordCheck,
    responses={200: ("The verdict, with a stable reason code when refused", PasswordVerdict)},
)
def check(body: PasswordCheck) -> ResponseReturnValue:
    rejected = services().registration.judge_password(
        body.password, email=body.email, phone=body.phone, full_name=body.full_name
    )
    verdict = PasswordVerdict(
        acceptable=rejected is None, reason=rejected.code if rejected else None
    )
    return jsonify(verdict.model_dump(mode="json"))
