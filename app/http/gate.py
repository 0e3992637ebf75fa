"""The access gate: the one place that admits a request to a view.

It reads the view's ``Access`` (app/http/access.py) before the view runs and
checks, in this order: the caller's session (cookie, bearer or DPoP-bound
token, with its proof), CSRF for browser requests that change state, the
consent step, the operator role, and the step-up level and age. Every surface
(JSON API, pages, OAuth) registers its views behind it; their error handlers
render what it raises in their own form."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.datastructures import MultiDict

from app.access_log import record_route
from app.errors import ServiceError, authentication_required
from app.http.access import Access, Level, access_of, public
from app.http.cookies import set_browser_cookie
from app.http.scope import check_dpop, dpop_header, runtime, services
from app.models import Role, Session, User, UserDataKey
from app.security.dpop import DpopProof
from app.security.tokens import derive_key
from app.services.dpop import DPOP_CHALLENGE, invalid_dpop_proof
from app.services.safeguards import require_authentication
from app.services.sessions import Acr, Transport

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
# Before sign-in, a browser's forms are bound to this random cookie instead of
# a session (a signed double-submit token: a cross-site page can neither read
# the cookie nor forge the token for it).
PRE_SESSION_COOKIE = "__Host-privid_pre"
PRE_SESSION_MAX_AGE = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Form bodies, which a cross-site page can post without a preflight.
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


@dataclass(frozen=True)
class Caller:
    session: Session
    user: User
    # The verified DPoP proof of this request, for a key-bound session.
    dpop: DpopProof | None = None
    # Read with the session when the gate resolved it (None: not known): has a
    # material policy version taken effect since the session began?
    policy_changed: bool | None = None
    # The user's data key row read with the session, held for the request so
    # the vault finds it without another query.
    data_key: UserDataKey | None = None


def install_gate(app: Flask) -> None:
    """Check the gate before every view; refuse to start with an undeclared view."""
    app.url_value_preprocessor(_name_the_route)
    app.before_request(_admit)
    app.after_request(_set_pre_session_cookie)


def declare_static_routes(app: Flask) -> None:
    """Static files are public: wrap Flask's own static views in a declaration."""
    for endpoint, view in list(app.view_functions.items()):
        if endpoint == "static" or endpoint.endswith(".static"):
            app.view_functions[endpoint] = public()(_static_view(view))


def _static_view(view: Callable[..., Any]) -> Callable[..., Any]:
    def static_file(**kwargs: Any) -> Any:
        return view(**kwargs)

    return static_file


def undeclared_endpoints(app: Flask) -> list[str]:
    return sorted(
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if access_of(app.view_functions.get(rule.endpoint)) is None
    )


def require_declarations(app: Flask) -> None:
    missing = undeclared_endpoints(app)
    if missing:
        raise RuntimeError(f"endpoints without an access declaration: {', '.join(missing)}")


def _name_the_route(_endpoint: str | None, _values: dict[str, Any] | None) -> None:
    # Before any before_request hook (the limiter's too): a refused request's
    # log line names its route as well.
    record_route(request.environ, request.url_rule.rule if request.url_rule else None)


def _admit() -> None:
    if request.routing_exception is not None or request.endpoint is None:
        return  # 404/405: nothing to admit
    automatic = getattr(request.url_rule, "provide_automatic_options", False)
    if request.method == "OPTIONS" and automatic:
        return  # Flask answers with Allow itself; no view runs
    rule = access_of(current_app.view_functions.get(request.endpoint))
    if rule is None:
        raise RuntimeError(f"{request.endpoint} has no access declaration")
    g.privid_access = rule
    if not rule.signed_in:
        if rule.csrf and rule.reads_forms and request.method not in SAFE_METHODS:
            _check_csrf(_browser_session())
        return
    admitted = authenticated_caller()
    cookie_session = admitted.session.transport == Transport.COOKIE
    if rule.csrf and request.method not in SAFE_METHODS and cookie_session:
        _check_csrf(admitted.session)
    _check_consent_step(admitted, rule)
    if rule.operator and admitted.user.role != Role.OPERATOR:
        raise ServiceError(
            "operator-only", 403, "Operators only", "This endpoint is for operators."
        )
    if rule.step_up is not None:
        level = _required_level(admitted, rule.step_up.level)
        max_age = rule.step_up.freshness.seconds(runtime().settings)
        require_authentication(admitted.session, level, max_age, runtime().clock.now())
    g.privid_caller = admitted


