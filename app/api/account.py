"""The signed-in user's account and sessions."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from app.api.operations import Link, operation
from app.api.schemas import (
    Accepted,
    CodeConfirm,
    EmailChange,
    PasswordAdd,
    PasswordChange,
    PasswordRemove,
    PhoneChange,
    ProfileOut,
    RevokedCount,
    SessionList,
    SessionSummary,
)
from app.extensions import limiter
from app.http.access import CREDENTIAL_CHANGE, signed_in
from app.http.gate import current_caller
from app.http.limits import per_destination_limit, setting
from app.http.scope import request_context, services
from app.services.directory import EMAIL, PHONE

bp = Blueprint("account", __name__, url_prefix="/api/v1")
TAG = "account"


@bp.get("/me")
@signed_in()
@operation("My profile", tag=TAG, responses={200: ("Profile", ProfileOut)})
def me() -> ResponseReturnValue:
    caller = current_caller()
    profile = services().account.profile(caller.user)
    return jsonify(
        ProfileOut(
            user_id=caller.user.id,
            email=profile.email,
            phone=profile.phone,
            full_name=profile.full_name,
            created_at=caller.user.created_at,
        ).model_dump(mode="json")
    )


@bp.post("/me/password")
@signed_in(step_up=CREDENTIAL_CHANGE)
@operation(
    "Change my password (needs the current one); my other sessions end",
    tag=TAG,
    body=PasswordChange,
    responses={200: ("Changed", RevokedCount)},
)
def change_password(body: PasswordChange) -> ResponseReturnValue:
    caller = current_caller()
    ended = services().account.change_password(
        caller.user, caller.session, body.current_password, body.new_password, request_context()
    )
    return jsonify(RevokedCount(revoked=ended).model_dump())


@bp.post("/me/password/new")
@signed_in(step_up=CREDENTIAL_CHANGE)
@operation(
    "Add a password to an account that has none (one made through WeChat)",
    tag=TAG,
    body=PasswordAdd,
    responses={204: ("Added", None)},
)
def add_password(body: PasswordAdd) -> ResponseReturnValue:
    services().account.add_password(current_caller().user, body.new_password, request_context())
    return "", 204


@bp.post("/me/password/remove")
@signed_in(step_up=CREDENTIAL_CHANGE)
@operation(
    "Remove my password (refused while it is my last way to sign in)",
    tag=TAG,
    body=PasswordRemove,
    responses={204: ("Removed", None)},
)
def remove_password(body: PasswordRemove) -> ResponseReturnValue:
    services().account.remove_password(
        current_caller().user, body.current_password, request_context()
    )
    return "", 204


@bp.post("/me/email")
@signed_in(step_up=CREDENTIAL_CHANGE)
@limiter.limit(setting("limit_code_send_per_ip"))
@per_destination_limit("email", "email")
@operation(
    "Start changing my email: a code goes to the new address",
    tag=TAG,
    body=EmailChange,
    responses={202: ("Code sent", Accepted)},
)
def change_email(body: EmailChange) -> ResponseReturnValue:
    caller = current_caller()
    services().account.start_contact_change(caller.user, EMAIL, body.email, body.current_password)
    return jsonify(Accepted(detail="A code is on its way to the new address.").model_dump()), 202


@bp.post("/me/phone")
@signed_in(step_up=CREDENTIAL_CHANGE)
@limiter.limit(setting("limit_code_send_per_ip"))
@per_destination_limit("phone", "phone")
@operation(
    "Start changing my phone: a code goes to the new number",
    tag=TAG,
    body=PhoneChange,
    responses={202: ("Code sent", Accepted)},
)
def change_phone(body: PhoneChange) -> ResponseReturnValue:
    caller = current_caller()
    services().account.start_contact_change(caller.user, PHONE, body.phone, body.current_password)
    return jsonify(Accepted(detail="A code is on its way to the new number.").model_dump()), 202


@bp.post("/me/<any(email,phone):kind>/confirm")
@signed_in()
@limiter.limit(setting("limit_login_per_ip"))
@operation(
    "Finish changing my email or phone with the code",
    tag=TAG,
    body=CodeConfirm,
    responses={204: ("Changed", None)},
)
def confirm_contact(kind: str, body: CodeConfirm) -> ResponseReturnValue:
    caller = current_caller()
    svc = services()
    svc.account.finish_contact_change(caller.user, kind, body.code, request_context())
    return "", 204


@bp.get("/me/sessions")
@signed_in()
@operation(
    "My active sessions",
    tag=TAG,
    responses={200: ("Sessions", SessionList)},
    links={
        200: {
            "RevokeSession": Link(
                "account.revoke_session.delete",
                {"session_id": "$response.body#/sessions/0/session_id"},
            )
        }
    },
)
def list_sessions() -> ResponseReturnValue:
    caller = current_caller()
    sessions = services().sessions.active_for(caller.user.id)
    items = [
        SessionSummary(
            session_id=s.id,
            current=s.id == caller.session.id,
            device=s.device_summary,
            device_id=s.device_id,
            key_bound=s.dpop_jkt is not None,
            ip_prefix=s.ip_prefix,
            created_at=s.created_at,
            last_seen_at=s.last_seen_at,
            transport=s.transport,
            acr=s.acr,
            amr=s.amr,
        )
        for s in sessions
    ]
    return jsonify(SessionList(sessions=items).model_dump(mode="json"))


@bp.delete("/me/sessions/<id:session_id>")
@signed_in()
@operation("Revoke one of my sessions", tag=TAG, responses={204: ("Revoked", None)})
def revoke_session(session_id: str) -> ResponseReturnValue:
    caller = current_caller()
    services().sessions.revoke(
        caller.user.id, session_id, "revoked_by_user", request_context().ip_prefix
    )
    return "", 204


@bp.post("/me/sessions/revoke-others")
@signed_in()
@operation(
    "Revoke all my sessions but this one",
    tag=TAG,
    responses={200: ("Revoked", RevokedCount)},
)
def revoke_others() -> ResponseReturnValue:
    caller = current_caller()
    svc = services()
    count = svc.sessions.sign_out_elsewhere(caller.session, request_context().ip_prefix)
    return jsonify(RevokedCount(revoked=count).model_dump())
