"""The account pages: overview, profile (email, phone, name), security
(password, TOTP, recovery codes), passkeys, devices and sessions.

Each view calls the same service method, with the same access declaration,
as its JSON API twin (app/api/account.py, mfa.py, webauthn.py, devices.py,
rights.py). Actions a service may refuse for want of a recent sign-in have a
GET page of their own (a confirmation), so the step-up page can send the
person back to it."""

from __future__ import annotations

import base64
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import Blueprint, abort, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext
from pydantic import BaseModel, ValidationError

from app.api.schemas import (
    CodeConfirm,
    CredentialRename,
    DeviceRename,
    EmailChange,
    NameChange,
    PasswordChange,
    PhoneChange,
)
from app.errors import FieldError, ServiceError
from app.extensions import limiter
from app.http.access import CREDENTIAL_CHANGE, SECOND_FACTOR_ENROLMENT, signed_in
from app.http.cookies import clear_device_cookie
from app.http.gate import current_caller, submitted_form
from app.http.limits import per_destination_limit, setting
from app.http.scope import request_context, services
from app.http.unit_of_work import attempt, record_failure
from app.pages.messages import message_for
from app.services.directory import EMAIL, PHONE
from app.services.webauthn import credential_state, proves_device

bp = Blueprint("account_pages", __name__, template_folder="templates")
NO_EMAIL = lazy_gettext("None yet")
M = TypeVar("M", bound=BaseModel)

# What a field's error says on these forms (the services' own details are
# English API prose). Keyed by the field the error points at.
FIELD_MESSAGES = {
    "current_password": lazy_gettext("The current password is not correct."),
    "new_password": lazy_gettext(
        "Choose a longer, less common password that does not contain your name, "
        "email or phone number."
    ),
    "email": lazy_gettext("Enter a valid email address that is not already yours."),
    "phone": lazy_gettext("Enter a valid mobile number that is not already yours."),
    "full_name": lazy_gettext("Enter your full name (at most 400 characters)."),
    "code": lazy_gettext("Enter the 6-digit code."),
    "nickname": lazy_gettext("Enter a name of 1 to 64 characters."),
    "label": lazy_gettext("Enter a name of 1 to 64 characters."),
}
# Slugs only these pages meet.
PAGE_MESSAGES = {
    "totp-already-enabled": lazy_gettext("Two-step verification is already on."),
    "totp-enrolment-in-progress": lazy_gettext(
        "Set-up was started a moment ago. Wait a few seconds and start again."
    ),
    "totp-not-pending": lazy_gettext("Start setting up two-step verification first."),
    "purpose-not-granted": lazy_gettext(
        "Passkeys need your consent to device biometrics. Switch it on in the privacy centre."
    ),
    "security-not-granted": lazy_gettext(
        "Devices are recorded only with your consent to account security."
    ),
}
# Confirmations after a redirect (?done=...): fixed sentences, never echoed input.
DONE = {
    "email": lazy_gettext("Your email address has been changed."),
    "phone": lazy_gettext("Your mobile number has been changed."),
    "name": lazy_gettext("Your name has been changed."),
    "password": lazy_gettext("Your password has been changed."),
    "totp-off": lazy_gettext("Two-step verification is off."),
    "passkey-added": lazy_gettext("The passkey has been added."),
    "passkey-renamed": lazy_gettext("The passkey has been renamed."),
    "passkey-removed": lazy_gettext("The passkey has been removed."),
    "device-renamed": lazy_gettext("The device has been renamed."),
    "device-revoked": lazy_gettext("The device has been revoked."),
    "session-revoked": lazy_gettext("The session has been signed out."),
    "others-revoked": lazy_gettext("Every other session has been signed out."),
}
CONTACT_KINDS = (EMAIL, PHONE)


# -- helpers ------------------------------------------------------------------------


def _done() -> str | None:
    found = DONE.get(request.args.get("done", ""))
    return str(found) if found is not None else None


def _see(path: str, done: str | None = None, **extra: str) -> ResponseReturnValue:
    """Post-redirect-get, with a fixed confirmation to show."""
    query = urlencode({**({"done": done} if done else {}), **extra})
    return redirect(f"{path}?{query}" if query else path, code=303)


