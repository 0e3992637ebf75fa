"""Sign-up (details and consent choices, then both codes) and the consent
step of a signed-in session. The pages call the services the JSON API calls:
registration start/verify/resend, the sign-in completer's decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlencode

from flask import Blueprint, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext
from werkzeug.datastructures import MultiDict

from app.errors import ServiceError
from app.extensions import limiter
from app.http.access import public, signed_in
from app.http.cookies import attach_device_cookie, attach_session_cookie
from app.http.gate import current_caller, submitted_form
from app.http.limits import flow_destination_key, per_destination_limit, setting
from app.http.scope import request_context, services, sign_in_context
from app.http.unit_of_work import attempt
from app.models import Decision, RegistrationFlow
from app.pages.i18n import html_lang
from app.pages.messages import PASSWORD_REASONS, message_for, password_message
from app.pages.returns import allowed_return_path
from app.services.consent import REQUIRED_REFUSED, DecisionInput
from app.services.purposes import LegalBasis, Purpose
from app.services.registration import VerifyResult
from app.services.sessions import Transport

bp = Blueprint("signup", __name__, template_folder="templates")

DEFAULT_NEXT = "/account"
CHANNELS = ("email", "phone")
# Typed details the services refused (their own detail is English API prose).
FIELD_MESSAGES = {
    "email": lazy_gettext("Enter a valid email address."),
    "phone": lazy_gettext("Enter a valid mobile phone number."),
    "full_name": lazy_gettext("Enter your full name."),
}
# The catalogue names data and recipients in English only; these are its words
# in the page's language (a word not listed here is shown as the catalogue has it).
CATALOGUE_WORDS = {
    "mobile phone number": lazy_gettext("mobile phone number"),
    "email address": lazy_gettext("email address"),
    "full name": lazy_gettext("full name"),
    "password (hashed)": lazy_gettext("password (hashed)"),
    "session identifier": lazy_gettext("session identifier"),
    "sign-in state": lazy_gettext("sign-in state"),
    "device model": lazy_gettext("device model"),
    "operating system": lazy_gettext("operating system"),
    "device identifier": lazy_gettext("device identifier"),
    "truncated IP address": lazy_gettext("truncated IP address"),
    "network type": lazy_gettext("network type"),
    "operation logs": lazy_gettext("operation logs"),
    "fault data": lazy_gettext("fault data"),
    "WebAuthn public key and its metadata": lazy_gettext("WebAuthn public key and its metadata"),
    "ID card number (kept as a keyed hash and a masked form)": lazy_gettext(
        "ID card number (kept as a keyed hash and a masked form)"
    ),
    "liveness check result": lazy_gettext("liveness check result"),
    "identity verification provider (cross-check only)": lazy_gettext(
        "identity verification provider (cross-check only)"
    ),
    "WeChat openid and unionid": lazy_gettext("WeChat openid and unionid"),
    "WeChat nickname": lazy_gettext("WeChat nickname"),
    "Tencent WeChat Open Platform": lazy_gettext("Tencent WeChat Open Platform"),
    "account information needed by the service abroad": lazy_gettext(
        "account information needed by the service abroad"
    ),
    "the overseas recipient named at the time of consent": lazy_gettext(
        "the overseas recipient named at the time of consent"
    ),
    "identity information": lazy_gettext("identity information"),
    "transaction records": lazy_gettext("transaction records"),
    "records of your activity the law requires us to keep": lazy_gettext(
        "records of your activity the law requires us to keep"
    ),
    "judicial or government authorities, when the law requires": lazy_gettext(
        "judicial or government authorities, when the law requires"
    ),
    "pages visited": lazy_gettext("pages visited"),
    "referring page": lazy_gettext("referring page"),
    "browser environment and display settings": lazy_gettext(
        "browser environment and display settings"
    ),
}
REQUIRED_MESSAGE = lazy_gettext("Tick this box: without it there can be no account.")
STALE_POLICY = lazy_gettext(
    "The privacy policy changed while you were reading. Review the choices below and send again."
)


@dataclass
class Choices:
    """The consent part of a form: what was ticked, turned into decisions."""

    batch: list[DecisionInput] = field(default_factory=list)
    # Separate-consent grants: each recorded as an action of its own.
    separate: list[str] = field(default_factory=list)
    ticked: set[str] = field(default_factory=set)
    unticked_required: list[str] = field(default_factory=list)


def read_choices(form: MultiDict[str, str], purposes: list[Purpose]) -> Choices:
    choices = Choices()
    for purpose in purposes:
        ticked = form.get(f"purpose-{purpose.code}") == "granted"
        if ticked:
            choices.ticked.add(purpose.code)
        if ticked and purpose.needs_separate_action:
            choices.separate.append(purpose.code)
            continue
        if purpose.required and not ticked:
            choices.unticked_required.append(purpose.code)
        # Nothing is granted unless its box was ticked.
        decision = Decision.GRANTED if ticked else Decision.REFUSED
        choices.batch.append(DecisionInput(purpose.code, decision))
    return choices


def retention_text(purpose: Purpose) -> str:
    """The catalogue's ISO 8601 retention, in words."""
    value = purpose.retention
    if value == "P0D":
        if purpose.withdrawable:
            return str(gettext("Until you withdraw consent or close your account"))
        return str(gettext("Until you close your account"))
    amount, unit = int(value[1:-1]), value[-1]
    # Chinese has no plural forms; English says "1 year" apart.
    if unit == "Y":
        return str(gettext("1 year") if amount == 1 else gettext("%(num)d years", num=amount))
    if unit == "M":
        return str(gettext("1 month") if amount == 1 else gettext("%(num)d months", num=amount))
    return str(gettext("1 day") if amount == 1 else gettext("%(num)d days", num=amount))


