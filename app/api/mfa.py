"""Second factors and step-up for the signed-in user."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from app.api.operations import operation
from app.api.render import session_payload
from app.api.schemas import (
    CodeConfirm,
    MfaStatus,
    RecoveryCodes,
    SessionOut,
    StepUpIn,
    TotpEnrolment,
)
from app.extensions import limiter
from app.http.access import SECOND_FACTOR_ENROLMENT, signed_in
from app.http.cookies import attach_session_cookie
from app.http.gate import current_caller
from app.http.limits import setting
from app.http.scope import services

bp = Blueprint("mfa", __name__, url_prefix="/api/v1/me")
TAG = "second factors"


@bp.post("/step-up")
@signed_in()
@limiter.limit(setting("limit_login_per_ip"))
@operation(
    "Prove it is you again (password, and TOTP when enabled); the session gets a new token",
    tag=TAG,
    body=StepUpIn,
    responses={200: ("Raised", SessionOut)},
)
def step_up(body: StepUpIn) -> ResponseReturnValue:
    caller = current_caller()
    issued = services().step_up.with_password(
        caller.session, caller.user, body.password, body.totp_code
    )
    response = jsonify(SessionOut.model_validate(session_payload(issued)).model_dump(mode="json"))
    attach_session_cookie(response, issued)
    return response


@bp.get("/mfa")
@signed_in()
@operation("My second factors", tag=TAG, responses={200: ("Status", MfaStatus)})
def status() -> ResponseReturnValue:
    caller = current_caller()
    totp = services().totp
    body = MfaStatus(
        totp_enabled=totp.is_enabled(caller.user.id),
        recovery_codes_remaining=totp.remaining_recovery_codes(caller.user.id),
    )
    return jsonify(body.model_dump())


@bp.post("/mfa/totp")
@signed_in(step_up=SECOND_FACTOR_ENROLMENT)
@operation(
    "Start TOTP enrolment: the secret, its otpauth URI and a QR code",
    tag=TAG,
    responses={201: ("Scan it, then confirm with a code", TotpEnrolment)},
)
def enrol() -> ResponseReturnValue:
    # Adding the factor needs as fresh a proof as removing it.
    caller = current_caller()
    enrolment = services().totp.enrol(caller.user)
    body = TotpEnrolment(
        secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri, qr_svg=enrolment.qr_svg
    )
    return jsonify(body.model_dump()), 201


@bp.post("/mfa/totp/confirm")
@signed_in()
@limiter.limit(setting("limit_login_per_ip"))
@operation(
    "Turn TOTP on with its first code; recovery codes come back once",
    tag=TAG,
    body=CodeConfirm,
    responses={200: ("On", RecoveryCodes)},
)
def confirm(body: CodeConfirm) -> ResponseReturnValue:
    caller = current_caller()
    codes = services().totp.confirm(caller.user, body.code)
    return jsonify(RecoveryCodes(recovery_codes=codes).model_dump())


@bp.delete("/mfa/totp")
@signed_in()
@operation("Turn TOTP off (needs a fresh step-up; the owner is emailed)", tag=TAG,
           responses={204: ("Off", None)})  # fmt: skip
def disable() -> ResponseReturnValue:
    caller = current_caller()
    # The service asks for the proof removing a factor needs and tells the owner.
    services().second_factor.turn_totp_off(caller.session, caller.user)
    return "", 204


@bp.post("/mfa/recovery-codes")
@signed_in()
@operation(
    "New recovery codes; the old ones stop working (fresh step-up needed, owner emailed)",
    tag=TAG,
    responses={200: ("Shown once", RecoveryCodes)},
)
def regenerate() -> ResponseReturnValue:
    caller = current_caller()
    codes = services().second_factor.replace_recovery_codes(caller.session, caller.user)
    return jsonify(RecoveryCodes(recovery_codes=codes).model_dump())
