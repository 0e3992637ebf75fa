"""The partners a signed-in person approved, over the JSON API: list them and
take an approval back. Taking it back is PartnerAuthorizations.revoke, as on
the privacy centre's partners page."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel

from app.api.operations import Link, operation
from app.errors import not_found
from app.http.access import signed_in
from app.http.gate import current_caller
from app.http.scope import request_context, services
from app.models import Channel
from app.oidc.partners import PartnerAuthorizations, PartnerUse

bp = Blueprint("partners_api", __name__, url_prefix="/api/v1/me/partners")
TAG = "consent"


class PartnerOut(BaseModel):
    client_id: str
    name: str
    scopes: list[str]
    # The claims those scopes release to the partner (OIDC Core 5.4).
    claims: list[str]
    granted_at: datetime
    # Sign-ins whose tokens the partner may still use.
    live_grants: int
    last_used_at: datetime | None


class PartnerList(BaseModel):
    partners: list[PartnerOut]


def partner_out(use: PartnerUse) -> PartnerOut:
    approval = use.approval
    return PartnerOut(
        client_id=approval.client.client_id,
        name=approval.client.name,
        scopes=approval.scopes,
        claims=use.claims,
        granted_at=approval.granted_at,
        live_grants=use.live_grants,
        last_used_at=use.last_used_at,
    )


@bp.get("")
@signed_in()
@operation(
    "The partners I approved: what each receives and whether it still holds tokens",
    tag=TAG,
    responses={200: ("Oldest approval first", PartnerList)},
    links={
        200: {
            "RevokePartner": Link(
                "partners_api.revoke.delete", {"client_id": "$response.body#/partners/0/client_id"}
            )
        }
    },
)
def partners() -> ResponseReturnValue:
    uses = PartnerAuthorizations.of(services()).uses(current_caller().user.id)
    body = PartnerList(partners=[partner_out(use) for use in uses])
    return jsonify(body.model_dump(mode="json"))


@bp.delete("/<client_id>")
@signed_in()
@operation(
    "Take a partner's approval back: recorded in the consent ledger, and every token "
    "the partner holds for me stops working now",
    tag=TAG,
    responses={204: ("Revoked", None)},
)
def revoke(client_id: str) -> ResponseReturnValue:
    caller = current_caller()
    partners = PartnerAuthorizations.of(services())
    if not partners.revoke(caller.user.id, client_id, request_context(), Channel.SETTINGS):
        raise not_found("An approved partner with this client id")
    return "", 204
