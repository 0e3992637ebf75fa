"""The privacy centre's partners page: each partner the person approved, what
it receives, and a button to take the approval back; and one to withdraw
partner sharing from every partner. Thin: PartnerAuthorizations and the
privacy acts the JSON API uses. It lives with the provider (the pages know
nothing of OAuth) and joins the centre's nav through ``privacy_pages``."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext

from app.errors import ServiceError
from app.http.access import signed_in
from app.http.gate import current_caller, submitted_form
from app.http.scope import request_context, services
from app.http.unit_of_work import attempt
from app.models import Channel
from app.oidc.partners import PARTNER_PURPOSE, PartnerAuthorizations
from app.pages.messages import message_for
from app.pages.privacy.views import when
from app.services.privacy_acts import withdraw_consent

bp = Blueprint("oidc_privacy", __name__, template_folder="templates")

NAV_LABEL = lazy_gettext("Partners")
# What each claim means to the person (the approval page says the same).
CLAIM_LABELS = {
    "name": lazy_gettext("Your full name"),
    "email": lazy_gettext("Your email address"),
    "email_verified": lazy_gettext("Whether your email address is verified"),
    "phone_number": lazy_gettext("Your mobile phone number"),
    "phone_number_verified": lazy_gettext("Whether your phone number is verified"),
    "identity_level": lazy_gettext("Your real-name verification level (not your ID number)"),
    "identity_verified_on": lazy_gettext("The day your identity was verified"),
}
NOTICES = {
    "revoked": lazy_gettext("The partner's access has ended."),
    "withdrawn": lazy_gettext(
        "Sharing with partners is withdrawn: every partner's access has ended."
    ),
}
UNKNOWN_PARTNER = lazy_gettext("This partner is not among your approvals.")
NOTHING_SHARED = lazy_gettext("You share with no partner, so there is nothing to withdraw.")


def _page(error: str | None = None, status: int = 200) -> ResponseReturnValue:
    user_id = current_caller().user.id
    body = render_template(
        "oidc_privacy/partners.html",
        partners=PartnerAuthorizations.of(services()).uses(user_id),
        claim_labels=CLAIM_LABELS,
        notice=NOTICES.get(request.args.get("done", "")),
        error=error,
        when=when,
    )
    return body, status


def _done(what: str) -> ResponseReturnValue:
    return redirect(f"/privacy/partners?done={what}", code=303)


@bp.get("/privacy/partners")
@signed_in()
def partners() -> ResponseReturnValue:
    return _page()


@bp.post("/privacy/partners/<client_id>/revoke")
@signed_in()
def revoke(client_id: str) -> ResponseReturnValue:
    submitted_form()  # the gate checked its CSRF token
    caller = current_caller()
    partners = PartnerAuthorizations.of(services())
    if not partners.revoke(caller.user.id, client_id, request_context(), Channel.SETTINGS):
        return _page(str(UNKNOWN_PARTNER), 404)
    return _done("revoked")


@bp.post("/privacy/partners/withdraw")
@signed_in()
def withdraw() -> ResponseReturnValue:
    """Partner sharing withdrawn as a whole: every partner, at once."""
    submitted_form()
    caller = current_caller()
    outcome = attempt(
        lambda: withdraw_consent(services(), caller.session, PARTNER_PURPOSE, request_context())
    )
    if isinstance(outcome, ServiceError):
        shown = NOTHING_SHARED if outcome.slug == "not-granted" else message_for(outcome)
        return _page(str(shown), outcome.status)
    return _done("withdrawn")
