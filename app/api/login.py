"""Signing in, signing out, and password reset."""

from __future__ import annotations

from flask import Blueprint, jsonify, make_response
from flask.typing import ResponseReturnValue

from app.api.operations import operation
from app.api.render import signed_in_response
from app.api.schemas import (
    Accepted,
    CodeFlow,
    PasswordLogin,
    ResetFinish,
    ResetStart,
    SecondFactorIn,
    SecondFactorNeeded,
    SecondFactorTicket,
    SignedIn,
    SmsCodeRequest,
    SmsLogin,
)
from app.extensions import limiter
from app.http.access import public, signed_in
from app.http.cookies import clear_session_cookie
from app.http.gate import current_caller
from app.http.limits import identifier_source_key, per_destination_limit, setting
from app.http.scope import request_context, services, sign_in_context
from app.services.sessions import Transport

bp = Blueprint("login", __name__, url_prefix="/api/v1")
TAG = "sign-in"
CODE_SENT = "If an account uses this address, a code is on its way."


@bp.post("/login/password")
@public(binds_dpop=True)
@limiter.limit(setting("limit_login_per_ip"))
@limiter.limit(setting("limit_login_per_account"), key_func=identifier_source_key("identifier"))
@operation(
    "Sign in with email or phone and password",
    tag=TAG,
    body=PasswordLogin,
    responses={
        200: ("Signed in, or consent is owed first", SignedIn),
        202: ("The password was right; the second factor is due", SecondFactorNeeded),
    },
)
def password_login(body: PasswordLogin) -> ResponseReturnValue:
    transport = Transport(body.token_delivery)
    result = services().login.with_password(
        body.identifier, body.password, transport=transport, context=sign_in_context(transport)
    )
    return signed_in_response(result)


@bp.post("/login/sms/code")
@public()
@limiter.limit(setting("limit_code_send_per_ip"))
@per_destination_limit("phone", "phone")
@operation(
    "Send a sign-in code by SMS",
    tag=TAG,
    body=SmsCodeRequest,
    responses={
        202: (
            "Accepted (the same answer whether or not the number has an account); "
            "send `flow` back with the code",
            CodeFlow,
        )
    },
)
def sms_code(body: SmsCodeRequest) -> ResponseReturnValue:
    flow = services().login.send_sms_code(body.phone, request_context())
    return jsonify(CodeFlow(detail=CODE_SENT, flow=flow).model_dump()), 202


# No per-phone limit here: the code is bound to the flow that asked for it and
# has its own few tries, so junk sent for someone's phone cannot lock them out.
@bp.post("/login/sms")
@public(binds_dpop=True)
@limiter.limit(setting("limit_login_per_ip"))
@operation(
    "Sign in with phone and SMS code",
    tag=TAG,
    body=SmsLogin,
    responses={
        200: ("Signed in, or consent is owed first", SignedIn),
        202: ("The password was right; the second factor is due", SecondFactorNeeded),
    },
)
def sms_login(body: SmsLogin) -> ResponseReturnValue:
    transport = Transport(body.token_delivery)
    result = services().login.with_sms_code(
        body.phone, body.flow, body.code, transport=transport, context=sign_in_context(transport)
    )
    return signed_in_response(result)


@bp.post("/login/second-factor/email")
@public()
@limiter.limit(setting("limit_code_send_per_ip"))
@operation(
    "Send the email code a sign-in from an unbound device needs",
    tag=TAG,
    body=SecondFactorTicket,
    responses={202: ("Sent to the account's email address", Accepted)},
)
def second_factor_email(body: SecondFactorTicket) -> ResponseReturnValue:
    services().login.send_device_code(body.ticket, "email_code")
    detail = "A code is on its way to your account's email address."
    return jsonify(Accepted(detail=detail).model_dump()), 202


@bp.post("/login/second-factor/sms")
@public()
@limiter.limit(setting("limit_code_send_per_ip"))
@operation(
    "Send the SMS code a sign-in from an unbound device needs (an account without email)",
    tag=TAG,
    body=SecondFactorTicket,
    responses={202: ("Sent to the account's phone", Accepted)},
)
def second_factor_sms(body: SecondFactorTicket) -> ResponseReturnValue:
    services().login.send_device_code(body.ticket, "sms_code")
    detail = "A code is on its way to your account's phone."
    return jsonify(Accepted(detail=detail).model_dump()), 202


@bp.post("/login/second-factor")
@public(binds_dpop=True)
@limiter.limit(setting("limit_login_per_ip"))
@operation(
    "Finish signing in with a TOTP code, a recovery code, or an email or SMS code",
    tag=TAG,
    body=SecondFactorIn,
    responses={
        200: ("Signed in, or consent is owed first", SignedIn),
        # An email- or SMS-code ticket, and TOTP was enabled since it was issued.
        202: ("TOTP is now owed as well", SecondFactorNeeded),
    },
)
def second_factor(body: SecondFactorIn) -> ResponseReturnValue:
    # The ticket says how the first step delivered its token; a key-bound
    # sign-in must show the same key again (DPoP is checked for bearer only).
    result = services().login.with_second_factor(
        body.ticket,
        totp_code=body.totp_code,
        recovery_code=body.recovery_code,
        email_code=body.email_code,
        sms_code=body.sms_code,
        context=sign_in_context(Transport.BEARER),
    )
    return signed_in_response(result)


@bp.post("/logout")
@signed_in(consent_step=True)
@operation(
    "Sign out of this session",
    tag=TAG,
    responses={204: ("Signed out", None)},
)
def logout() -> ResponseReturnValue:
    services().sessions.sign_out(current_caller().session, request_context().ip_prefix)
    response = make_response("", 204)
    clear_session_cookie(response)
    return response


@bp.post("/password-reset")
@public()
@limiter.limit(setting("limit_reset_per_ip"))
@per_destination_limit("identifier")
@operation(
    "Send a password-reset code to an email or phone",
    tag=TAG,
    body=ResetStart,
    responses={
        202: (
            "Accepted (the same answer whether or not an account exists); "
            "send `flow` back with the code",
            CodeFlow,
        )
    },
)
def reset_start(body: ResetStart) -> ResponseReturnValue:
    flow = services().account.start_reset(body.identifier, request_context())
    return jsonify(CodeFlow(detail=CODE_SENT, flow=flow).model_dump()), 202


# As for SMS sign-in: the code is bound to its flow, so no per-identifier limit.
@bp.post("/password-reset/confirm")
@public()
@limiter.limit(setting("limit_login_per_ip"))
@operation(
    "Set a new password with the reset code; every session ends",
    tag=TAG,
    body=ResetFinish,
    responses={204: ("Password changed", None)},
)
def reset_finish(body: ResetFinish) -> ResponseReturnValue:
    services().account.finish_reset(
        body.identifier, body.flow, body.code, body.new_password, request_context()
    )
    return "", 204
