"""The authorisation endpoint (OIDC Core 3.1.2) and the partner's approval
page, on the pages surface. The person signs in, steps up and passes the
consent step through the pages; this view decides which of those the request
still needs (app/oidc/interaction.py) and otherwise lets authlib issue the
code. Errors the client can be told about go to its redirect URI; an unknown
client or redirect URI gets an error page, never a redirect."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidRequestError, scope_to_list
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    InteractionRequiredError,
    LoginRequiredError,
    RequestNotSupportedError,
    RequestURINotSupportedError,
)
from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from app.http.access import public, signed_in
from app.http.gate import Caller, current_caller, optional_caller, owes_consent
from app.http.scope import request_context, runtime, services
from app.http.unit_of_work import record_failure
from app.oidc import interaction
from app.oidc.claims import claims_of_scopes, claims_within, scopes_of_claims
from app.oidc.client_models import ClientRecord
from app.oidc.interaction import LOGIN_AFTER, SILENT_ERRORS, Need
from app.oidc.keys import SigningKeys
from app.oidc.partners import PARTNER_PURPOSE, SILENT_SCOPES, PartnerAuthorizations
from app.oidc.server import AuthorizationContext, authorization_server
from app.oidc.signed_tokens import issuer
from app.oidc.subjects import subject_for
from app.pages.i18n import html_lang
from app.pages.surface import allow_form_target
from app.security.signing import SignatureInvalid
from app.security.tokens import derive_key
from app.services.sessions import Acr

bp = Blueprint("oidc_pages", __name__, template_folder="templates")

SILENT = {
    "login_required": LoginRequiredError,
    "consent_required": ConsentRequiredError,
    "interaction_required": InteractionRequiredError,
}
# Form fields of the approval page that are not part of the client's request.
OWN_FIELDS = frozenset({"csrf_token", "decision", LOGIN_AFTER})


@bp.route("/oauth/authorize", methods=["GET", "POST"])
@public(csrf=False)
def authorize() -> ResponseReturnValue:
    """Clients send people here (GET, or a form POST from their own page)."""
    caller = optional_caller()
    return _authorize(caller, decision=None)


@bp.route("/oauth/authorize/decision", methods=["GET", "POST"])
@signed_in()
def decide() -> ResponseReturnValue:
    """The approval page's answer (POST): the request's parameters come back
    in the form's address, so authlib validates them again from this request.
    A GET is a person back from the sign-in the answer needed (their session
    had ended on the page): the same request again, asked afresh."""
    if request.method == "GET":
        query = request.query_string.decode("ascii", "replace")
        return redirect(f"{url_for('oidc_pages.authorize')}?{query}", code=303)
    return _authorize(current_caller(), decision=request.form.get("decision", ""))


def _authorize(caller: Caller | None, decision: str | None) -> ResponseReturnValue:
    server = authorization_server()
    user = caller.user if caller else None
    try:
        grant = server.get_consent_grant(end_user=user)
    except OAuth2Error as error:
        return _refuse(error)
    except ValueError:
        # authlib refuses to build an error whose description would quote a
        # character RFC 6749 forbids there (a quote, a backslash, non-ASCII)
        # from the request: a bad request all the same, never a 500.
        return _refuse(InvalidRequestError("The request holds characters it may not."))
    params = _client_params()
    state = params.get("state")
    redirect_uri: str = grant.redirect_uri
    client: ClientRecord = grant.request.client.row

    def to_client(error: OAuth2Error, *, keep_changes: bool = False) -> Response:
        error.redirect_uri, error.state = redirect_uri, state
        return _refuse(error, keep_changes=keep_changes)

    if "request" in params:
        return to_client(RequestNotSupportedError())
    if "request_uri" in params:
        return to_client(RequestURINotSupportedError())
    key = derive_key(runtime().settings.secret_key_bytes, "oidc-login-after")
    login_after = interaction.read_login_after(
        key, client.client_id, params, request.values.get(LOGIN_AFTER), runtime().clock.now()
    )
    if login_after is not None:
        # Carried through the step-up, consent step and approval page, so the
        # sign-in it vouches for is not asked for again.
        params[LOGIN_AFTER] = request.values[LOGIN_AFTER]
    try:
        asked = interaction.parse(params, login_after)
    except interaction.BadRequest as error:
        return to_client(InvalidRequestError(str(error)))
    svc = services()
    claims = claims_within(asked.claims, client.scopes)
    # What the person approves: the scopes asked for, and those whose claims
    # the claims parameter asks for one by one.
    scopes = sorted(set(scope_to_list(grant.request.scope or "") or []) | scopes_of_claims(claims))
    partners = PartnerAuthorizations.of(svc)
    if caller is not None and decision == "deny":
        if not client.first_party:
            partners.refuse(caller.user.id, client, request_context())
        # The refusal is the person's decision: the ledger keeps it.
        return to_client(AccessDeniedError("The person did not allow this."), keep_changes=True)
    if caller is not None and decision == "approve" and not client.first_party:
        partners.approve(caller.user.id, client, scopes, request_context())
    session = caller.session if caller else None
    approved_now = caller is not None and decision == "approve"
    verdict = interaction.decide(
        asked,
        session,
        runtime().clock.now(),
        consent_owed=session is not None and owes_consent(session),
        partner_approved=approved_now
        or (caller is not None and partners.covers(caller.user.id, client, scopes)),
        approved_now=approved_now,
        someone_else_hinted=_hint_names_someone_else(params.get("id_token_hint"), client, caller),
        reachable_acr=(lambda: _reachable_acr(caller)) if caller is not None else None,
    )
    if verdict.need == Need.UNREACHABLE_ACR:
        return to_client(AccessDeniedError("This account cannot sign in that strongly."))
    if verdict.need != Need.NOTHING:
        if "none" in asked.prompts:
            return to_client(SILENT[SILENT_ERRORS[verdict.need]]())
        return _interact(verdict, params, client, scopes, key)
    assert session is not None
    g.oidc_authorization = AuthorizationContext(session.id, claims)
    response = server.create_authorization_response(grant_user=user, grant=grant)
    return _with_issuer(response)


def _client_params() -> MultiDict[str, str]:
    pairs = [(k, v) for k, values in request.values.lists() if k not in OWN_FIELDS for v in values]
    return MultiDict(pairs)


def _hint_names_someone_else(hint: str | None, client: ClientRecord, caller: Caller | None) -> bool:
    """An ID token this provider issued to this client, for another subject
    than the signed-in person. Expired hints still name someone; a hint that
    is not ours names nobody and is ignored."""
    if not hint or caller is None or len(hint) > 8192:
        return False
    svc = services()
    try:
        claims = SigningKeys.of(svc).verify(hint)
    except SignatureInvalid:
        return False
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("iss") != issuer(svc) or client.client_id not in audiences:
        return False
    return bool(claims.get("sub") != subject_for(svc, client, caller.user.id))


def _reachable_acr(caller: Caller) -> Acr:
    svc = services()
    if svc.webauthn.credentials_of(caller.user.id):
        return Acr.PHISHING_RESISTANT
    return svc.safeguards.account_level(caller.user.id)


def _back_here(params: MultiDict[str, str], extra: dict[str, str] | None = None) -> str:
    query = [(k, v) for k, v in params.items(multi=True)] + list((extra or {}).items())
    return "/oauth/authorize?" + urlencode(query)


def _interact(
    verdict: interaction.Verdict,
    params: MultiDict[str, str],
    client: ClientRecord,
    scopes: list[str],
    key: bytes,
) -> ResponseReturnValue:
    if verdict.need == Need.SIGN_IN:
        request_params = params.copy()
        request_params.pop(LOGIN_AFTER, None)
        note = interaction.login_after_note(
            key, client.client_id, request_params, runtime().clock.now()
        )
        query = {"next": _back_here(request_params, {LOGIN_AFTER: note})}
        if params.get("login_hint"):
            query["login_hint"] = params["login_hint"]
        return redirect("/signin?" + urlencode(query), code=303)
    if verdict.need == Need.STEP_UP:
        assert verdict.acr is not None
        return redirect(
            "/step-up?" + urlencode({"next": _back_here(params), "acr": verdict.acr.value}), 303
        )
    if verdict.need == Need.CONSENT_STEP:
        return redirect("/consent?" + urlencode({"next": _back_here(params)}), code=303)
    return _approval_page(params, client, scopes)


def _approval_page(
    params: MultiDict[str, str],
    client: ClientRecord,
    scopes: list[str],
) -> ResponseReturnValue:
    purpose = runtime().catalogue.get(PARTNER_PURPOSE)
    released = sorted(claims_of_scopes(scopes))
    shown_scopes = [s for s in scopes if s not in SILENT_SCOPES]
    chinese = html_lang() == "zh-CN"
    assert purpose is not None
    # The answer goes to the client by redirect (authlib checked the URI).
    allow_form_target(params["redirect_uri"])
    return render_template(
        "oidc/approve.html",
        purpose_title=purpose.title.zh_cn if chinese else purpose.title.en,
        purpose_description=purpose.description.zh_cn if chinese else purpose.description.en,
        client=client,
        scopes=shown_scopes,
        claims=released,
        # In the address, not hidden fields: a sign-in the answer may need
        # (the session ended on this page) then returns to the same request.
        action=url_for("oidc_pages.decide") + "?" + urlencode(list(params.items(multi=True))),
        host=urlsplit(params.get("redirect_uri", "")).hostname or "",
    )


def _refuse(error: OAuth2Error, *, keep_changes: bool = False) -> Response:
    """To the client when its redirect URI is known and registered; else a page."""
    record_failure(keep_changes=keep_changes)
    if error.redirect_uri:
        response = authorization_server().handle_error_response(None, error)
        return _with_issuer(response)
    page = render_template(
        "oidc/error.html", error=error.error, description=error.get_error_description()
    )
    return Response(page, status=400, mimetype="text/html")


def _with_issuer(response: Response) -> Response:
    """RFC 9207: every answer to the redirect URI names the issuer, so a
    client talking to several providers cannot be mixed up."""
    location = response.headers.get("Location")
    if response.status_code in (302, 303) and location:
        parts = urlsplit(location)
        query = [*parse_qsl(parts.query, keep_blank_values=True), ("iss", issuer(services()))]
        response.headers["Location"] = urlunsplit(parts._replace(query=urlencode(query)))
    return response