def catalogue_word(word: str) -> str:
    known = CATALOGUE_WORDS.get(word)
    return str(known) if known is not None else word


def why_required(purpose: Purpose) -> str:
    if purpose.legal_basis is LegalBasis.LEGAL_OBLIGATION:
        return str(gettext("Required: the law obliges us to keep this."))
    return str(gettext("Required: the account cannot be provided without it."))


def purpose_view(purpose: Purpose) -> dict[str, object]:
    chinese = html_lang() == "zh-CN"
    separator = "；" if chinese else "; "
    return {
        "code": purpose.code,
        "title": purpose.title.zh_cn if chinese else purpose.title.en,
        "description": purpose.description.zh_cn if chinese else purpose.description.en,
        "data": separator.join(catalogue_word(w) for w in purpose.data_categories),
        "recipients": separator.join(catalogue_word(w) for w in purpose.recipients),
        "retention": retention_text(purpose),
        "required": purpose.required,
        "why_required": why_required(purpose) if purpose.required else "",
        "separate": purpose.needs_separate_action,
        "sensitive": purpose.sensitive,
        "cross_border": purpose.cross_border,
    }


def consent_errors(error: ServiceError, batch: list[DecisionInput]) -> dict[str, str]:
    """Field errors of a batch of decisions, by purpose code."""
    found: dict[str, str] = {}
    for item in error.errors:
        parts = item.pointer.split("/")
        if "decisions" in parts:
            index = parts.index("decisions") + 1
            if index < len(parts) and parts[index].isdigit() and int(parts[index]) < len(batch):
                found[batch[int(parts[index])].purpose] = message_for(error)
    return found


# -- sign-up --------------------------------------------------------------------


def _signup_page(
    values: dict[str, str],
    errors: dict[str, str],
    ticked: set[str],
    next_path: str,
    status: int = 200,
) -> ResponseReturnValue:
    svc = services()
    policy = svc.policies.require_current()
    purposes = [purpose_view(p) for p in svc.consent.catalogue.decided_at_sign_in()]
    body = render_template(
        "signup/signup.html",
        values=values,
        errors=errors,
        ticked=ticked,
        purposes=purposes,
        policy_version=policy.version,
        next_path=next_path,
        password_reasons={code: str(text) for code, text in PASSWORD_REASONS.items()},
    )
    return body, status


@bp.get("/signup")
@public()
def signup_form() -> ResponseReturnValue:
    return _signup_page({}, {}, set(), allowed_return_path(request.args.get("next", DEFAULT_NEXT)))


