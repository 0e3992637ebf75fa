"""Where the sign-in, step-up and consent pages' forms may end when they
return the person to an authorisation request: that request's client, at the
redirect URI registered for it. The pages surface allows exactly that origin
in form-action (browsers check it on every redirect after a form post), and
nothing a crafted ``next`` names unless the client registered it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from app.errors import ServiceError
from app.http.scope import services
from app.oidc.clients import ClientRegistry, client_registry

AUTHORIZE_PATH = "/oauth/authorize"


def form_targets(next_path: str) -> list[str]:
    parts = urlsplit(next_path)
    if parts.scheme or parts.netloc or parts.path != AUTHORIZE_PATH:
        return []
    query = parse_qs(parts.query)
    client_ids, redirect_uris = query.get("client_id", []), query.get("redirect_uri", [])
    # Repeated parameters make the request invalid: it never reaches the client.
    if len(client_ids) != 1 or len(redirect_uris) != 1:
        return []
    try:
        client = client_registry(services()).get(client_ids[0])
    except ServiceError:  # unknown or disabled
        return []
    if not ClientRegistry.exact_redirect_uri(client, redirect_uris[0]):
        return []
    return [redirect_uris[0]]