def _parsed(model: type[M], **fields: Any) -> M | ServiceError:
    """The API's own body model checks the form's fields (one set of bounds);
    a failure is a validation error pointing at the fields, as in the API."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        errors = [
            FieldError("#/" + "/".join(str(p) for p in err["loc"]), str(err["msg"]))
            for err in exc.errors(include_input=False, include_url=False)
        ]
        record_failure()
        return ServiceError(
            "validation-error", 422, "Your request has invalid fields", "", errors=errors
        )


def _problems(error: ServiceError) -> tuple[str, dict[str, str]]:
    """A form-level message and one message per field the error points at."""
    fields: dict[str, str] = {}
    for item in error.errors:
        name = item.pointer.removeprefix("#/").split("/")[0]
        fields[name] = str(FIELD_MESSAGES.get(name, message_for(error)))
    general = PAGE_MESSAGES.get(error.slug)
    return (str(general) if general is not None else message_for(error)), fields


def _text(name: str) -> str:
    return submitted_form().get(name, "")


def _step_up_or(error: ServiceError) -> ServiceError:
    """A refusal for want of a recent sign-in goes to the surface (which sends
    the person to step up and back to this page); other failures stay here."""
    if error.slug == "insufficient-user-authentication":
        raise error
    return error


def mask_email(email: str | None) -> str:
    if email is None:
        return str(NO_EMAIL)
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


def mask_phone(phone: str) -> str:
    return f"•••• {phone[-4:]}" if len(phone) > 4 else "••••"


# -- overview and profile -----------------------------------------------------------


@bp.get("/account")
@signed_in()
def overview() -> ResponseReturnValue:
    caller = current_caller()
    profile = services().account.profile(caller.user)
    return render_template(
        "account/overview.html",
        full_name=profile.full_name,
        email=mask_email(profile.email),
        phone=mask_phone(profile.phone),
    )


@bp.get("/account/profile")
@signed_in()
def profile() -> ResponseReturnValue:
    caller = current_caller()
    found = services().account.profile(caller.user)
    return render_template(
        "account/profile.html",
        full_name=found.full_name,
        email=mask_email(found.email),
        phone=mask_phone(found.phone),
        done=_done(),
    )


def _start_contact_change(kind: str) -> ResponseReturnValue:
    value, error = "", None
    fields: dict[str, str] = {}
    # An account without a password: the recent sign-in is the proof.
    has_password = current_caller().user.password_hash is not None
    if request.method == "POST":
        caller = current_caller()
        value = _text(kind).strip()
        password = _text("current_password") if has_password else None
        body = _parsed(
            EmailChange if kind == EMAIL else PhoneChange,
            **{kind: value, "current_password": password},
        )
        outcome: ServiceError | None = body if isinstance(body, ServiceError) else None
        if outcome is None:
            outcome = attempt(
                lambda: services().account.start_contact_change(caller.user, kind, value, password)
            )
        if outcome is None:
            return _see(f"/account/profile/{kind}/confirm")
        error, fields = _problems(outcome)
    return render_template(
        "account/contact.html",
        kind=kind,
        value=value,
        error=error,
        fields=fields,
        has_password=has_password,
    )


# The forms are shown by GET views; the posts carry the API's own rate limits
# (codes sent per network and per destination, code tries per network).
@bp.get("/account/profile/email")
@signed_in(step_up=CREDENTIAL_CHANGE)
def email_form() -> ResponseReturnValue:
    return _start_contact_change(EMAIL)


@bp.post("/account/profile/email")
@signed_in(step_up=CREDENTIAL_CHANGE)
@limiter.limit(setting("limit_code_send_per_ip"))
@per_destination_limit("email", "email")
def change_email() -> ResponseReturnValue:
    return _start_contact_change(EMAIL)


@bp.get("/account/profile/phone")
@signed_in(step_up=CREDENTIAL_CHANGE)
def phone_form() -> ResponseReturnValue:
    return _start_contact_change(PHONE)


@bp.post("/account/profile/phone")
@signed_in(step_up=CREDENTIAL_CHANGE)
@limiter.limit(setting("limit_code_send_per_ip"))
@per_destination_limit("phone", "phone")
def change_phone() -> ResponseReturnValue:
    return _start_contact_change(PHONE)


@bp.get("/account/profile/<any(email,phone):kind>/confirm")
@signed_in()
def confirm_contact_form(kind: str) -> ResponseReturnValue:
    return render_template("account/contact_confirm.html", kind=kind, error=None, fields={})


@bp.post("/account/profile/<any(email,phone):kind>/confirm")
@signed_in()
@limiter.limit(setting("limit_login_per_ip"))
def confirm_contact(kind: str) -> ResponseReturnValue:
    caller = current_caller()
    body = _parsed(CodeConfirm, code=_text("code").strip())
    if isinstance(body, ServiceError):
        outcome: ServiceError | None = body
    else:
        code = body.code

        def finish() -> None:
            services().account.finish_contact_change(caller.user, kind, code, request_context())

        outcome = attempt(finish)
    if outcome is None:
        return _see("/account/profile", done=kind)
    error, fields = _problems(outcome)
    return render_template("account/contact_confirm.html", kind=kind, error=error, fields=fields)


@bp.route("/account/profile/name", methods=["GET", "POST"])
@signed_in(step_up=CREDENTIAL_CHANGE)
def change_name() -> ResponseReturnValue:
    caller = current_caller()
    value, error = services().account.profile(caller.user).full_name, None
    fields: dict[str, str] = {}
    # An account without a password: the recent sign-in is the proof.
    has_password = caller.user.password_hash is not None
    if request.method == "POST":
        value = _text("full_name")
        password = _text("current_password") if has_password else None
        body = _parsed(NameChange, full_name=value, current_password=password)
        if isinstance(body, ServiceError):
            error, fields = _problems(body)
        else:

            def correct() -> None:
                services().account.change_full_name(caller.user, value, password)

            outcome = attempt(correct)
            if outcome is None:
                return _see("/account/profile", done="name")
            error, fields = _problems(outcome)
    return render_template(
        "account/name.html", value=value, error=error, fields=fields, has_password=has_password
    )


# -- security: password, TOTP, recovery codes ---------------------------------------


@bp.get("/account/security")
@signed_in()
def security() -> ResponseReturnValue:
    caller = current_caller()
    totp = services().totp
    ended = request.args.get("ended", "")
    return render_template(
        "account/security.html",
        totp_enabled=totp.is_enabled(caller.user.id),
        recovery_left=totp.remaining_recovery_codes(caller.user.id),
        done=_done(),
        ended=int(ended) if ended.isdigit() and len(ended) < 6 else None,
    )


@bp.route("/account/security/password", methods=["GET", "POST"])
@signed_in(step_up=CREDENTIAL_CHANGE)
def change_password() -> ResponseReturnValue:
    error: str | None = None
    fields: dict[str, str] = {}
    has_password = current_caller().user.password_hash is not None
    if request.method == "POST" and not has_password:
        # An account made through WeChat: its first password, no current one.
        caller = current_caller()
        added = attempt(
            lambda: services().account.add_password(
                caller.user, _text("new_password"), request_context()
            )
        )
        if not isinstance(added, ServiceError):
            return _see("/account/security", done="password")
        error, fields = _problems(added)
    elif request.method == "POST":
        caller = current_caller()
        body = _parsed(
            PasswordChange,
            current_password=_text("current_password"),
            new_password=_text("new_password"),
        )
        if isinstance(body, ServiceError):
            error, fields = _problems(body)
        else:
            outcome = attempt(
                lambda: services().account.change_password(
                    caller.user,
                    caller.session,
                    body.current_password,
                    body.new_password,
                    request_context(),
                )
            )
            if not isinstance(outcome, ServiceError):
                return _see("/account/security", done="password", ended=str(outcome))
            error, fields = _problems(outcome)
    return render_template(
        "account/password.html", error=error, fields=fields, has_password=has_password
    )


@bp.route("/account/security/totp", methods=["GET", "POST"])
@signed_in(step_up=SECOND_FACTOR_ENROLMENT)
def enrol_totp() -> ResponseReturnValue:
    caller = current_caller()
    if request.method == "GET":
        enabled = services().totp.is_enabled(caller.user.id)
        return render_template("account/totp_start.html", enabled=enabled, error=None)
    outcome = attempt(lambda: services().totp.enrol(caller.user))
    if isinstance(outcome, ServiceError):
        error, _ = _problems(outcome)
        return render_template(
            "account/totp_start.html", enabled=False, error=error
        ), outcome.status
    # The secret is shown once, in this response (never in a URL to redirect to).
    qr = base64.b64encode(outcome.qr_svg.encode()).decode()
    return render_template(
        "account/totp_scan.html", qr=qr, secret=outcome.secret, error=None, fields={}
    )


@bp.post("/account/security/totp/confirm")
@signed_in()
@limiter.limit(setting("limit_login_per_ip"))
def confirm_totp() -> ResponseReturnValue:
    caller = current_caller()
    body = _parsed(CodeConfirm, code=_text("code").strip())
    outcome = (
        body if isinstance(body, ServiceError)
        else attempt(lambda: services().totp.confirm(caller.user, body.code))
    )  # fmt: skip
    if isinstance(outcome, ServiceError):
        error, fields = _problems(outcome)
        # The secret is not shown again: the person already has it in their app.
        return render_template(
            "account/totp_scan.html", qr=None, secret=None, error=error, fields=fields
        ), 400
    return render_template("account/recovery_codes.html", codes=outcome, first=True)


@bp.route("/account/security/recovery-codes", methods=["GET", "POST"])
@signed_in()
def replace_recovery_codes() -> ResponseReturnValue:
    if request.method == "GET":
        return render_template("account/confirm_action.html", action="recovery-codes")
    caller = current_caller()
    outcome = attempt(
        lambda: services().second_factor.replace_recovery_codes(caller.session, caller.user)
    )
    if isinstance(outcome, ServiceError):
        return _failed_action("recovery-codes", _step_up_or(outcome))
    return render_template("account/recovery_codes.html", codes=outcome, first=False)


@bp.route("/account/security/totp/off", methods=["GET", "POST"])
@signed_in()
def turn_totp_off() -> ResponseReturnValue:
    if request.method == "GET":
        return render_template("account/confirm_action.html", action="totp-off")
    caller = current_caller()
    outcome = attempt(lambda: services().second_factor.turn_totp_off(caller.session, caller.user))
    if isinstance(outcome, ServiceError):
        return _failed_action("totp-off", _step_up_or(outcome))
    return _see("/account/security", done="totp-off")


def _failed_action(action: str, error: ServiceError, **extra: Any) -> ResponseReturnValue:
    message, _ = _problems(error)
    page = render_template("account/confirm_action.html", action=action, error=message, **extra)
    return page, error.status if 400 <= error.status < 500 else 400


# -- passkeys -----------------------------------------------------------------------


@bp.get("/account/passkeys")
@signed_in()
def passkeys() -> ResponseReturnValue:
    caller = current_caller()
    credentials = [
        c for c in services().webauthn.credentials_of(caller.user.id) if c.revoked_at is None
    ]
    return render_template(
        "account/passkeys.html",
        credentials=credentials,
        device_bound=proves_device,
        state_of=credential_state,
        done=_done(),
    )


@bp.post("/account/passkeys/<id:credential_id>/rename")
@signed_in()
def rename_passkey(credential_id: str) -> ResponseReturnValue:
    caller = current_caller()
    body = _parsed(CredentialRename, nickname=_text("nickname").strip())
    outcome = (
        body if isinstance(body, ServiceError)
        else attempt(lambda: services().webauthn.rename(caller.user.id, credential_id,
                                                        body.nickname))
    )  # fmt: skip
    if isinstance(outcome, ServiceError):
        return _list_error("account/passkeys", outcome)
    return _see("/account/passkeys", done="passkey-renamed")


@bp.route("/account/passkeys/<id:credential_id>/remove", methods=["GET", "POST"])
@signed_in()
def remove_passkey(credential_id: str) -> ResponseReturnValue:
    caller = current_caller()
    if request.method == "GET":
        _owned_or_404(
            credential_id,
            [c.id for c in services().webauthn.credentials_of(caller.user.id) if not c.revoked_at],
        )
        return render_template(
            "account/confirm_action.html", action="passkey-remove", target=credential_id
        )
    outcome = attempt(
        lambda: services().webauthn.revoke(
            caller.session, credential_id, request_context().ip_prefix
        )
    )
    if isinstance(outcome, ServiceError):
        return _failed_action("passkey-remove", _step_up_or(outcome), target=credential_id)
    return _see("/account/passkeys", done="passkey-removed")


def _owned_or_404(ref: str, refs: list[str]) -> None:
    if ref not in refs:
        abort(404)


def _list_error(template: str, error: ServiceError) -> ResponseReturnValue:
    if error.slug == "not-found":
        abort(404)
    message, _ = _problems(error)
    return _render_list(template, error=message), 400


def _render_list(template: str, **extra: Any) -> str:
    caller = current_caller()
    svc = services()
    if template == "account/passkeys":
        credentials = [c for c in svc.webauthn.credentials_of(caller.user.id) if not c.revoked_at]
        return render_template(
            "account/passkeys.html",
            credentials=credentials,
            device_bound=proves_device,
            state_of=credential_state,
            done=None,
            **extra,
        )
    return render_template(
        "account/devices.html",
        devices=svc.devices.devices_of(caller.user.id),
        current_device=caller.session.device_id,
        done=None,
        **extra,
    )


# -- devices ------------------------------------------------------------------------


@bp.get("/account/devices")
@signed_in()
def devices() -> ResponseReturnValue:
    caller = current_caller()
    return render_template(
        "account/devices.html",
        devices=services().devices.devices_of(caller.user.id),
        current_device=caller.session.device_id,
        done=_done(),
    )


@bp.post("/account/devices/<id:device_id>/rename")
@signed_in()
def rename_device(device_id: str) -> ResponseReturnValue:
    caller = current_caller()
    body = _parsed(DeviceRename, label=_text("label"))
    outcome = (
        body if isinstance(body, ServiceError)
        else attempt(lambda: services().devices.rename(caller.user.id, device_id,
                                                       body.label.strip()))
    )  # fmt: skip
    if isinstance(outcome, ServiceError):
        return _list_error("account/devices", outcome)
    return _see("/account/devices", done="device-renamed")


@bp.route("/account/devices/<id:device_id>/revoke", methods=["GET", "POST"])
@signed_in()
def revoke_device(device_id: str) -> ResponseReturnValue:
    caller = current_caller()
    if request.method == "GET":
        _owned_or_404(device_id, [d.id for d in services().devices.devices_of(caller.user.id)])
        return render_template(
            "account/confirm_action.html", action="device-revoke", target=device_id
        )
    outcome = attempt(
        lambda: services().devices.revoke(caller.session, device_id, request_context().ip_prefix)
    )
    if isinstance(outcome, ServiceError):
        return _failed_action("device-revoke", _step_up_or(outcome), target=device_id)
    if caller.session.device_id == device_id:
        # This browser's own device: its session ended with it, and its
        # device cookie goes as the API's revoke drops it.
        response = redirect("/signin", code=303)
        clear_device_cookie(response)
        return response
    return _see("/account/devices", done="device-revoked")


# -- sessions -----------------------------------------------------------------------


@bp.get("/account/sessions")
@signed_in()
def sessions() -> ResponseReturnValue:
    caller = current_caller()
    return render_template(
        "account/sessions.html",
        sessions=services().sessions.active_for(caller.user.id),
        current=caller.session.id,
        done=_done(),
    )


@bp.post("/account/sessions/<id:session_id>/revoke")
@signed_in()
def revoke_session(session_id: str) -> ResponseReturnValue:
    caller = current_caller()
    services().sessions.revoke(
        caller.user.id, session_id, "revoked_by_user", request_context().ip_prefix
    )
    if session_id == caller.session.id:
        return redirect("/signin", code=303)
    return _see("/account/sessions", done="session-revoked")


@bp.post("/account/sessions/revoke-others")
@signed_in()
def revoke_other_sessions() -> ResponseReturnValue:
    caller = current_caller()
    svc = services()
    svc.sessions.sign_out_elsewhere(caller.session, request_context().ip_prefix)
    return _see("/account/sessions", done="others-revoked")
