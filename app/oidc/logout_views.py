"""RP-initiated logout (OIDC RP-Initiated Logout 1.0) on the pages surface.

``/oauth/logout`` never signs anyone out by itself: a GET (or a form POST
from the client's site) could come from any page, and a logout the person
did not ask for must not happen. When the request names this browser's
session (or names none while someone is signed in here), the person is asked;
their answer is a CSRF-checked POST to ``/oauth/logout/confirm``. A request
for some other session, or with nobody signed in, just goes back to the
client. A bad request gets an error page, never a redirect."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, redirect, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from app.http.access import public, signed_in
from app.http.cookies import clear_session_cookie
from app.http.gate import current_caller, optional_caller
from app.http.scope import request_context, services
from app.http.unit_of_work import record_failure
from app.oidc import end_session
from app.oidc.end_session import BadLogoutRequest, LogoutRequest
from app.pages.surface import allow_form_target

bp = Blueprint("oidc_logout", __name__, template_folder="templates")


@bp.route("/oauth/logout", methods=["GET", "POST"])
@public(csrf=False)
def logout() -> ResponseReturnValue:
    params = _params()
    svc = services()
    try:
        asked = end_session.read(svc, params)
    except BadLogoutRequest as error:
        return _refuse(error)
    caller = optional_caller()
    if caller is not None and (asked.hint is None or asked.names(svc, caller.session)):
        if asked.redirect_to is not None:
            # The answer goes on to the client's registered post-logout URI.
            allow_form_target(asked.redirect_to)
        return render_template(
            "oidc/logout_confirm.html",
            client=asked.client,
            fields=asked.form_fields(params),
            stay=asked.redirect_to or "/",
            # The answer's page speaks the language the client asked for too.
            ui_locales=params.get("ui_locales", ""),
        )
    return _leave(asked, signed_in_here=caller is not None)


@bp.post("/oauth/logout/confirm")
@signed_in(consent_step=True)
def confirm() -> ResponseReturnValue:
    """The confirmation page's answer; the client's parameters come back as
    hidden fields and are checked again."""
    svc = services()
    try:
        asked = end_session.read(svc, _params())
    except BadLogoutRequest as error:
        return _refuse(error)
    caller = current_caller()
    if asked.hint is not None and not asked.names(svc, caller.session):
        # Another session is signed in here now (the page was left open).
        return _leave(asked, signed_in_here=True)
    svc.sessions.sign_out(caller.session, request_context().ip_prefix)
    response = _leave(asked, signed_in_here=False)
    clear_session_cookie(response)
    return response


def _params() -> Mapping[str, str]:
    return {name: request.values.get(name, "") for name in end_session.PARAMETERS}


def _leave(asked: LogoutRequest, *, signed_in_here: bool) -> Response:
    if asked.redirect_to is not None:
        return redirect(asked.redirect_to, code=303)
    page = render_template("oidc/logged_out.html", client=asked.client, still=signed_in_here)
    return Response(page, mimetype="text/html")


def _refuse(error: BadLogoutRequest) -> Response:
    record_failure()
    page = render_template("oidc/logout_error.html", description=str(error))
    return Response(page, status=400, mimetype="text/html")
