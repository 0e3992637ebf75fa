"""WeChat sign-in for the mobile app, over the JSON API: the app's WeChat SDK
gives it a code; this exchanges it (with the app's own app id and secret)
and answers like the other sign-ins (a session, the consent step, the second
factor; DPoP-bound tokens for ``token_delivery`` "bearer" with a proof). An
unknown WeChat account answers 202 ``link_required`` with a ticket, bound to
the proof's key when there was one, to finish with a password or a phone."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, Field

from app.api.operations import operation
from app.api.render import signed_in_response
from app.api.schemas import (
    CODE_PATTERN,
    AssertionResponseIn,
    Body,
    CodeFlow,
    FlowHandle,
    PasswordField,
    PhoneField,
    SecondFactorNeeded,
    SignedIn,
    TokenDelivery,
    _CredentialIn,
)
from app.extensions import limiter
from app.http.access import CREDENTIAL_CHANGE, public, signed_in
from app.http.gate import current_caller
from app.http.limits import identifier_source_key, per_destination_limit, setting
from app.http.scope import request_context, services, sign_in_context
from app.services.sessions import Transport
from app.wechat.binding import binding
from app.wechat.signin import APP, Outcome, PendingLink, WeChatSignIn

bp = Blueprint("wechat_api", __name__, url_prefix="/api/v1")
TAG = "sign-in"
CODE_SENT = "A code is on its way by SMS."
TicketField = Field(min_length=16, max_length=4096, pattern=r"^[A-Za-z0-9_.\-]+$")


class WeChatLogin(Body):
    code: str = Field(
        min_length=1, max_length=256, description="The code the app's WeChat SDK returned"
    )
    token_delivery: TokenDelivery = "cookie"


class LinkRequired(BaseModel):
    status: Literal["link_required"] = "link_required"
    ticket: str = Field(description="Send it back to link an account or create one")
    methods: list[str] = ["password", "phone"]
    expires_in: int


class WeChatLinkPassword(Body):
    ticket: str = TicketField
    identifier: str = Field(min_length=1, max_length=320, description="Email or phone number")
    password: str = PasswordField


class WeChatLinkPasskey(_CredentialIn):
    """A passkey's answer to /webauthn/authentication/options, with the ticket."""

    ticket: str = TicketField
    response: AssertionResponseIn


class WeChatPhoneCode(Body):
    ticket: str = TicketField
    phone: str = PhoneField


class WeChatPhone(Body):
    ticket: str = TicketField
    phone: str = PhoneField
    flow: str = FlowHandle
    code: str = Field(pattern=CODE_PATTERN)
    full_name: str | None = Field(
        default=None, max_length=200, description="Needed when the phone has no account yet"
    )


class LinkedOut(BaseModel):
    provider: str
    app_id: str
    linked_at: str
    last_used_at: str | None


class LinkedList(BaseModel):
    linked: list[LinkedOut]


SIGN_IN_RESPONSES: dict[int, tuple[str, type[BaseModel] | None]] = {
    200: ("Signed in, or consent is owed first", SignedIn),
    202: ("A second factor is due, or the WeChat account is linked to none", LinkRequired),
}


def _answer(outcome: Outcome) -> ResponseReturnValue:
    if isinstance(outcome, PendingLink):
        body = LinkRequired(ticket=outcome.ticket, expires_in=outcome.expires_in)
        return jsonify(body.model_dump()), 202
    return signed_in_response(outcome)


@bp.post("/login/wechat")
@public(binds_dpop=True)
@limiter.limit(setting("limit_login_per_ip"))
@operation("Sign in with the WeChat app SDK's code", tag=TAG, body=WeChatLogin,
           responses=SIGN_IN_RESPONSES)  # fmt: skip
def login(body: WeChatLogin) -> ResponseReturnValue:
    transport = Transport(body.token_delivery)
    context = sign_in_context(transport)
    wechat = WeChatSignIn(services())
    identity = wechat.exchange(APP, body.code)
    outcome = wechat.sign_in(
        identity, transport=transport, context=context, binding=binding(context)
    )
    return _answer(outcome)