def current_caller() -> Caller:
    """The caller the gate admitted to this signed-in view."""
    admitted: Caller | None = g.get("privid_caller")
    if admitted is None:
        raise RuntimeError("current_caller() in a view the gate did not admit as signed in")
    return admitted


def submitted_form() -> MultiDict[str, str]:
    """The posted form of a view the gate checked it for: a signed-in view
    (cookie sessions prove CSRF) or a public one declared ``reads_forms``."""
    rule: Access | None = g.get("privid_access")
    if rule is None or not (rule.signed_in or rule.reads_forms):
        raise RuntimeError(f"{request.endpoint} reads a form it did not declare")
    return request.form


def binding_proof_header() -> str | None:
    """The DPoP proof a sign-in view declared ``binds_dpop`` may bind its new
    session to, unchecked: the view checks it (``check_dpop``) after its rate
    limits and body, so a flood of made-up proofs is limited like any other
    sign-in and never verified past the limit."""
    rule: Access | None = g.get("privid_access")
    if rule is None or not rule.binds_dpop:
        raise RuntimeError(f"{request.endpoint} binds a DPoP key it did not declare")
    return dpop_header(required=False)


def optional_caller() -> Caller | None:
    """On a public view: the browser's signed-in caller, if any (for a page
    that shows something else when one is signed in). No consent-step or
    step-up checks: never use it to act on the account."""
    session = _browser_session()
    if session is None:
        return None
    user = services().db.get(User, session.user_id)
    return Caller(session, user) if user is not None else None


def authenticated_caller() -> Caller:
    """Who is asking, from the token or cookie; 401 when nobody (or an ended
    session). Cached for the request: rate-limit keys may ask before the gate."""
    known: Caller | None = g.get("privid_authenticated")
    if known is not None:
        return known
    authorization = request.headers.get("Authorization", "")
    svc = services()
    proof = None
    challenge = "Bearer"
    if authorization:
        scheme, _, token = authorization.partition(" ")
        scheme, token = scheme.lower(), token.strip()
        challenge = "DPoP" if scheme == "dpop" else "Bearer"
        if scheme not in {"bearer", "dpop"} or not token:
            raise _invalid_token(challenge)
        found = svc.sessions.resolve_live(token, Transport.BEARER)
        if found is not None:
            proof = _sender_proof(found.session, scheme, token)
    else:
        cookie = request.cookies.get(runtime().settings.session_cookie_name)
        if not cookie:
            raise authentication_required()
        found = svc.sessions.resolve_live(cookie, Transport.COOKIE)
    if found is None:
        raise _invalid_token(challenge)
    known = Caller(found.session, found.user, proof, found.policy_changed, found.data_key)
    g.privid_authenticated = known
    return known


def csrf_token() -> str:
    """The token this browser's forms and scripts send back: bound to its
    cookie session, or before sign-in to its pre-session cookie."""
    session = _browser_session()
    if session is not None:
        return session_csrf_token(session.id)
    return _keyed("pre", _pre_session_id())


def session_csrf_token(session_id: str) -> str:
    return _keyed("session", session_id)


def _keyed(kind: str, value: str) -> str:
    key = derive_key(runtime().settings.secret_key_bytes, "csrf")
    # Session tokens keep the form they had before pre-session tokens existed.
    message = value if kind == "session" else f"{kind}:{value}"
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def _pre_session_id() -> str:
    known: str | None = g.get("privid_pre_session")
    if known is None:
        cookie = request.cookies.get(PRE_SESSION_COOKIE, "")
        if 20 <= len(cookie) <= 64 and cookie.isascii():
            known = cookie
        else:
            known = secrets.token_urlsafe(24)
            g.privid_new_pre_session = known
        g.privid_pre_session = known
    return known


