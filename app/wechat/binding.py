"""What a pending WeChat sign-in is bound to: the browser's WeChat cookie
(set when it went to WeChat), or the key an app proved with DPoP. Pages and
the JSON API compute it the same way, so the pages' scripts may finish a
pending link over the API (a passkey)."""

from __future__ import annotations

from flask import request

from app.security.tokens import hash_token
from app.services.context import RequestContext

# The browser's binding to its WeChat sign-in (state, then the pending link).
COOKIE = "__Host-privid_wechat"


def binding(context: RequestContext | None = None) -> str:
    if context is not None and context.device.dpop_jkt:
        return context.device.dpop_jkt
    # An app without DPoP sends no cookie: the ticket alone, as a second-factor ticket.
    return hash_token(request.cookies.get(COOKIE, ""))