# The limits of POST /api/v1/registration: per network, and per address a code goes to.
@bp.post("/signup")
@public(reads_forms=True)
@limiter.limit(setting("limit_registration_per_ip"))
@per_destination_limit("email", "email")
@per_destination_limit("phone", "phone")
def signup() -> ResponseReturnValue:
    form = submitted_form()
    next_path = allowed_return_path(form.get("next", DEFAULT_NEXT))
    values = {name: form.get(name, "") for name in ("email", "phone", "full_name")}
    password = form.get("password", "")
    svc = services()
    choices = read_choices(form, svc.consent.catalogue.decided_at_sign_in())
    outcome = attempt(
        lambda: svc.registration.start(
            email=values["email"],
            phone=values["phone"],
            full_name=values["full_name"],
            password=password,
            context=request_context(),
            policy_version=form.get("policy_version", ""),
            decisions=choices.batch,
            separate_grants=choices.separate,
        )
    )
    if isinstance(outcome, ServiceError):
        errors = _signup_errors(outcome, choices, values, password)
        return _signup_page(values, errors, choices.ticked, next_path, 422)
    return redirect(_codes_address(outcome.id, next_path), code=303)


def _signup_errors(
    error: ServiceError, choices: Choices, values: dict[str, str], password: str
) -> dict[str, str]:
    if error.slug == REQUIRED_REFUSED:
        return {code: str(REQUIRED_MESSAGE) for code in choices.unticked_required}
    if error.slug == "stale-policy-version":
        return {"form": str(STALE_POLICY)}
    errors = consent_errors(error, choices.batch)
    for item in error.errors:
        name = item.pointer.removeprefix("#/")
        if name == "password":
            errors[name] = password_message(item.reason, error)
        elif name in FIELD_MESSAGES:
            errors[name] = str(FIELD_MESSAGES[name])
    if not errors:
        errors["form"] = message_for(error)
    return errors


def _codes_address(flow_id: str, next_path: str, tail: str = "") -> str:
    """The codes page's own address: the flow (unguessable) and where to go after."""
    return f"/signup/{flow_id}{tail}?" + urlencode({"next": next_path})


def _codes_page(
    flow: RegistrationFlow, errors: dict[str, str], notice: str = ""
) -> ResponseReturnValue:
    next_path = allowed_return_path(request.args.get("next", DEFAULT_NEXT))
    body = render_template(
        "signup/codes.html",
        confirmed={
            "email": flow.email_verified_at is not None,
            "phone": flow.phone_verified_at is not None,
        },
        errors=errors,
        notice=notice,
        action=_codes_address(flow.id, next_path),
        resend_action=_codes_address(flow.id, next_path, "/resend"),
    )
    return body, 422 if errors else 200


def _codes_failed(flow_id: str, channel: str, error: ServiceError) -> ResponseReturnValue:
    """The codes page again, the failure next to the code it is about."""
    return _codes_page(services().registration.flow(flow_id), {channel: message_for(error)})


def _channel() -> str | None:
    channel = submitted_form().get("channel", "")
    return channel if channel in CHANNELS else None


@bp.get("/signup/<id:flow_id>")
@public()
def codes(flow_id: str) -> ResponseReturnValue:
    notice = gettext("A new code is on its way.") if request.args.get("sent") else ""
    return _codes_page(services().registration.flow(flow_id), {}, notice)


@bp.post("/signup/<id:flow_id>")
@public(reads_forms=True)
@limiter.limit(setting("limit_login_per_ip"))
def verify(flow_id: str) -> ResponseReturnValue:
    svc = services()
    channel = _channel()
    if channel is None:
        return _codes_page(svc.registration.flow(flow_id), {})
    code = submitted_form().get(f"{channel}-code", "").strip()
    outcome = attempt(
        lambda: svc.registration.verify(
            flow_id,
            channel,
            code,
            transport=Transport.COOKIE,
            context=sign_in_context(Transport.COOKIE),
        )
    )
    if isinstance(outcome, ServiceError):
        return _codes_failed(flow_id, channel, outcome)
    next_path = allowed_return_path(request.args.get("next", DEFAULT_NEXT))
    if outcome.signed_in is None:
        # POST-redirect-GET: the page shows what is still to prove.
        return redirect(_codes_address(flow_id, next_path), code=303)
    return _signed_up(outcome, next_path)