def _set_pre_session_cookie(response: Response) -> Response:
    fresh: str | None = g.get("privid_new_pre_session")
    if fresh is not None:
        set_browser_cookie(response, PRE_SESSION_COOKIE, fresh, PRE_SESSION_MAX_AGE)
    return response


def _browser_session() -> Session | None:
    """The cookie session this browser shows, if it is live."""
    if "privid_browser_session" not in g:
        cookie = request.cookies.get(runtime().settings.session_cookie_name)
        g.privid_browser_session = (
            services().sessions.resolve(cookie, Transport.COOKIE) if cookie else None
        )
    session: Session | None = g.privid_browser_session
    return session


def _sent_as_form() -> bool:
    return request.mimetype in FORM_TYPES


def _check_csrf(session: Session | None) -> None:
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent and _sent_as_form():
        sent = request.form.get(CSRF_FIELD, "")
    if session is not None:
        expected = session_csrf_token(session.id)
    elif PRE_SESSION_COOKIE in request.cookies:
        expected = _keyed("pre", _pre_session_id())
    else:
        expected = ""
    if not expected or not sent.isascii() or not hmac.compare_digest(sent, expected):
        raise ServiceError(
            "csrf-failed",
            403,
            "Cross-site request refused",
            f"Send the session's CSRF token in the {CSRF_HEADER} header "
            f"(or the {CSRF_FIELD} form field).",
        )


def owes_consent(session: Session, policy_changed: bool | None = None) -> bool:
    """Does this session still owe consent decisions (the consent step)?
    ``policy_changed``: whether a material policy version took effect since
    the session began, when the caller read it with the session."""
    svc = services()
    if policy_changed is None and not session.consent_pending:
        policy_changed = svc.policies.material_since(session.created_at)
    if not session.consent_pending and policy_changed:
        # A material change took effect during this session: ask now, not at
        # the next sign-in.
        session.consent_pending = bool(svc.consent.pending(session.user_id))
    return session.consent_pending


def _check_consent_step(admitted: Caller, rule: Access) -> None:
    if owes_consent(admitted.session, admitted.policy_changed) and not rule.consent_step:
        raise ServiceError(
            "consent-required",
            403,
            "Consent decisions are owed first",
            "Decide on the purposes listed at GET /api/v1/me/consent before using the service.",
        )


def _required_level(admitted: Caller, level: Level) -> Acr:
    if level == Level.ACCOUNT:
        return services().safeguards.account_level(admitted.user.id)
    return Acr(level.value)


def _invalid_token(scheme: str = "Bearer", detail: str | None = None) -> ServiceError:
    error = authentication_required()
    challenge = DPOP_CHALLENGE if scheme == "DPoP" else 'Bearer realm="privid"'
    error.headers["WWW-Authenticate"] = f'{challenge}, error="invalid_token"'
    error.detail = detail or "The session has ended or the token is not valid. Sign in again."
    return error


def _sender_proof(session: Session, scheme: str, token: str) -> DpopProof | None:
    """RFC 9449 section 7: a key-bound token comes with the DPoP scheme and a
    proof signed by its key, for this method and URL, carrying the token's hash."""
    if session.dpop_jkt is None:
        if scheme == "dpop":
            raise _invalid_token("DPoP", "This token is not bound to a key: use Bearer.")
        return None
    if scheme != "dpop":
        raise _invalid_token(
            "DPoP", "This token is bound to a key: send it with the DPoP scheme and a proof."
        )
    header = dpop_header(required=True, status=401)
    assert header is not None
    proof = check_dpop(header, access_token=token, status=401)
    if not hmac.compare_digest(proof.jkt, session.dpop_jkt):
        raise invalid_dpop_proof("it is signed by another key than the token's", status=401)
    return proof
