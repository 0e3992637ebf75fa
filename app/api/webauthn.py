"""Passkeys (WebAuthn): enrolment, username-less sign-in, biometric step-up, and
managing one's passkeys."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from app.api.operations import Link, operation
from app.api.render import session_payload, signed_in_response
from app.api.schemas import (
    CredentialList,
    CredentialOut,
    CredentialRename,
    SessionOut,
    SignedIn,
    WebAuthnOptionsOut,
    WebAuthnRegistrationIn,
    WebAuthnSignInIn,
    WebAuthnStepUpIn,
)
from app.extensions import limiter
from app.http.access import DEVICE_MANAGEMENT, public, signed_in
from app.http.cookies import attach_device_cookie, attach_session_cookie
from app.http.gate import current_caller
from app.http.limits import setting
from app.http.scope import request_context, services, sign_in_context
from app.models import WebAuthnCredential
from app.services.sessions import Transport
from app.services.webauthn import Ceremony, credential_kind, credential_state

bp = Blueprint("webauthn", __name__, url_prefix="/api/v1")
TAG = "passkeys"


def _options(ceremony: Ceremony) -> ResponseReturnValue:
    return jsonify({**ceremony.options, "challenge_id": ceremony.challenge_id})


def credential_out(credential: WebAuthnCredential) -> CredentialOut:
    return CredentialOut(
        id=credential.id,
        nickname=credential.nickname,
        kind=credential_kind(credential),  # type: ignore[arg-type]
        state=credential_state(credential),
        flagged_cloned_at=credential.flagged_cloned_at,
        transports=credential.transports,
        aaguid=credential.aaguid,
        backed_up=credential.backup_state,
        user_verified_at_registration=credential.user_verified_at_registration,
        created_at=credential.created_at,
        last_used_at=credential.last_used_at,
    )


@bp.post("/webauthn/registration/options")
@signed_in(step_up=DEVICE_MANAGEMENT)
@operation(
    "Options to create a passkey (needs the device_biometrics purpose granted)",
    tag=TAG,
    responses={200: ("For navigator.credentials.create()", WebAuthnOptionsOut)},
)
def registration_options() -> ResponseReturnValue:
    # A new passkey is a new way in (and may bind this device): a recent sign-in.
    caller = current_caller()
    return _options(services().webauthn.registration_options(caller.user))


@bp.post("/webauthn/registration/verify")
@signed_in(step_up=DEVICE_MANAGEMENT)
@operation(
    "Register the passkey the authenticator created",
    tag=TAG,
    body=WebAuthnRegistrationIn,
    responses={201: ("Registered", CredentialOut)},
)
def registration_verify(body: WebAuthnRegistrationIn) -> ResponseReturnValue:
    caller = current_caller()
    registered = services().webauthn.verify_registration(
        caller.session,
        caller.user,
        body.challenge_id,
        body.credential(),
        body.nickname,
        request_context(),
    )
    response = jsonify(credential_out(registered.credential).model_dump(mode="json"))
    attach_device_cookie(response, registered.device_cookie)
    return response, 201


@bp.post("/webauthn/authentication/options")
@public()
@limiter.limit(setting("limit_login_per_ip"))
@operation(
    "Options to sign in with a passkey (no username: the device offers its passkeys)",
    tag=TAG,
    responses={200: ("For navigator.credentials.get()", WebAuthnOptionsOut)},
)
def authentication_options() -> ResponseReturnValue:
    return _options(services().webauthn.sign_in_options())


@bp.post("/webauthn/authentication/verify")
@public(binds_dpop=True)
@limiter.limit(setting("limit_login_per_ip"))
@operation(
    "Sign in with a passkey",
    tag=TAG,
    body=WebAuthnSignInIn,
    responses={200: ("Signed in, or consent is owed first", SignedIn)},
)
def authentication_verify(body: WebAuthnSignInIn) -> ResponseReturnValue:
    transport = Transport(body.token_delivery)
    context = sign_in_context(transport)
    result = services().webauthn.sign_in(
        body.challenge_id, body.credential(), transport=transport, context=context
    )
    return signed_in_response(result)


@bp.post("/me/step-up/webauthn/options")
@signed_in()
@operation(
    "Options to confirm it is you with a passkey and the device's biometric check",
    tag=TAG,
    responses={200: ("For navigator.credentials.get()", WebAuthnOptionsOut)},
)
def step_up_options() -> ResponseReturnValue:
    caller = current_caller()
    return _options(services().webauthn.step_up_options(caller.session))


@bp.post("/me/step-up/webauthn/verify")
@signed_in()
@limiter.limit(setting("limit_login_per_ip"))
@operation(
    "Raise this session with a user-verified passkey assertion; the session gets a new token",
    tag=TAG,
    body=WebAuthnStepUpIn,
    responses={200: ("Raised to phishing-resistant", SessionOut)},
)
def step_up_verify(body: WebAuthnStepUpIn) -> ResponseReturnValue:
    caller = current_caller()
    issued = services().webauthn.step_up(caller.session, body.challenge_id, body.credential())
    response = jsonify(SessionOut.model_validate(session_payload(issued)).model_dump(mode="json"))
    attach_session_cookie(response, issued)
    return response


@bp.get("/me/credentials")
@signed_in()
@operation(
    "My passkeys",
    tag=TAG,
    responses={200: ("Passkeys", CredentialList)},
    links={
        200: {
            "RenamePasskey": Link(
                "webauthn.rename_credential.post",
                {"credential_id": "$response.body#/credentials/0/id"},
            ),
            "RemovePasskey": Link(
                "webauthn.delete_credential.delete",
                {"credential_id": "$response.body#/credentials/0/id"},
            ),
        }
    },
)
def list_credentials() -> ResponseReturnValue:
    caller = current_caller()
    items = [credential_out(c) for c in services().webauthn.credentials_of(caller.user.id)]
    return jsonify(CredentialList(credentials=items).model_dump(mode="json"))


@bp.post("/me/credentials/<id:credential_id>/rename")
@signed_in()
@operation(
    "Rename one of my passkeys",
    tag=TAG,
    body=CredentialRename,
    responses={200: ("Renamed", CredentialOut)},
)
def rename_credential(credential_id: str, body: CredentialRename) -> ResponseReturnValue:
    caller = current_caller()
    renamed = services().webauthn.rename(caller.user.id, credential_id, body.nickname)
    return jsonify(credential_out(renamed).model_dump(mode="json"))


@bp.delete("/me/credentials/<id:credential_id>")
@signed_in()
@operation(
    "Remove one of my passkeys (needs a recent sign-in; the owner is emailed)",
    tag=TAG,
    responses={204: ("Removed", None)},
)
def delete_credential(credential_id: str) -> ResponseReturnValue:
    caller = current_caller()
    # The service asks for the recent sign-in removing a passkey needs.
    services().webauthn.revoke(caller.session, credential_id, request_context().ip_prefix)
    return "", 204
