"""Signing in and out, in the browser.

Thin views over the services the JSON API's /api/v1/login/*, /me/step-up and
/logout call; the passkey ceremonies run in static/signin.js against the JSON
API itself. Every ``next`` goes through ``allowed_return_path``."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response

from app.errors import ServiceError
from app.extensions import limiter
from app.http.access import public, signed_in
from app.http.cookies import attach_device_cookie, attach_session_cookie, clear_session_cookie
from app.http.gate import current_caller, submitted_form
from app.http.limits import identifier_source_key, per_destination_limit, setting
from app.http.scope import request_context, services, sign_in_context
from app.http.unit_of_work import attempt
from app.pages.messages import message_for, password_message
from app.pages.returns import allowed_return_path
from app.services.login import SecondFactorRequired
from app.services.sessions import Acr, Transport
from app.services.signin import SignInResult

bp = Blueprint("signin", __name__, template_folder="templates")

# What these forms' failures mean to a person; the rest come from messages.py.
MESSAGES = {
    "mfa-ticket-invalid": lazy_gettext(
        "This sign-in has expired or was already finished. Start again."
    ),
    "user-verification-required": lazy_gettext(
        "Your device did not confirm it is you (fingerprint, face or PIN). Try again and "
        "complete the check on your device."
    ),
    "no-passkey": lazy_gettext("You have no passkey yet. Confirm it is you another way."),
}
PHONE_INVALID = lazy_gettext("Enter a mobile phone number, for example 139 0000 0000.")
PASSWORD_WRONG = lazy_gettext("The password is not correct.")
TOTP_MISSING = lazy_gettext("Your account uses an authenticator app: enter its code too.")
SECOND_FACTOR_METHODS = ("totp", "recovery_code", "email_code", "sms_code")
RESET_DONE = lazy_gettext("Your password is changed, and every session ended. Sign in with it now.")


MAX_HINT_LENGTH = 254


def _message(error: ServiceError) -> str:
    known = MESSAGES.get(error.slug)
    return str(known) if known is not None else message_for(error)


def _field_errors(error: ServiceError, fields: dict[str, tuple[str, object]]) -> dict[str, str]:
    """The error next to its field: ``fields`` maps the pointer's API field to
    the form's field and its message; anything else goes under ``form``."""
    placed: dict[str, str] = {}
    for detail in error.errors:
        known = fields.get(detail.pointer.removeprefix("#/"))
        if known is not None:
            placed[known[0]] = str(known[1])
    return placed or {"form": _message(error)}


def _next_from(values: dict[str, str] | None = None) -> str:
    source = values if values is not None else request.args
    return allowed_return_path(source.get("next"))


def finish_sign_in(
    result: SignInResult | SecondFactorRequired, next_path: str
) -> ResponseReturnValue:
    """A sign-in's outcome as the API gives it: the second factor due, the
    consent step, or a full session sent back to where the person was going."""
    if isinstance(result, SecondFactorRequired):
        return _second_factor_page(result.ticket, result.methods, next_path)
    target = next_path if result.complete else f"/consent?{urlencode({'next': next_path})}"
    response = redirect(target, code=303)
    attach_session_cookie(response, result.issued)
    attach_device_cookie(response, result.device_cookie)
    return response


def _second_factor_page(
    ticket: str,
    methods: list[str],
    next_path: str,
    errors: dict[str, str] | None = None,
    code_sent: bool = False,
    status: int = 200,
) -> ResponseReturnValue:
    return (
        render_template(
            "signin/second_factor.html",
            ticket=ticket,
            methods=[m for m in methods if m in SECOND_FACTOR_METHODS],
            next=next_path,
            errors=errors or {},
            # An email or SMS code went out: its box shows.
            code_sent=code_sent,
        ),
        status,
    )


# -- password and passkey --------------------------------------------------------


@bp.get("/signin")
@public()
def signin_form() -> ResponseReturnValue:
    notice = RESET_DONE if request.args.get("reset") == "done" else None
    return render_template(
        "signin/signin.html",
        next=_next_from(),
        errors={},
        # OIDC's login_hint, passed on by the authorisation endpoint: a
        # suggestion to fill in, never trusted for anything else.
        identifier=request.args.get("login_hint", "")[:MAX_HINT_LENGTH],
        notice=notice,
    )


@bp.post("/signin")
@public(reads_forms=True)
@limiter.limit(setting("limit_login_per_ip"))
@limiter.limit(setting("limit_login_per_account"), key_func=identifier_source_key("identifier"))
def signin_password() -> ResponseReturnValue:
    form = submitted_form()
    next_path = _next_from(form)
    identifier, password = form.get("identifier", "").strip(), form.get("password", "")
    if not identifier or not password:
        errors = {"form": str(MISSING_DETAILS)}
        return _signin_again(identifier, next_path, errors)
    outcome = attempt(
        lambda: services().login.with_password(
            identifier, password, transport=Transport.COOKIE,
            context=sign_in_context(Transport.COOKIE),
        )
    )  # fmt: skip
    if isinstance(outcome, ServiceError):
        # One message for every failure: nothing says which part was wrong.
        return _signin_again(identifier, next_path, {"form": _message(outcome)})
    return finish_sign_in(outcome, next_path)


