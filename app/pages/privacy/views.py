"""The privacy centre's pages. Thin: each form calls the service (or the
shared function) the JSON API calls, behind the same gate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from babel.dates import format_date, format_datetime
from flask import Blueprint, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import get_locale, lazy_gettext
from pydantic import ValidationError
from werkzeug.wrappers import Response

from app.api.schemas import CancellationIn, Receipt
from app.capabilities import privacy_pages
from app.errors import ServiceError
from app.extensions import limiter
from app.http.access import CANCELLATION, EXPORT, public, signed_in
from app.http.cookies import clear_device_cookie, clear_session_cookie
from app.http.gate import current_caller, submitted_form
from app.http.limits import caller_key, setting
from app.http.scope import request_context, runtime, services
from app.http.unit_of_work import attempt
from app.models import ConsentRecord, RequestKind
from app.pages.i18n import html_lang
from app.pages.messages import message_for
from app.pages.surface import step_up_redirect
from app.services.consent import SECURITY_PURPOSE
from app.services.privacy_acts import export_document, receive_request, withdraw_consent
from app.services.purposes import Purpose

bp = Blueprint("privacy", __name__, template_folder="templates")

# Purposes whose withdrawal takes a sign-in protection away (their withdrawal
# effects remove passkeys or device bindings), with what the person loses.
REMOVES = {
    "device_biometrics": lazy_gettext(
        "Withdrawing deletes every passkey on your account: you can no longer sign in "
        "with a fingerprint, face or device PIN."
    ),
    SECURITY_PURPOSE: lazy_gettext(
        "Withdrawing deletes your bound devices and the device details kept with your "
        "sessions: new-device alerts stop."
    ),
}
PAGE_MESSAGES = {
    "not-withdrawable": lazy_gettext(
        "This cannot be withdrawn on its own. To end it, cancel your account."
    ),
    "not-granted": lazy_gettext("This is not granted, so there is nothing to withdraw."),
    "request-refused": lazy_gettext(
        "You have asked for your data too often today. Try again tomorrow."
    ),
    "request-duplicate": lazy_gettext("The same request is already open."),
}
KINDS = {
    RequestKind.ACCESS_EXPORT.value: lazy_gettext("Copy of my data"),
    RequestKind.RECTIFICATION.value: lazy_gettext("Correction"),
    RequestKind.DELETION.value: lazy_gettext("Deletion"),
    RequestKind.CONSENT_WITHDRAWAL.value: lazy_gettext("Consent withdrawal"),
    RequestKind.ACCOUNT_CANCELLATION.value: lazy_gettext("Account cancellation"),
}
# The kinds a person may ask for here: those the API's RequestIn allows.
ASKABLE = (RequestKind.DELETION, RequestKind.RECTIFICATION, RequestKind.ACCESS_EXPORT)
STATUSES = {
    "open": lazy_gettext("Open"),
    "completed": lazy_gettext("Completed"),
    "refused": lazy_gettext("Refused"),
}
DECISIONS = {
    "granted": lazy_gettext("Granted"),
    "refused": lazy_gettext("Refused"),
    "withdrawn": lazy_gettext("Withdrawn"),
}


def _message(error: ServiceError) -> str:
    return str(PAGE_MESSAGES.get(error.slug, message_for(error)))


def when(moment: datetime) -> str:
    """An instant in the time zone the service's working days are counted in,
    with the zone named (a due date is the end of a local day)."""
    calendar = runtime().calendar
    return format_datetime(moment, "long", tzinfo=calendar.tz, locale=get_locale())


def due_day(moment: datetime) -> str:
    """The local day a request is due by (it is due at that day's end)."""
    return format_date(runtime().calendar.local_date(moment), "long", locale=get_locale())


@bp.context_processor
def _privacy_globals() -> dict[str, object]:
    return {"when": when, "due_day": due_day}


@bp.app_context_processor
def _privacy_nav() -> dict[str, object]:
    # The nav is shared with the centre's sections other capabilities add.
    return {"privacy_pages": privacy_pages}


def text_of(texts: Any) -> str:
    """A catalogue text in the page's language."""
    return str(texts.zh_cn if html_lang() == "zh-CN" else texts.en)


@dataclass(frozen=True)
class PurposeView:
    purpose: Purpose
    current: ConsentRecord | None
    history: Sequence[ConsentRecord]

    @property
    def granted(self) -> bool:
        return self.current is not None and self.current.decision == "granted"


def _purpose_views(user_id: str) -> list[PurposeView]:
    svc = services()
    history = svc.consent.history(user_id)
    latest = svc.consent.current(user_id)
    return [
        PurposeView(
            purpose=purpose,
            current=latest.get((purpose.code, None)),
            history=[r for r in history if r.purpose == purpose.code and r.client_id is None],
        )
        for purpose in runtime().catalogue.decided_at_sign_in()
    ]


def _centre(errors: dict[str, str] | None = None, status: int = 200) -> ResponseReturnValue:
    caller = current_caller()
    policy = services().policies.require_current()
    body = render_template(
        "privacy/centre.html",
        purposes=_purpose_views(caller.user.id),
        policy=policy,
        errors=errors or {},
        changed=request.args.get("changed"),
        removes=REMOVES,
        decisions=DECISIONS,
        text_of=text_of,
    )
    return body, status


@bp.get("/privacy")
@signed_in()
def centre() -> ResponseReturnValue:
    return _centre()


def _done(purpose: str) -> Response:
    return redirect(f"/privacy?{urlencode({'changed': purpose})}#purpose-{purpose}", code=303)


@bp.post("/privacy/<code:purpose>/withdraw")
@signed_in()
def withdraw(purpose: str) -> ResponseReturnValue:
    submitted_form()  # the gate checked its CSRF token
    caller = current_caller()
    outcome = attempt(
        lambda: withdraw_consent(services(), caller.session, purpose, request_context())
    )
    if isinstance(outcome, ServiceError):
        if outcome.slug == "insufficient-user-authentication":
            # Taking a sign-in protection away needs a recent sign-in; come back
            # to the centre (the withdraw address takes posts only).
            return step_up_redirect(outcome.headers, "/privacy")
        return _centre({purpose: _message(outcome)}, outcome.status)
    response = _done(purpose)
    if purpose == SECURITY_PURPOSE:
        clear_device_cookie(response)
    return response


@bp.post("/privacy/<code:purpose>/grant")
@signed_in()
def grant(purpose: str) -> ResponseReturnValue:
    form = submitted_form()
    caller = current_caller()
    version = form.get("policy_version", "")
    outcome = attempt(
        lambda: services().consent.grant(caller.user.id, purpose, version, request_context())
    )
    if isinstance(outcome, ServiceError):
        return _centre({purpose: _message(outcome)}, outcome.status)
    return _done(purpose)


@bp.get("/privacy/receipts/<int:record_id>")
@signed_in(consent_step=True)
def receipt(record_id: int) -> ResponseReturnValue:
    caller = current_caller()
    token = services().consent.receipt(caller.user.id, record_id)
    response = jsonify(Receipt(receipt=token).model_dump())
    response.headers["Content-Disposition"] = (
        f'attachment; filename="privid-consent-receipt-{record_id}.json"'
    )
    return response


@bp.get("/privacy/export")
@signed_in()
def export_page() -> ResponseReturnValue:
    return render_template("privacy/export.html", error=None)


@bp.post("/privacy/export")
@signed_in(step_up=EXPORT)
def export() -> ResponseReturnValue:
    submitted_form()
    caller = current_caller()
    outcome = attempt(lambda: export_document(services(), caller.user))
    if isinstance(outcome, ServiceError):
        return render_template("privacy/export.html", error=_message(outcome)), outcome.status
    response = jsonify(outcome)
    response.headers["Content-Disposition"] = 'attachment; filename="privid-export.json"'
    return response


def _requests_page(error: str | None = None, status: int = 200) -> ResponseReturnValue:
    caller = current_caller()
    rights = services().rights
    body = render_template(
        "privacy/requests.html",
        requests=rights.for_user(caller.user.id),
        is_overdue=rights.is_overdue,
        kinds=KINDS,
        askable=ASKABLE,
        statuses=STATUSES,
        error=error,
        made=request.args.get("made") == "1",
    )
    return body, status


@bp.get("/privacy/requests")
@signed_in(consent_step=True)
def requests_page() -> ResponseReturnValue:
    return _requests_page()


@bp.post("/privacy/requests")
@signed_in(consent_step=True)
@limiter.limit(setting("limit_requests_per_account"), key_func=caller_key)
def make_request() -> ResponseReturnValue:
    form = submitted_form()
    caller = current_caller()
    kind = form.get("kind", "")
    if kind not in {k.value for k in ASKABLE}:
        return _requests_page(str(lazy_gettext("Choose what you are asking for.")), 422)
    # Deleting ended sessions is done at once; anything else goes to an operator.
    categories = ["ended_sessions"] if form.get("ended_sessions") == "yes" else ["other"]
    if kind != RequestKind.DELETION.value:
        categories = []
    outcome = attempt(
        lambda: receive_request(services(), caller.user.id, RequestKind(kind), categories)
    )
    if isinstance(outcome, ServiceError):
        return _requests_page(_message(outcome), outcome.status)
    return redirect("/privacy/requests?made=1", code=303)


@bp.get("/privacy/cancel")
@signed_in(consent_step=True)
def cancel_page() -> ResponseReturnValue:
    return _cancel_page()


def _cancel_page(error: str | None = None, status: int = 200) -> ResponseReturnValue:
    archive = runtime().catalogue.get("legal_archive")
    return render_template(
        "privacy/cancel.html", error=error, archive=archive, text_of=text_of
    ), status


@bp.post("/privacy/cancel")
@signed_in(consent_step=True, step_up=CANCELLATION)
def cancel() -> ResponseReturnValue:
    form = submitted_form()
    caller = current_caller()
    try:
        # The same confirmation the API's body demands, ticked instead of typed.
        CancellationIn.model_validate({"confirm": form.get("confirm", "")})
    except ValidationError:
        return _cancel_page(str(lazy_gettext("Tick the box to confirm.")), 422)
    services().cancellation.cancel(caller.user)
    response = redirect("/privacy/goodbye", code=303)
    clear_session_cookie(response)
    return response


@bp.get("/privacy/goodbye")
@public()
def goodbye() -> ResponseReturnValue:
    return render_template("privacy/goodbye.html")


@bp.get("/privacy/notices")
@signed_in(consent_step=True)
def notices() -> ResponseReturnValue:
    caller = current_caller()
    found = services().incidents.notices_for(caller.user.id)
    return render_template("privacy/notices.html", notices=found)
