"""Registration endpoints."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from app.api.operations import Link, operation
from app.api.render import signed_in_payload
from app.api.schemas import (
    FlowOut,
    RegistrationCode,
    RegistrationResend,
    RegistrationStart,
    RegistrationVerified,
)
from app.extensions import limiter
from app.http.access import public
from app.http.cookies import attach_device_cookie, attach_session_cookie
from app.http.limits import flow_destination_key, per_destination_limit, setting
from app.http.scope import request_context, services, sign_in_context
from app.models import RegistrationFlow
from app.services.consent import decisions_from
from app.services.sessions import Transport

bp = Blueprint("registration", __name__, url_prefix="/api/v1/registration")
TAG = "registration"


def flow_payload(flow: RegistrationFlow) -> dict[str, object]:
    return FlowOut(
        flow_id=flow.id,
        expires_at=flow.expires_at,
        email_confirmed=flow.email_verified_at is not None,
        phone_confirmed=flow.phone_verified_at is not None,
    ).model_dump(mode="json")


@bp.post("")
@public()
@limiter.limit(setting("limit_registration_per_ip"))
@per_destination_limit("email", "email")
@per_destination_limit("phone", "phone")
@operation(
    "Start a registration; codes go to the email and the phone",
    tag=TAG,
    body=RegistrationStart,
    responses={202: ("Codes sent (the answer is the same for registered addresses)", FlowOut)},
    # Where a flow goes next: a code to prove, or a new one to send.
    links={
        202: {
            "VerifyCode": Link("registration.verify.post", {"flow_id": "$response.body#/flow_id"}),
            "ResendCode": Link("registration.resend.post", {"flow_id": "$response.body#/flow_id"}),
        }
    },
)
def start(body: RegistrationStart) -> ResponseReturnValue:
    flow = services().registration.start(
        email=body.email,
        phone=body.phone,
        full_name=body.full_name,
        password=body.password,
        context=request_context(),
        policy_version=body.consent.policy_version if body.consent else None,
        decisions=decisions_from(body.consent.decisions) if body.consent else None,
    )
    return jsonify(flow_payload(flow)), 202


@bp.post("/<id:flow_id>/verify")
@public(binds_dpop=True)
@limiter.limit(setting("limit_login_per_ip"))
@operation(
    "Prove the email or the phone with its code; the second proof creates the account",
    tag=TAG,
    body=RegistrationCode,
    responses={
        200: ("Code accepted; the other address is still to prove", RegistrationVerified),
        201: ("Both proven: the account is created and signed in", RegistrationVerified),
    },
)
def verify(flow_id: str, body: RegistrationCode) -> ResponseReturnValue:
    result = services().registration.verify(
        flow_id,
        body.channel,
        body.code,
        transport=Transport(body.token_delivery),
        context=sign_in_context(Transport(body.token_delivery)),
    )
    payload = {
        "flow": flow_payload(result.flow),
        "session": signed_in_payload(result.signed_in) if result.signed_in else None,
    }
    response = jsonify(payload)
    if result.signed_in:
        response.status_code = 201
        attach_session_cookie(response, result.signed_in.issued)
        attach_device_cookie(response, result.signed_in.device_cookie)
    return response


@bp.post("/<id:flow_id>/resend")
@public()
@limiter.limit(setting("limit_code_send_per_ip"))
@limiter.limit(setting("limit_code_send_per_destination"), key_func=flow_destination_key)
@operation(
    "Send a new code for the email or the phone",
    tag=TAG,
    body=RegistrationResend,
    responses={202: ("A new code is on its way", FlowOut)},
)
def resend(flow_id: str, body: RegistrationResend) -> ResponseReturnValue:
    flow = services().registration.resend(flow_id, body.channel)
    return jsonify(flow_payload(flow)), 202
