"""/api/v1/me/identity-verification: verify, see the result, erase it."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from app.api.operations import operation
from app.http.access import IDENTITY_VERIFICATION, signed_in
from app.http.gate import current_caller
from app.http.scope import request_context, services
from verification.models import IdentityVerification
from verification.schemas import PersonIn, ResultOut, ResultsOut, VerificationIn
from verification.service import GUARDIAN, SELF, Submitted, results_of
from verification.wiring import attempts_per_account, flow

bp = Blueprint("verification_api", __name__, url_prefix="/api/v1/me/identity-verification")
TAG = "identity verification"


def submitted(person: PersonIn) -> Submitted:
    return Submitted(
        person.full_name, person.document_type, person.document_number, person.liveness_token
    )


def result_out(row: IdentityVerification) -> ResultOut:
    return ResultOut(
        role=row.role,
        status=row.status,
        level=row.level,
        provider=row.provider,
        provider_reference=row.provider_reference,
        document_type=row.document_type,
        document_masked=row.document_masked,
        verified_at=row.verified_at,
        retain_until=row.retain_until,
    )


@bp.post("")
@signed_in(step_up=IDENTITY_VERIFICATION)
@attempts_per_account
@operation(
    "Verify my real-name identity with the provider: needs the identity_verification purpose "
    "(and cross_border for a provider abroad) granted on its own, and a recent sign-in; "
    "keeps the level, the provider's reference and the masked number, never the number",
    tag=TAG,
    body=VerificationIn,
    responses={201: ("Verified", ResultsOut)},
)
def verify(body: VerificationIn) -> ResponseReturnValue:
    service = flow()
    subject = service.check(submitted(body), SELF)
    guardian = (
        service.check(submitted(body.guardian), GUARDIAN, "#/guardian") if body.guardian else None
    )
    rows = service.verify(current_caller().user, subject, guardian, request_context())
    out = ResultsOut(results=[result_out(row) for row in rows])
    return jsonify(out.model_dump(mode="json")), 201


@bp.get("")
@signed_in()
@operation(
    "My verification results (mine, and my guardian's for a child's account)",
    tag=TAG,
    responses={200: ("The account holder's first, then a guardian's", ResultsOut)},
)
def results() -> ResponseReturnValue:
    rows = results_of(services(), current_caller().user.id)
    return jsonify(ResultsOut(results=[result_out(row) for row in rows]).model_dump(mode="json"))
