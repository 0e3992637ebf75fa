"""Purposes, policies, and the user's consent decisions."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from app.api.operations import Link, operation
from app.api.render import policy_out, purpose_out, record_out
from app.api.schemas import (
    ConsentDecisions,
    ConsentHistory,
    ConsentOverview,
    ConsentResult,
    PolicyAcknowledged,
    PolicyList,
    PolicyText,
    PurposeList,
    Receipt,
)
from app.capabilities import published_keys
from app.http.access import public, signed_in
from app.http.cookies import clear_device_cookie
from app.http.gate import current_caller
from app.http.scope import request_context, runtime, services
from app.services.consent import SECURITY_PURPOSE, decisions_from
from app.services.privacy_acts import withdraw_consent

bp = Blueprint("consent", __name__)
TAG = "consent"


def _receipt_link(record_id: str) -> dict[str, Link]:
    return {"Receipt": Link("consent.receipt.get", {"record_id": record_id})}


def _purpose_links(purpose: str) -> dict[str, Link]:
    return {
        "GrantPurpose": Link("consent.grant.post", {"purpose": purpose}),
        "WithdrawPurpose": Link("consent.withdraw.post", {"purpose": purpose}),
    }


@bp.get("/api/v1/purposes")
@public()
@operation(
    "What we process, why, and on what basis",
    tag=TAG,
    responses={200: ("The purpose catalogue", PurposeList)},
    links={200: _purpose_links("$response.body#/purposes/0/code")},
)
def purposes() -> ResponseReturnValue:
    rt = runtime()
    body = PurposeList(
        data_residency=rt.settings.data_residency,
        purposes=[purpose_out(p) for p in rt.catalogue],
    )
    return jsonify(body.model_dump(mode="json", by_alias=True))


@bp.get("/api/v1/policies")
@public()
@operation(
    "Every published policy version; the one in force is marked",
    tag=TAG,
    responses={200: ("Policy versions, newest first", PolicyList)},
    links={
        200: {
            "ReadPolicy": Link(
                "consent.policy.get", {"version": "$response.body#/policies/0/version"}
            )
        }
    },
)
def policies() -> ResponseReturnValue:
    svc = services().policies
    current = svc.current()
    items = [policy_out(p, current.version if current else None) for p in svc.all()]
    return jsonify(PolicyList(policies=items).model_dump(mode="json"))


@bp.get("/api/v1/policies/<code:version>")
@public()
@operation(
    "One policy version with its text",
    tag=TAG,
    responses={200: ("The version and its text", PolicyText)},
)
def policy(version: str) -> ResponseReturnValue:
    svc = services().policies
    found, current = svc.get(version), svc.current()
    body = PolicyText(
        **policy_out(found, current.version if current else None).model_dump(), text=found.text
    )
    return jsonify(body.model_dump(mode="json"))


@bp.get("/api/v1/me/consent")
@signed_in(consent_step=True)
@operation(
    "My current decisions and what I still owe under the current policy",
    tag=TAG,
    responses={200: ("Decisions in force and purposes owed", ConsentOverview)},
    links={
        200: {
            **_purpose_links("$response.body#/decisions/0/purpose"),
            "GrantPending": Link(
                "consent.grant.post", {"purpose": "$response.body#/pending/0/code"}
            ),
            **_receipt_link("$response.body#/decisions/0/record_id"),
        }
    },
)
def overview() -> ResponseReturnValue:
    caller = current_caller()
    svc = services()
    policy = svc.policies.require_current()
    current = sorted(svc.consent.current(caller.user.id).values(), key=lambda r: r.id)
    body = ConsentOverview(
        policy_version=policy.version,
        pending=[purpose_out(p) for p in svc.consent.pending(caller.user.id)],
        decisions=[record_out(r) for r in current],
    )
    return jsonify(body.model_dump(mode="json", by_alias=True))


@bp.post("/api/v1/me/consent/decisions")
@signed_in(consent_step=True)
@operation(
    "Decide on purposes (the consent step of sign-in, or later); refusing a granted one "
    "withdraws it and needs what the withdraw action needs",
    tag=TAG,
    body=ConsentDecisions,
    responses={200: ("Recorded; the session is full once nothing is owed", ConsentResult)},
)
def decide(body: ConsentDecisions) -> ResponseReturnValue:
    caller = current_caller()
    svc = services()
    pending = svc.signin.decide(
        caller.session, body.policy_version, decisions_from(body.decisions), request_context()
    )
    result = ConsentResult(
        status="consent_required" if pending else "authenticated",
        pending=[purpose_out(p) for p in pending],
    )
    response = jsonify(result.model_dump(mode="json", by_alias=True))
    # Refusing security forgets the devices, as withdrawing it does.
    if any(d.purpose == SECURITY_PURPOSE and d.decision != "granted" for d in body.decisions):
        clear_device_cookie(response)
    return response


@bp.post("/api/v1/me/consent/<code:purpose>/grant")
@signed_in()
@operation(
    "Grant one purpose on its own (separate consent)",
    tag=TAG,
    body=PolicyAcknowledged,
    responses={200: ("Granted", ConsentHistory)},
)
def grant(purpose: str, body: PolicyAcknowledged) -> ResponseReturnValue:
    caller = current_caller()
    record = services().consent.grant(
        caller.user.id, purpose, body.policy_version, request_context()
    )
    return jsonify(ConsentHistory(records=[record_out(record)]).model_dump(mode="json"))


@bp.post("/api/v1/me/consent/<code:purpose>/withdraw")
@signed_in()
@operation(
    "Withdraw consent for one purpose; what depends on it stops now (taking away a passkey "
    "or a device binding needs the recent sign-in removing it directly needs); partner "
    "sharing is withdrawn from every partner, one record each",
    tag=TAG,
    responses={200: ("Withdrawn", ConsentHistory)},
)
def withdraw(purpose: str) -> ResponseReturnValue:
    records = withdraw_consent(services(), current_caller().session, purpose, request_context())
    response = jsonify(
        ConsentHistory(records=[record_out(r) for r in records]).model_dump(mode="json")
    )
    if purpose == SECURITY_PURPOSE:
        clear_device_cookie(response)
    return response


@bp.get("/api/v1/me/consent/history")
@signed_in(consent_step=True)
@operation(
    "Every decision I made",
    tag=TAG,
    responses={200: ("Oldest first", ConsentHistory)},
    links={200: _receipt_link("$response.body#/records/0/record_id")},
)
def history() -> ResponseReturnValue:
    caller = current_caller()
    records = [record_out(r) for r in services().consent.history(caller.user.id)]
    return jsonify(ConsentHistory(records=records).model_dump(mode="json"))


@bp.get("/api/v1/me/consent/records/<int:record_id>/receipt")
@signed_in(consent_step=True)
@operation("A signed receipt for one decision", tag=TAG, responses={200: ("The receipt", Receipt)})
def receipt(record_id: int) -> ResponseReturnValue:
    caller = current_caller()
    token = services().consent.receipt(caller.user.id, record_id)
    return jsonify(Receipt(receipt=token).model_dump())


@bp.get("/.well-known/jwks.json")
@public()
def jwks() -> ResponseReturnValue:
    """The one key set: the receipt key, then what the capabilities sign with."""
    receipts = runtime().signer.jwks()["keys"]
    return jsonify({"keys": [*receipts, *published_keys(services())]})