@bp.post("/login/wechat/link/password")
@public(binds_dpop=True)
@limiter.limit(setting("limit_login_per_ip"))
@limiter.limit(setting("limit_login_per_account"), key_func=identifier_source_key("identifier"))
@operation(
    "Link the WeChat account to my account with its password, and sign in",
    tag=TAG,
    body=WeChatLinkPassword,
    responses={200: SIGN_IN_RESPONSES[200], 202: ("A second factor is due", SecondFactorNeeded)},
)
def link_password(body: WeChatLinkPassword) -> ResponseReturnValue:
    # The ticket says how the first step delivers its session; a key-bound
    # one must show the same key again.
    context = sign_in_context(Transport.BEARER)
    outcome = WeChatSignIn(services()).link_with_password(
        body.ticket, binding(context), body.identifier, body.password, context
    )
    return _answer(outcome)


@bp.post("/login/wechat/link/passkey")
@public(binds_dpop=True)
@limiter.limit(setting("limit_login_per_ip"))
@operation(
    "Link the WeChat account to my account with one of its passkeys, and sign in",
    tag=TAG,
    body=WeChatLinkPasskey,
    responses={200: SIGN_IN_RESPONSES[200], 202: ("A second factor is due", SecondFactorNeeded)},
)
def link_passkey(body: WeChatLinkPasskey) -> ResponseReturnValue:
    context = sign_in_context(Transport.BEARER)
    outcome = WeChatSignIn(services()).link_with_passkey(
        body.ticket, binding(context), body.challenge_id, body.credential(), context
    )
    return _answer(outcome)


@bp.post("/login/wechat/phone/code")
@public(binds_dpop=True)
@limiter.limit(setting("limit_code_send_per_ip"))
@per_destination_limit("phone", "phone")
@operation(
    "Send a code to the phone that links the WeChat account (or creates an account)",
    tag=TAG,
    body=WeChatPhoneCode,
    responses={202: ("Sent; send `flow` back with the code", CodeFlow)},
)
def phone_code(body: WeChatPhoneCode) -> ResponseReturnValue:
    context = sign_in_context(Transport.BEARER)
    flow = WeChatSignIn(services()).send_phone_code(
        body.ticket, binding(context), body.phone, context
    )
    return jsonify(CodeFlow(detail=CODE_SENT, flow=flow).model_dump()), 202


@bp.post("/login/wechat/phone")
@public(binds_dpop=True)
@limiter.limit(setting("limit_login_per_ip"))
@operation(
    "Finish with the phone's code: link its account, or create one, and sign in",
    tag=TAG,
    body=WeChatPhone,
    responses={200: SIGN_IN_RESPONSES[200], 202: ("A second factor is due", SecondFactorNeeded)},
)
def phone(body: WeChatPhone) -> ResponseReturnValue:
    context = sign_in_context(Transport.BEARER)
    outcome = WeChatSignIn(services()).with_phone(
        body.ticket,
        binding(context),
        phone=body.phone,
        flow=body.flow,
        code=body.code,
        full_name=body.full_name,
        context=context,
    )
    return _answer(outcome)


@bp.get("/me/wechat")
@signed_in()
@operation("My linked WeChat accounts", tag="account", responses={200: ("Linked", LinkedList)})
def linked() -> ResponseReturnValue:
    rows = WeChatSignIn(services()).identities.of_user(current_caller().user.id)
    body = LinkedList(
        linked=[
            LinkedOut(
                provider=row.provider,
                app_id=row.app_id,
                linked_at=row.created_at.isoformat(),
                last_used_at=row.last_used_at.isoformat() if row.last_used_at else None,
            )
            for row in rows
        ]
    )
    return jsonify(body.model_dump())


@bp.delete("/me/wechat")
@signed_in(step_up=CREDENTIAL_CHANGE)
@operation(
    "Unlink WeChat (refused while it is my last way to sign in)",
    tag="account",
    responses={204: ("Unlinked", None)},
)
def unlink() -> ResponseReturnValue:
    WeChatSignIn(services()).identities.unlink(current_caller().user, request_context().ip_prefix)
    return "", 204
