"""Per-request plumbing: the unit of work, the caller's session, CSRF, cookies."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, request

from app.errors import ServiceError, authentication_required
from app.models import Role, Session, User
from app.security.dpop import DpopProof
from app.security.tokens import derive_key, hash_token
from app.services.container import Runtime, Services
from app.services.context import DeviceHints, RequestContext
from app.services.dpop import DPOP_CHALLENGE, invalid_dpop_proof
from app.services.safeguards import DEVICE_BINDINGS, require_authentication
from app.services.sessions import Acr, IssuedSession, Transport

CSRF_HEADER = "X-CSRF-Token"
# Adding a passkey or binding a device: as fresh a proof as removing a binding.
MANAGE_DEVICES_MAX_AGE = DEVICE_BINDINGS.max_age_seconds
DPOP_HEADER = "DPoP"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["privid.runtime"]
    return rt


def services() -> Services:
    if "privid_services" not in g:
        factory = current_app.extensions["privid.session_factory"]
        g.privid_services = Services(factory(), runtime())
    svc: Services = g.privid_services
    return svc


def request_context() -> RequestContext:
    settings = runtime().settings
    key = derive_key(settings.secret_key_bytes, "user-agent")
    device_cookie = request.cookies.get(settings.device_cookie_name)
    hints = DeviceHints(cookie_hash=hash_token(device_cookie) if device_cookie else None)
    return RequestContext.from_raw(
        request.remote_addr, request.headers.get("User-Agent"), key, hints
    )


def request_target() -> str:
    """The URL a client addressed, as a DPoP proof's htu names it: the public
    origin (TLS usually ends at a proxy, so request.url may say http) and path."""
    origin = urlsplit(runtime().settings.public_url)
    return f"{origin.scheme}://{origin.netloc}{request.script_root}{request.path}"


def dpop_header(*, required: bool, status: int = 400) -> str | None:
    """The request's one DPoP proof (RFC 9449 section 4.3: exactly one). WSGI
    servers join repeated headers with commas, which a compact JWS never has."""
    values = request.headers.getlist(DPOP_HEADER)
    if not values and not required:
        return None
    if len(values) != 1 or "," in values[0]:
        raise invalid_dpop_proof("send exactly one DPoP header", status=status)
    return values[0]


def check_dpop(proof: str, *, access_token: str | None = None, status: int = 400) -> DpopProof:
    return services().dpop.check(
        proof, method=request.method, url=request_target(), access_token=access_token,
        status=status,
    )  # fmt: skip


def sign_in_context(transport: Transport) -> RequestContext:
    """The request context of a sign-in; a DPoP proof with it (RFC 9449 section
    5) binds the session's token to the proof's key."""
    context = request_context()
    header = dpop_header(required=False)
    if header is None:
        return context
    if transport != Transport.BEARER:
        raise invalid_dpop_proof("DPoP binds bearer tokens; ask for token_delivery 'bearer'")
    proof = check_dpop(header)
    return replace(context, device=replace(context.device, dpop_jkt=proof.jkt))


def csrf_token(session_id: str) -> str:
    key = derive_key(runtime().settings.secret_key_bytes, "csrf")
    return hmac.new(key, session_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Caller:
    session: Session
    user: User
    # The verified DPoP proof of this request, for a key-bound session.
    dpop: DpopProof | None = None


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


def current_caller() -> Caller:
    """The signed-in caller; cookie sessions must show the CSRF token to change state."""
    if "privid_caller" in g:
        caller: Caller = g.privid_caller
        return caller
    settings = runtime().settings
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
        session = svc.sessions.resolve(token, Transport.BEARER)
        if session is not None:
            proof = _sender_proof(session, scheme, token)
    else:
        cookie = request.cookies.get(settings.session_cookie_name)
        if not cookie:
            raise authentication_required()
        session = svc.sessions.resolve(cookie, Transport.COOKIE)
        if session is not None and request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent.isascii() or not hmac.compare_digest(sent, csrf_token(session.id)):
                raise ServiceError(
                    "csrf-failed",
                    403,
                    "Cross-site request refused",
                    f"Send the session's CSRF token in the {CSRF_HEADER} header.",
                )
    if session is None:
        raise _invalid_token(challenge)
    if not session.consent_pending and svc.policies.material_since(session.created_at):
        # A material change took effect during this session: ask now, not at
        # the next sign-in.
        session.consent_pending = bool(svc.consent.pending(session.user_id))
    if session.consent_pending and not _endpoint_allows_consent_step():
        raise ServiceError(
            "consent-required",
            403,
            "Consent decisions are owed first",
            "Decide on the purposes listed at GET /api/v1/me/consent before using the service.",
        )
    user = svc.db.get(User, session.user_id)
    assert user is not None
    signed_in = Caller(session, user, proof)
    g.privid_caller = signed_in
    return signed_in


def require_operator() -> Caller:
    """The caller, if an operator who signed in recently enough (RFC 9470 step-up)."""
    caller = current_caller()
    if caller.user.role != Role.OPERATOR:
        raise ServiceError(
            "operator-only", 403, "Operators only", "This endpoint is for operators."
        )
    return require_recent_authentication(runtime().settings.operator_max_auth_age_seconds)


def require_recent_authentication(max_age: int) -> Caller:
    """RFC 9470: a sign-in older than ``max_age`` seconds must be repeated."""
    return require_step_up(Acr.SINGLE_FACTOR, max_age)


def require_step_up(level: Acr, max_age: int) -> Caller:
    """RFC 9470: the session must have authenticated at ``level`` or above within
    ``max_age`` seconds; otherwise a challenge says what is needed."""
    caller = current_caller()
    require_authentication(caller.session, level, max_age, runtime().clock.now())
    return caller


def require_account_step_up(max_age: int) -> Caller:
    """Changing what protects the account: a proof within ``max_age`` seconds,
    with both factors when the account has TOTP."""
    caller = current_caller()
    return require_step_up(services().safeguards.account_level(caller.user.id), max_age)


def _endpoint_allows_consent_step() -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    operation = getattr(view, "openapi_operation", None)
    return bool(operation and operation.consent_step)


def session_payload(issued: IssuedSession) -> dict[str, Any]:
    session = issued.session
    bearer = session.transport == Transport.BEARER
    return {
        "session_id": session.id,
        "token": issued.token if bearer else None,
        "csrf_token": None if bearer else csrf_token(session.id),
        "token_type": (None if not bearer else "DPoP" if session.dpop_jkt else "Bearer"),
        "expires_at": session.expires_at,
        "acr": session.acr,
        "amr": session.amr,
    }


def attach_session_cookie(response: Response, issued: IssuedSession) -> None:
    if issued.session.transport != Transport.COOKIE:
        return
    settings = runtime().settings
    response.set_cookie(
        settings.session_cookie_name,
        issued.token,
        max_age=settings.session_absolute_timeout_seconds,
        path="/",
        secure=True,
        httponly=True,
        samesite="Lax",
    )


def attach_device_cookie(response: Response, cookie: str | None) -> None:
    """A browser's device cookie (only ever issued with the security purpose)."""
    if cookie is None:
        return
    settings = runtime().settings
    response.set_cookie(
        settings.device_cookie_name,
        cookie,
        max_age=settings.device_cookie_max_age_seconds,
        path="/",
        secure=True,
        httponly=True,
        samesite="Lax",
    )


def clear_device_cookie(response: Response) -> None:
    settings = runtime().settings
    response.delete_cookie(
        settings.device_cookie_name, path="/", secure=True, httponly=True, samesite="Lax"
    )


def clear_session_cookie(response: Response) -> None:
    settings = runtime().settings
    response.delete_cookie(
        settings.session_cookie_name, path="/", secure=True, httponly=True, samesite="Lax"
    )


def install_unit_of_work(app: Flask) -> None:
    """Commit after a successful request (or a failure that must count), with the
    outbox rows of the messages it queued; otherwise roll everything back, and
    with it every message."""

    @app.before_request
    def _start() -> None:
        g.keep_changes = False

    @app.after_request
    def _finish(response: Response) -> Response:
        svc: Services | None = g.pop("privid_services", None)
        if svc is None:
            return response
        try:
            if response.status_code < 400 or g.get("keep_changes"):
                svc.db.commit()
            else:
                svc.db.rollback()
        finally:
            svc.db.close()
        return response

    @app.teardown_request
    def _cleanup(_exc: BaseException | None) -> None:
        svc: Services | None = g.pop("privid_services", None)
        if svc is not None:
            svc.db.rollback()
            svc.db.close()
