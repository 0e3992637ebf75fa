"""The provider's machine endpoints (OAuth surface): discovery, token,
UserInfo, introspection, revocation. Thin: authlib and the token store do the
work; these only hand over the request and keep the unit of work honest."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError
from flask import Blueprint, Response, g, jsonify, request
from flask.typing import ResponseReturnValue

from app.http.access import public
from app.http.scope import check_dpop, dpop_header, services
from app.http.unit_of_work import record_failure
from app.oidc.claims import claims_of_scopes, requested_claims, user_claims
from app.oidc.discovery import configuration
from app.oidc.grant_models import AuthorizationCode
from app.oidc.resource import Token, resource_protector
from app.oidc.server import authorization_server
from app.oidc.subjects import subject_for

bp = Blueprint("oidc", __name__)


def _settle(response: Response) -> Response:
    """authlib answers errors itself: roll back what a failed request did,
    except a revocation caused by a reused code or refresh token."""
    if response.status_code >= 400:
        record_failure(keep_changes=bool(g.get("oidc_keep_changes")))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/.well-known/openid-configuration")
@public()
def discovery() -> ResponseReturnValue:
    response = jsonify(configuration(services()))
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _ambiguous() -> Response | None:
    """Requests authlib would read one way among several, refused instead:
    a parameter sent twice (RFC 6749 section 3.2; authlib reads the first),
    more than one client authentication (section 2.3), or a client_id that
    names another client than the Basic credentials do."""
    problem = None
    for name, values in request.form.lists():
        if len(values) > 1:
            problem = f"The parameter {name} is sent more than once."
    basic = request.authorization
    basic_id = unquote(basic.username or "") if basic and basic.type == "basic" else None
    methods = [basic_id is not None, "client_secret" in request.form]
    methods.append("client_assertion" in request.form)
    if sum(methods) > 1:
        problem = "Authenticate the client one way only."
    named = request.form.get("client_id")
    if basic_id is not None and named is not None and named != basic_id:
        problem = "client_id names another client than the credentials."
    if problem is None:
        return None
    refused = InvalidRequestError(problem)
    return _settle(authorization_server().handle_error_response(None, refused))


@bp.post("/oauth/token")
@public(csrf=False)
def token() -> ResponseReturnValue:
    if (refused := _ambiguous()) is not None:
        return refused
    header = dpop_header(required=False)
    if header is not None:
        # RFC 9449 section 5: the tokens this answer carries are bound to the key.
        g.oidc_dpop_jkt = check_dpop(header).jkt
    return _settle(authorization_server().create_token_response())


@bp.post("/oauth/introspect")
@public(csrf=False)
def introspect() -> ResponseReturnValue:
    if (refused := _ambiguous()) is not None:
        return refused
    return _settle(authorization_server().create_endpoint_response("introspection"))


@bp.post("/oauth/revoke")
@public(csrf=False)
def revoke() -> ResponseReturnValue:
    if (refused := _ambiguous()) is not None:
        return refused
    return _settle(authorization_server().create_endpoint_response("revocation"))


class _Presented:
    """What authlib's resource protector reads: the Authorization header,
    or the RFC 6750 section 2.2 form parameter turned into one."""

    def __init__(self, authorization: str) -> None:
        self.headers = {"Authorization": authorization}


def _presented() -> _Presented:
    header = request.headers.get("Authorization", "")
    in_body = (
        request.form.get("access_token")
        if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded"
        else None
    )
    if header and in_body:
        raise InvalidRequestError("Send the access token once: in the header or in the body.")
    return _Presented(header or (f"Bearer {in_body}" if in_body else ""))


@bp.route("/oauth/userinfo", methods=["GET", "POST"])
@public(csrf=False)
def userinfo() -> ResponseReturnValue:
    try:
        found: Token = resource_protector().validate_request(["openid"], _presented())
    except OAuth2Error as error:
        return _settle(authorization_server().handle_error_response(None, error))
    svc = services()
    live = found.live
    if live.user is None:  # a client's own token has no user to describe
        refused = InvalidRequestError("This token was issued to a client, not for a user.")
        return _settle(authorization_server().handle_error_response(None, refused))
    wanted = claims_of_scopes(live.token.scopes) | set(_claims_request(live.grant.id))
    body: dict[str, Any] = {"sub": subject_for(svc, live.client, live.user.id)}
    body.update(user_claims(svc, live.user, wanted, live.client.client_id))
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def _claims_request(grant_id: str) -> dict[str, Any]:
    code = services().db.query(AuthorizationCode).filter_by(grant_id=grant_id).first()
    return requested_claims(code.claims if code else None, "userinfo")
