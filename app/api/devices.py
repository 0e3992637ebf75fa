"""Devices: list, rename and revoke them; bind a mobile app's key pair."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from app.api.operations import Link, operation
from app.api.render import session_payload
from app.api.schemas import (
    AppKeyBinding,
    BindingChallengeOut,
    DeviceList,
    DeviceOut,
    DeviceRename,
    DeviceRevoked,
    SessionOut,
)
from app.http.access import DEVICE_MANAGEMENT, signed_in
from app.http.cookies import clear_device_cookie
from app.http.gate import current_caller
from app.http.scope import check_dpop, dpop_header, request_context, services
from app.models import Device
from app.services.sessions import IssuedSession

bp = Blueprint("devices", __name__, url_prefix="/api/v1/me/devices")
TAG = "devices"


def device_out(device: Device, current_device_id: str | None) -> DeviceOut:
    return DeviceOut(
        id=device.id,
        label=device.label,
        platform=device.platform,
        binding_method=device.binding_method,  # type: ignore[arg-type]
        trust_state=device.trust_state,  # type: ignore[arg-type]
        current=device.id == current_device_id,
        first_seen_at=device.first_seen_at,
        last_seen_at=device.last_seen_at,
        revoked_at=device.revoked_at,
    )


@bp.get("")
@signed_in()
@operation(
    "My devices (recorded only while the security purpose is granted)",
    tag=TAG,
    responses={200: ("Devices", DeviceList)},
    links={
        200: {
            "RenameDevice": Link(
                "devices.rename_device.post", {"device_id": "$response.body#/devices/0/id"}
            ),
            "RevokeDevice": Link(
                "devices.revoke_device.delete", {"device_id": "$response.body#/devices/0/id"}
            ),
        }
    },
)
def list_devices() -> ResponseReturnValue:
    caller = current_caller()
    devices = services().devices.devices_of(caller.user.id)
    items = [device_out(d, caller.session.device_id) for d in devices]
    return jsonify(DeviceList(devices=items).model_dump(mode="json"))


@bp.post("/<id:device_id>/rename")
@signed_in()
@operation(
    "Rename one of my devices",
    tag=TAG,
    body=DeviceRename,
    responses={200: ("Renamed", DeviceOut)},
)
def rename_device(device_id: str, body: DeviceRename) -> ResponseReturnValue:
    caller = current_caller()
    device = services().devices.rename(caller.user.id, device_id, body.label.strip())
    return jsonify(device_out(device, caller.session.device_id).model_dump(mode="json"))


@bp.delete("/<id:device_id>")
@signed_in()
@operation(
    "Revoke a device: its binding, identifiers and binding passkey go, its sessions end",
    tag=TAG,
    responses={200: ("Revoked", DeviceRevoked)},
)
def revoke_device(device_id: str) -> ResponseReturnValue:
    caller = current_caller()
    this_device = caller.session.device_id == device_id
    # The service asks for the recent sign-in removing a binding needs.
    ended = services().devices.revoke(caller.session, device_id, request_context().ip_prefix)
    response = jsonify(DeviceRevoked(sessions_ended=ended).model_dump())
    if this_device:
        clear_device_cookie(response)
    return response


@bp.post("/app-key/challenge")
@signed_in(step_up=DEVICE_MANAGEMENT)
@operation(
    "A challenge for a mobile app to sign with its hardware-held key (bearer sessions)",
    tag=TAG,
    responses={
        200: ("Sign it: the nonce of the binding request's DPoP proof", BindingChallengeOut)
    },
)
def app_key_challenge() -> ResponseReturnValue:
    caller = current_caller()
    challenge = services().devices.binding_challenge(caller.session)
    body = BindingChallengeOut(
        challenge_id=challenge.challenge_id,
        nonce=challenge.nonce,
        expires_in=challenge.expires_in,
    )
    return jsonify(body.model_dump())


@bp.post("/app-key")
@signed_in(step_up=DEVICE_MANAGEMENT)
@operation(
    "Bind this app installation: the request's DPoP proof carries the challenge as its "
    "nonce, and from now on the session's token works only with proofs from that key",
    tag=TAG,
    body=AppKeyBinding,
    responses={201: ("Bound; the token is now a DPoP token", SessionOut)},
)
def bind_app_key(body: AppKeyBinding) -> ResponseReturnValue:
    caller = current_caller()
    services().devices.require_app_session(caller.session)
    proof = caller.dpop
    if proof is None:
        # A bearer session being bound: its proof was not checked on the way in.
        header = dpop_header(required=True)
        assert header is not None
        proof = check_dpop(header, access_token=_presented_token())
    services().devices.bind_app_key(
        caller.session,
        body.challenge_id,
        proof,
        label=body.label.strip(),
        platform=body.platform,
        context=request_context(),
    )
    # The token itself is unchanged; what changed is that it now needs the key.
    payload = session_payload(IssuedSession(caller.session, _presented_token()))
    return jsonify(SessionOut.model_validate(payload).model_dump(mode="json")), 201


def _presented_token() -> str:
    return request.headers.get("Authorization", "").partition(" ")[2].strip()