MISSING_DETAILS = lazy_gettext("Enter your email or phone number and your password.")


def _signin_again(identifier: str, next_path: str, errors: dict[str, str]) -> ResponseReturnValue:
    page = render_template(
        "signin/signin.html", next=next_path, errors=errors, identifier=identifier
    )
    return page, 400


# -- SMS code ----------------------------------------------------------------------


@bp.get("/signin/sms")
@public()
def sms_form() -> ResponseReturnValue:
    return render_template("signin/sms.html", next=_next_from(), errors={}, phone="", flow=None)


@bp.post("/signin/sms")
@public(reads_forms=True)
@limiter.limit(setting("limit_code_send_per_ip"))
@per_destination_limit("phone", "phone")
def sms_send() -> ResponseReturnValue:
    form = submitted_form()
    next_path, phone = _next_from(form), form.get("phone", "").strip()
    outcome = attempt(lambda: services().login.send_sms_code(phone, request_context()))
    if isinstance(outcome, ServiceError):
        errors = _field_errors(outcome, {"phone": ("phone", PHONE_INVALID)})
        page = render_template(
            "signin/sms.html", next=next_path, errors=errors, phone=phone, flow=None
        )
        return page, 400
    return render_template("signin/sms.html", next=next_path, errors={}, phone=phone, flow=outcome)


@bp.post("/signin/sms/code")
@public(reads_forms=True)
@limiter.limit(setting("limit_login_per_ip"))
def sms_code() -> ResponseReturnValue:
    form = submitted_form()
    next_path = _next_from(form)
    phone, flow, code = (form.get(k, "").strip() for k in ("phone", "flow", "code"))
    outcome = attempt(
        lambda: services().login.with_sms_code(
            phone, flow, code, transport=Transport.COOKIE,
            context=sign_in_context(Transport.COOKIE),
        )
    )  # fmt: skip
    if isinstance(outcome, ServiceError):
        errors = {"code": _message(outcome)}
        page = render_template(
            "signin/sms.html", next=next_path, errors=errors, phone=phone, flow=flow
        )
        return page, 400
    return finish_sign_in(outcome, next_path)


# -- password reset ----------------------------------------------------------------


def _reset_page(
    identifier: str, flow: str | None, errors: dict[str, str], status: int = 200
) -> ResponseReturnValue:
    page = render_template(
        "signin/reset.html", identifier=identifier, flow=flow, errors=errors
    )  # fmt: skip
    return page, status


@bp.get("/signin/reset")
@public()
def reset_form() -> ResponseReturnValue:
    return _reset_page("", None, {})


@bp.post("/signin/reset")
@public(reads_forms=True)
@limiter.limit(setting("limit_reset_per_ip"))
@per_destination_limit("identifier")
def reset_send() -> ResponseReturnValue:
    identifier = submitted_form().get("identifier", "").strip()
    # The same answer whether or not an account has this address (as the API).
    outcome = attempt(lambda: services().account.start_reset(identifier, request_context()))
    if isinstance(outcome, ServiceError):
        return _reset_page(identifier, None, {"identifier": _message(outcome)}, 400)
    return _reset_page(identifier, outcome, {})


@bp.post("/signin/reset/confirm")
@public(reads_forms=True)
@limiter.limit(setting("limit_login_per_ip"))
def reset_confirm() -> ResponseReturnValue:
    form = submitted_form()
    identifier, flow, code = (form.get(k, "").strip() for k in ("identifier", "flow", "code"))
    new_password = form.get("new_password", "")
    outcome = attempt(
        lambda: services().account.finish_reset(
            identifier, flow, code, new_password, request_context()
        )
    )
    if isinstance(outcome, ServiceError):
        refused = next((e for e in outcome.errors if e.pointer == "#/new_password"), None)
        errors = (
            {"new_password": password_message(refused.reason, outcome)}
            if refused is not None
            else {"code": _message(outcome)}
        )
        return _reset_page(identifier, flow, errors, 400)
    # Every session ended, this browser's too: its cookie goes, and the sign-in
    # page is loaded afresh (its form then carries a pre-session token).
    response = redirect(f"{url_for('signin.signin_form')}?reset=done", code=303)
    clear_session_cookie(response)
    return response


# -- second factor ---------------------------------------------------------------