# The limits of POST /api/v1/registration/<flow>/resend.
@bp.post("/signup/<id:flow_id>/resend")
@public(reads_forms=True)
@limiter.limit(setting("limit_code_send_per_ip"))
@limiter.limit(setting("limit_code_send_per_destination"), key_func=flow_destination_key)
def resend(flow_id: str) -> ResponseReturnValue:
    svc = services()
    channel = _channel()
    if channel is None:
        return _codes_page(svc.registration.flow(flow_id), {})
    resent = attempt(lambda: svc.registration.resend(flow_id, channel))
    if isinstance(resent, ServiceError):
        return _codes_failed(flow_id, channel, resent)
    next_path = allowed_return_path(request.args.get("next", DEFAULT_NEXT))
    address = _codes_address(flow_id, next_path)
    return redirect(f"{address}&sent={channel}", code=303)


def _signed_up(outcome: VerifyResult, next_path: str) -> ResponseReturnValue:
    assert outcome.signed_in is not None
    svc = services()
    session = outcome.signed_in.issued.session
    # The version the person read and the boxes they ticked, kept on the flow.
    version, grants = svc.registration.separate_grants_of(outcome.flow)
    for code in grants:
        # Each separate consent is its own action, as POST .../<purpose>/grant is.
        # A refusal here (the policy changed since it was read) is raised before
        # anything is written; the consent step then asks again.
        try:
            svc.signin.decide(
                session, version, [DecisionInput(code, Decision.GRANTED)], request_context()
            )
        except ServiceError:
            break
    response = redirect(next_path, code=303)
    attach_session_cookie(response, outcome.signed_in.issued)
    attach_device_cookie(response, outcome.signed_in.device_cookie)
    return response


# -- the consent step -------------------------------------------------------------


def _consent_page(
    pending: list[Purpose],
    policy_version: str,
    errors: dict[str, str],
    ticked: set[str],
    next_path: str,
    status: int = 200,
) -> ResponseReturnValue:
    body = render_template(
        "signup/consent.html",
        purposes=[purpose_view(p) for p in pending],
        policy_version=policy_version,
        errors=errors,
        ticked=ticked,
        next_path=next_path,
    )
    return body, status


@bp.route("/consent", methods=["GET", "POST"])
@signed_in(consent_step=True)
def consent() -> ResponseReturnValue:
    caller = current_caller()
    svc = services()
    pending = svc.consent.pending(caller.user.id)
    policy = svc.policies.require_current()
    source = submitted_form() if request.method == "POST" else request.args
    next_path = allowed_return_path(source.get("next", DEFAULT_NEXT))
    if not pending:
        return redirect(next_path, code=303)
    if request.method == "GET":
        return _consent_page(pending, policy.version, {}, set(), next_path)
    form = submitted_form()
    choices = read_choices(form, pending)
    if choices.unticked_required:
        # An unticked box is no decision; refusing a required purpose would end
        # every session, so the page asks instead of sending a refusal.
        errors = {code: str(REQUIRED_MESSAGE) for code in choices.unticked_required}
        return _consent_page(pending, policy.version, errors, choices.ticked, next_path, 422)
    version = form.get("policy_version", "")
    steps: list[list[DecisionInput]] = [choices.batch] if choices.batch else []
    steps += [[DecisionInput(code, Decision.GRANTED)] for code in choices.separate]
    for step in steps:
        outcome = attempt(
            partial(svc.signin.decide, caller.session, version, step, request_context())
        )
        if isinstance(outcome, ServiceError):
            errors = consent_errors(outcome, step) or {"form": _consent_message(outcome)}
            fresh = svc.policies.require_current().version
            return _consent_page(pending, fresh, errors, choices.ticked, next_path, 422)
    return redirect(next_path, code=303)


def _consent_message(error: ServiceError) -> str:
    if error.slug == "stale-policy-version":
        return str(STALE_POLICY)
    return message_for(error)
