"""The privacy centre's identity page: the kept result, and a form to verify
(zh-CN and en). Thin: the same VerificationService as the JSON API. The
number typed is never put back into the page, even when it is refused."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext

from app.errors import ServiceError
from app.http.access import IDENTITY_VERIFICATION, signed_in
from app.http.gate import current_caller, submitted_form
from app.http.scope import request_context, runtime, services
from app.http.unit_of_work import attempt
from app.pages.messages import message_for
from app.pages.privacy.views import when
from verification.documents import DocumentType, Rule
from verification.models import IdentityVerification
from verification.service import (
    CROSS_BORDER,
    GUARDIAN,
    PURPOSE,
    SELF,
    Submitted,
    results_of,
)
from verification.wiring import attempts_per_account, flow

bp = Blueprint("verification_pages", __name__, template_folder="templates")

NAV_LABEL = lazy_gettext("Identity verification")
DOCUMENT_TYPES = {
    DocumentType.RESIDENT_ID_CARD: lazy_gettext("Resident identity card"),
    DocumentType.RESIDENCE_PERMIT: lazy_gettext(
        "Residence permit for Hong Kong, Macao and Taiwan residents"
    ),
    DocumentType.HK_MO_TRAVEL_PERMIT: lazy_gettext(
        "Mainland travel permit for Hong Kong and Macao residents"
    ),
    DocumentType.TW_TRAVEL_PERMIT: lazy_gettext("Mainland travel permit for Taiwan residents"),
    DocumentType.FOREIGN_PERMANENT_RESIDENCE: lazy_gettext("Foreign permanent residence card"),
    DocumentType.PASSPORT: lazy_gettext("Passport"),
}
RULES = {
    Rule.EMPTY: lazy_gettext("Enter the document number."),
    Rule.CHARACTERS: lazy_gettext("The number contains characters this document never has."),
    Rule.LENGTH: lazy_gettext("The number has the wrong length for this document."),
    Rule.OBSOLETE_15_DIGIT: lazy_gettext(
        "15-digit card numbers are no longer valid: enter the 18-character number."
    ),
    Rule.CHECK_CHARACTER: lazy_gettext(
        "The last character does not match the rest of the number: check for a typo."
    ),
    Rule.BIRTH_DATE: lazy_gettext("The birth date inside the number is not a real date."),
    Rule.FUTURE_BIRTH_DATE: lazy_gettext("The birth date inside the number is in the future."),
    Rule.REGION: lazy_gettext("The first six digits are not a known region code."),
    Rule.WRONG_TYPE: lazy_gettext("This number belongs to another kind of document."),
    Rule.FORMAT: lazy_gettext("The number does not have this document's format."),
}
OUTCOMES = {
    "separate-consent-required": lazy_gettext(
        "Tick the consent box: the provider receives your document only with it."
    ),
    "identity-not-confirmed": lazy_gettext(
        "The name and number do not match the issuing institution's record."
    ),
    "identity-already-bound": lazy_gettext("This identity already verified another account."),
    "guardian-required": lazy_gettext(
        "The document shows an age under 14: a parent or guardian must verify too."
    ),
    "guardian-not-adult": lazy_gettext("The guardian must be an adult."),
    "guardian-age-unknown": lazy_gettext(
        "The guardian's document must show their birth date: use a resident identity card, "
        "a residence permit or a permanent residence card."
    ),
    "guardian-not-needed": lazy_gettext(
        "A guardian verifies only for a child under 14: leave the guardian's details empty."
    ),
    "unknown-document-type": lazy_gettext("Choose the kind of document."),
    "provider-unavailable": lazy_gettext(
        "Verification is unavailable right now; nothing was kept. Try again later."
    ),
    "provider-answer-rejected": lazy_gettext(
        "The provider's answer could not be trusted; nothing was kept."
    ),
    "provider-error": lazy_gettext("The provider could not check the document; nothing was kept."),
    "too-many-attempts": lazy_gettext("Too many attempts today; try again tomorrow."),
    "rate-limited": lazy_gettext("Too many attempts today; try again tomorrow."),
}
LEVELS = {
    "L1": lazy_gettext("Name and number confirmed (L1)"),
    "L2": lazy_gettext("Name, number and liveness confirmed (L2)"),
}
ROLES = {SELF: lazy_gettext("You"), "guardian": lazy_gettext("Your guardian")}
UNKNOWN_TYPE = lazy_gettext("Choose the kind of document.")


def _granted(user_id: str, purpose: str) -> bool:
    return services().consent.is_granted(user_id, purpose)


def _message(error: ServiceError) -> str:
    if error.errors and error.errors[0].reason in {r.value for r in Rule}:
        return str(RULES[Rule(error.errors[0].reason)])
    known = OUTCOMES.get(error.slug)
    return str(known) if known is not None else message_for(error)


def _page(error: str | None = None, status: int = 200) -> ResponseReturnValue:
    user_id = current_caller().user.id
    abroad = runtime().settings.verification_provider_abroad
    body = render_template(
        "verification/identity.html",
        results=results_of(services(), user_id),
        consented=_granted(user_id, PURPOSE),
        abroad=abroad,
        cross_border_granted=_granted(user_id, CROSS_BORDER),
        policy=services().policies.require_current(),
        document_types=DOCUMENT_TYPES,
        levels=LEVELS,
        roles=ROLES,
        error=error,
        done=request.args.get("done") == "1",
        when=when,
    )
    return body, status


def _guardian_typed(form: Mapping[str, str]) -> Submitted:
    try:
        kind = DocumentType(form.get("guardian_document_type", ""))
    except ValueError:
        raise ServiceError(
            "unknown-document-type", 422, "Unknown document", "Choose the kind of document."
        ) from None
    return Submitted(
        form.get("guardian_full_name", ""), kind, form.get("guardian_document_number", "")
    )


@bp.get("/privacy/identity")
@signed_in()
def identity() -> ResponseReturnValue:
    return _page()


@bp.post("/privacy/identity")
@signed_in(step_up=IDENTITY_VERIFICATION)
@attempts_per_account
def verify() -> ResponseReturnValue:
    form = submitted_form()
    user = current_caller().user
    try:
        kind = DocumentType(form.get("document_type", ""))
    except ValueError:
        return _page(str(UNKNOWN_TYPE), 422)

    def run() -> list[IdentityVerification]:
        context = request_context()
        service = flow()
        typed = Submitted(form.get("full_name", ""), kind, form.get("document_number", ""))
        subject = service.check(typed, SELF)
        guardian = None
        if form.get("guardian_document_number", "").strip():
            guardian = service.check(_guardian_typed(form), GUARDIAN, "#/guardian")
        ticked = {p for p in (PURPOSE, CROSS_BORDER) if form.get(f"consent_{p}") == "yes"}
        service.grant_ticked(user.id, ticked, form.get("policy_version", ""), context)
        return service.verify(user, subject, guardian, context)

    outcome = attempt(run)
    if isinstance(outcome, ServiceError):
        return _page(_message(outcome), outcome.status)
    return redirect("/privacy/identity?done=1", code=303)