def _ticket_form() -> tuple[str, list[str], str]:
    form = submitted_form()
    methods = [m for m in form.get("methods", "").split(",") if m in SECOND_FACTOR_METHODS]
    return form.get("ticket", ""), methods, _next_from(form)


@bp.get("/signin/second-factor")
@public()
def second_factor_form() -> ResponseReturnValue:
    # The ticket only ever arrives by POST from a first step; nothing to show here.
    return redirect(f"/signin?{urlencode({'next': _next_from()})}", code=303)


@bp.post("/signin/second-factor")
@public(reads_forms=True)
@limiter.limit(setting("limit_login_per_ip"))
def second_factor() -> ResponseReturnValue:
    ticket, methods, next_path = _ticket_form()
    form = submitted_form()
    field = form.get("method", "")
    code = form.get(field, "").strip() if field in SECOND_FACTOR_METHODS else ""
    codes = {
        "totp_code": code if field == "totp" else None,
        "recovery_code": code if field == "recovery_code" else None,
        "email_code": code if field == "email_code" else None,
        "sms_code": code if field == "sms_code" else None,
    }
    outcome = attempt(
        lambda: services().login.with_second_factor(
            ticket, **codes, context=sign_in_context(Transport.COOKIE)
        )
    )
    if isinstance(outcome, ServiceError):
        errors = {field or "form": _message(outcome)}
        if outcome.slug == "mfa-ticket-invalid":
            errors = {"form": _message(outcome)}
        code_sent = field in ("email_code", "sms_code")
        return _second_factor_page(ticket, methods, next_path, errors, code_sent, 400)
    return finish_sign_in(outcome, next_path)


@bp.post("/signin/second-factor/email")
@public(reads_forms=True)
@limiter.limit(setting("limit_code_send_per_ip"))
def second_factor_email() -> ResponseReturnValue:
    return _send_device_code("email_code")


@bp.post("/signin/second-factor/sms")
@public(reads_forms=True)
@limiter.limit(setting("limit_code_send_per_ip"))
def second_factor_sms() -> ResponseReturnValue:
    return _send_device_code("sms_code")


def _send_device_code(method: str) -> ResponseReturnValue:
    ticket, methods, next_path = _ticket_form()
    outcome = attempt(lambda: services().login.send_device_code(ticket, method))
    if isinstance(outcome, ServiceError):
        errors = {"form": _message(outcome)}
        return _second_factor_page(ticket, methods, next_path, errors, status=400)
    return _second_factor_page(ticket, methods, next_path, code_sent=True)


# -- step-up ---------------------------------------------------------------------


def _step_up_page(errors: dict[str, str] | None = None, status: int = 200) -> ResponseReturnValue:
    caller = current_caller()
    values = request.form if request.method == "POST" else request.args
    acr = values.get("acr", "")
    svc = services()
    page = render_template(
        "signin/step_up.html",
        next=_next_from(values),
        acr=acr,
        # Only a passkey with user verification reaches phishing-resistant.
        password_allowed=acr != Acr.PHISHING_RESISTANT.value
        and caller.user.password_hash is not None,
        # Signing in again (WeChat) gives a fresh sign-in, never a phishing-resistant one.
        federated_allowed=acr != Acr.PHISHING_RESISTANT.value,
        account_id=caller.user.id,
        totp_enabled=svc.totp.is_enabled(caller.user.id),
        has_passkeys=bool(svc.webauthn.credentials_of(caller.user.id)),
        errors=errors or {},
    )
    return page, status


@bp.get("/step-up")
@signed_in(consent_step=True)
def step_up_form() -> ResponseReturnValue:
    return _step_up_page()


@bp.post("/step-up")
@signed_in(consent_step=True)
@limiter.limit(setting("limit_login_per_ip"))
def step_up() -> ResponseReturnValue:
    caller = current_caller()
    form = submitted_form()
    totp_code = form.get("totp_code", "").strip() or None
    outcome = attempt(
        lambda: services().step_up.with_password(
            caller.session, caller.user, form.get("password", ""), totp_code
        )
    )
    if isinstance(outcome, ServiceError):
        fields = {
            "current_password": ("password", PASSWORD_WRONG),
            "totp_code": ("totp_code", TOTP_MISSING),
        }
        errors = _field_errors(outcome, fields)
        if outcome.slug == "invalid-code":
            errors = {"totp_code": _message(outcome)}
        return _step_up_page(errors, 400)
    response = redirect(_next_from(form), code=303)
    attach_session_cookie(response, outcome)
    return response


# -- sign-out --------------------------------------------------------------------


@bp.post("/signout")
@signed_in(consent_step=True)
def signout() -> Response:
    services().sessions.sign_out(current_caller().session, request_context().ip_prefix)
    response = redirect("/signin", code=303)
    clear_session_cookie(response)
    return response
