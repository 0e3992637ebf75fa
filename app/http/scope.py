"""The request's runtime, services and context, shared by every surface."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

from flask import current_app, g, request

from app.security.dpop import DpopProof
from app.security.tokens import derive_key, hash_token
from app.services.container import Runtime, Services
from app.services.context import DeviceHints, RequestContext
from app.services.dpop import invalid_dpop_proof
from app.services.sessions import Transport

DPOP_HEADER = "DPoP"


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["privid.runtime"]
    return rt


def services() -> Services:
    """The request's services over one database session: the unit of work
    (app/http/unit_of_work.py) commits or rolls it back at the end."""
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
    """The request context of a sign-in; a DPoP proof with it (RFC 9449
    section 5) binds the session's token to the proof's key. Only views
    declared ``binds_dpop`` may ask (app/http/access.py)."""
    from app.http.gate import binding_proof_header

    context = request_context()
    if transport != Transport.BEARER:
        # Cookie sessions (browsers, pages) are never key-bound.
        if dpop_header(required=False) is not None:
            raise invalid_dpop_proof("DPoP binds bearer tokens; ask for token_delivery 'bearer'")
        return context
    header = binding_proof_header()
    if header is None:
        return context
    proof = check_dpop(header)
    return replace(context, device=replace(context.device, dpop_jkt=proof.jkt))
