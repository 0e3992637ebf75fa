"""WeChat sign-in in the browser: out to WeChat (QR code on a computer, the
official account's authorisation inside WeChat's browser), back to the
callback, and, for a WeChat account no privid account knows yet, the page
that links it to an account or creates one. Also the account page that
shows and unlinks WeChat."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext

from app.errors import ServiceError
from app.extensions import limiter
from app.http.access import CREDENTIAL_CHANGE, public, signed_in
from app.http.cookies import set_browser_cookie
from app.http.gate import current_caller, submitted_form
from app.http.limits import identifier_source_key, per_destination_limit, setting
from app.http.scope import request_context, runtime, services, sign_in_context
from app.http.unit_of_work import attempt
from app.pages.messages import message_for
from app.pages.returns import allowed_return_path
from app.pages.signin.views import finish_sign_in
from app.services.sessions import Transport
from app.wechat.binding import COOKIE, binding
from app.wechat.signin import MP, PENDING_SECONDS, WEB, Outcome, PendingLink, WeChatSignIn

bp = Blueprint(
    "wechat",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets/wechat",
)

IN_WECHAT = "MicroMessenger"  # WeChat's browser says so in its User-Agent

MESSAGES = {
    "wechat-state-invalid": lazy_gettext(
        "This WeChat sign-in did not start in this browser, has expired or was already "
        "finished. Start again."
    ),
    "wechat-link-invalid": lazy_gettext(
        "This step has expired or was already finished. Sign in with WeChat again."
    ),
    "wechat-code-invalid": lazy_gettext(
        "WeChat did not accept this sign-in (it may have been used already). Start again."
    ),
    "wechat-declined": lazy_gettext("WeChat sign-in was not approved."),
    "wechat-busy": lazy_gettext("WeChat is busy right now. Try again in a moment."),
    "wechat-unavailable": lazy_gettext(
        "WeChat did not answer in time. Try again in a moment, or sign in another way."
    ),
    "wechat-misconfigured": lazy_gettext(
        "WeChat sign-in is not available right now. Sign in another way."
    ),
    "wechat-failed": lazy_gettext("WeChat sign-in failed. Start again, or sign in another way."),
    "wechat-authorisation-expired": lazy_gettext(
        "WeChat's authorisation has expired. Sign in with WeChat again."
    ),
    "wechat-disabled": lazy_gettext("This service does not offer WeChat sign-in."),
    "wechat-linked-elsewhere": lazy_gettext(
        "This WeChat account already signs in to another account. Unlink it there first."
    ),
    "account-exists": lazy_gettext("An account with this phone number was created meanwhile."),
}
NAME_MISSING = lazy_gettext("Enter your full name to create an account.")
PHONE_INVALID = lazy_gettext("Enter a mobile phone number, for example 139 0000 0000.")


def _message(error: ServiceError) -> str:
    known = MESSAGES.get(error.slug)
    return str(known) if known is not None else message_for(error)


def _wechat() -> WeChatSignIn:
    return WeChatSignIn(services())


def _error_page(error: ServiceError) -> ResponseReturnValue:
    return render_template("wechat/error.html", message=_message(error)), error.status


def _after_wechat(outcome: Outcome, next_path: str) -> ResponseReturnValue:
    if isinstance(outcome, PendingLink):
        return _link_page(outcome.ticket, next_path)
    return finish_sign_in(outcome, next_path)


def _link_page(
    ticket: str,
    next_path: str,
    errors: dict[str, str] | None = None,
    *,
    phone: str = "",
    flow: str | None = None,
    full_name: str = "",
    status: int = 200,
) -> ResponseReturnValue:
    page = render_template(
        "wechat/link.html",
        ticket=ticket,
        next=next_path,
        errors=errors or {},
        phone=phone,
        flow=flow,
        full_name=full_name,
    )
    return page, status


@bp.get("/signin/wechat")
@public()
def start() -> ResponseReturnValue:
    """To WeChat: its QR code page, or inside WeChat its authorisation page."""
    wechat = _wechat()
    in_wechat = IN_WECHAT in request.headers.get("User-Agent", "")
    flow = MP if in_wechat and wechat.enabled(MP) else WEB
    next_path = allowed_return_path(request.args.get("next"))
    callback = runtime().settings.public_url.rstrip("/") + url_for("wechat.callback")
    outcome = attempt(lambda: wechat.start(flow, callback, next_path))
    if isinstance(outcome, ServiceError):
        return _error_page(outcome)
    response = redirect(outcome.authorize_url, code=303)
    set_browser_cookie(response, COOKIE, outcome.cookie, outcome.max_age + PENDING_SECONDS)
    return response


@bp.get("/signin/wechat/callback")
@public()
@limiter.limit(setting("limit_login_per_ip"))
def callback() -> ResponseReturnValue:
    wechat = _wechat()
    state, code = request.args.get("state", ""), request.args.get("code", "")
    returned = attempt(lambda: wechat.returned(request.cookies.get(COOKIE), state, code))
    if isinstance(returned, ServiceError):
        return _error_page(returned)
    outcome = attempt(
        lambda: wechat.sign_in(
            returned.identity,
            transport=Transport.COOKIE,
            context=sign_in_context(Transport.COOKIE),
            binding=binding(),
        )
    )
    if isinstance(outcome, ServiceError):
        return _error_page(outcome)
    return _after_wechat(outcome, allowed_return_path(returned.next_path))


@bp.post("/signin/wechat/link/password")
@public(reads_forms=True)
@limiter.limit(setting("limit_login_per_ip"))
@limiter.limit(setting("limit_login_per_account"), key_func=identifier_source_key("identifier"))
def link_password() -> ResponseReturnValue:
    form = submitted_form()
    ticket, next_path = form.get("ticket", ""), allowed_return_path(form.get("next"))
    identifier, password = form.get("identifier", "").strip(), form.get("password", "")
    outcome = attempt(
        lambda: _wechat().link_with_password(
            ticket, binding(), identifier, password, sign_in_context(Transport.COOKIE)
        )
    )
    if isinstance(outcome, ServiceError):
        return _link_page(ticket, next_path, {"password_form": _message(outcome)}, status=400)
    return _after_wechat(outcome, next_path)


@bp.post("/signin/wechat/phone")
@public(reads_forms=True)
@limiter.limit(setting("limit_code_send_per_ip"))
@per_destination_limit("phone", "phone")
def phone_code() -> ResponseReturnValue:
    form = submitted_form()
    ticket, next_path = form.get("ticket", ""), allowed_return_path(form.get("next"))
    phone = form.get("phone", "").strip()
    outcome = attempt(
        lambda: _wechat().send_phone_code(ticket, binding(), phone, request_context())
    )
    if isinstance(outcome, ServiceError):
        message = PHONE_INVALID if outcome.errors else _message(outcome)
        return _link_page(ticket, next_path, {"phone": str(message)}, phone=phone, status=400)
    return _link_page(ticket, next_path, phone=phone, flow=outcome)


@bp.post("/signin/wechat/phone/code")
@public(reads_forms=True)
@limiter.limit(setting("limit_login_per_ip"))
def phone_finish() -> ResponseReturnValue:
    form = submitted_form()
    ticket, next_path = form.get("ticket", ""), allowed_return_path(form.get("next"))
    phone, flow, code = (form.get(k, "").strip() for k in ("phone", "flow", "code"))
    full_name = form.get("full_name", "").strip()
    outcome = attempt(
        lambda: _wechat().with_phone(
            ticket,
            binding(),
            phone=phone,
            flow=flow,
            code=code,
            full_name=full_name,
            context=sign_in_context(Transport.COOKIE),
        )
    )
    if isinstance(outcome, ServiceError):
        on_name = any(e.pointer == "#/full_name" for e in outcome.errors)
        errors = {"full_name": str(NAME_MISSING)} if on_name else {"code": _message(outcome)}
        page = _link_page(
            ticket, next_path, errors, phone=phone, flow=flow, full_name=full_name, status=400
        )
        return page
    return _after_wechat(outcome, next_path)


# -- the account page ---------------------------------------------------------------


def _account_page(error: str | None = None, status: int = 200) -> ResponseReturnValue:
    caller = current_caller()
    wechat = _wechat()
    linked = wechat.identities.of_user(caller.user.id)
    page = render_template(
        "wechat/account.html",
        linked=linked,
        offered=wechat.enabled(WEB) or wechat.enabled(MP),
        error=error,
    )
    return page, status


@bp.get("/account/wechat")
@signed_in()
def account() -> ResponseReturnValue:
    return _account_page()


@bp.post("/account/wechat/unlink")
@signed_in(step_up=CREDENTIAL_CHANGE)
def unlink() -> ResponseReturnValue:
    caller = current_caller()
    outcome = attempt(lambda: _wechat().identities.unlink(caller.user, request_context().ip_prefix))
    if isinstance(outcome, ServiceError):
        return _account_page(_message(outcome), outcome.status)
    return redirect(url_for("wechat.account"), code=303)
