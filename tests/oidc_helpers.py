"""Driving the OpenID provider from a test, as a relying party would: clients
registered through the registry, PKCE pairs, the authorisation request through
a browser-like test client (cookie session), the token endpoint."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet

from app.cli import unit_of_work
from app.oidc.clients import NewClient, client_registry
from tests.helpers import row_counts, table_rows

REDIRECT = "https://rp.example/callback"
PARTNER = NewClient(
    name="Partner shop",
    client_type="confidential",
    token_endpoint_auth_method="client_secret_basic",
    redirect_uris=(REDIRECT,),
    grant_types=("authorization_code", "refresh_token"),
    scopes=("openid", "profile", "email", "phone", "offline_access"),
    require_pkce=False,
)
FIRST_PARTY = replace(PARTNER, name="Platform web", first_party=True)
PUBLIC_APP = NewClient(
    name="Mobile app",
    client_type="public",
    token_endpoint_auth_method="none",
    redirect_uris=("http://127.0.0.1:7000/cb",),
    grant_types=("authorization_code", "refresh_token"),
    scopes=("openid", "profile", "offline_access"),
)
SERVICE = NewClient(
    name="Partner backend",
    client_type="confidential",
    token_endpoint_auth_method="client_secret_basic",
    grant_types=("client_credentials",),
    scopes=("openid",),
)


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    secret: str | None
    redirect_uri: str

    @property
    def basic(self) -> dict[str, str]:
        raw = f"{self.client_id}:{self.secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def add_client(app: Flask, new: NewClient = PARTNER, **changes: Any) -> RegisteredClient:
    with app.app_context(), unit_of_work() as svc:
        made = client_registry(svc).register(replace(new, **changes))
        uris = made.client.redirect_uris
        return RegisteredClient(made.client.client_id, made.secret, uris[0] if uris else "")


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_query(rp: RegisteredClient, **params: str) -> str:
    query = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": "openid profile",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
    }
    query.update(params)
    return "/oauth/authorize?" + urlencode({k: v for k, v in query.items() if v is not None})


def redirect_params(response: Any) -> dict[str, str]:
    """The query a redirect to the client carries (one value each)."""
    assert response.status_code in (302, 303), (response.status_code, response.data[:300])
    location = response.headers["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def approval_fields(page_html: str) -> dict[str, str]:
    """The hidden fields of the approval page's form (its CSRF token)."""
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page_html))
    return {k: _unescape(v) for k, v in fields.items()}


def _unescape(value: str) -> str:
    return (
        value.replace("&#34;", '"').replace("&#39;", "'").replace("&lt;", "<")
        .replace("&gt;", ">").replace("&amp;", "&")
    )  # fmt: skip


def approval_action(page_html: str) -> str:
    """Where the approval page's form posts: the decision endpoint, with the
    client's request in its query."""
    found = re.search(r'<form method="post" action="(/oauth/authorize/decision\?[^"]*)"', page_html)
    assert found, "no approval form on the page"
    return _unescape(found.group(1))


def approve(browser: FlaskClient, page_html: str, decision: str = "approve") -> Any:
    fields = approval_fields(page_html)
    fields["decision"] = decision
    return browser.post(approval_action(page_html), data=fields)


def get_code(browser: FlaskClient, rp: RegisteredClient, **params: str) -> dict[str, str]:
    """Run the authorisation request with a signed-in browser, approving the
    partner if asked; the redirect's parameters (code, state, iss)."""
    answer = browser.get(authorize_query(rp, **params))
    if answer.status_code == 200:
        answer = approve(browser, answer.get_data(as_text=True))
    return redirect_params(answer)


def exchange(
    client: FlaskClient, rp: RegisteredClient, code: str, verifier: str | None = None, **extra: str
) -> Any:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    if verifier:
        form["code_verifier"] = verifier
    form.update(extra)
    headers = rp.basic if rp.secret else {}
    if not rp.secret:
        form["client_id"] = rp.client_id
    return client.post("/oauth/token", data=form, headers=headers)


def refresh(client: FlaskClient, rp: RegisteredClient, token: str, **extra: str) -> Any:
    form = {"grant_type": "refresh_token", "refresh_token": token, **extra}
    headers = rp.basic if rp.secret else {}
    if not rp.secret:
        form["client_id"] = rp.client_id
    return client.post("/oauth/token", data=form, headers=headers)


# -- the browser's side of sign-in, and reading tokens -------------------------------


def step_aligned_now() -> datetime:
    """Now, rounded into a 30 s TOTP step (10 s in), for a frozen clock that
    DPoP proofs signed with the real time still agree with."""
    seconds = int(time.time()) // 30 * 30 + 10
    return datetime.fromtimestamp(seconds, UTC)


def sign_in_when_asked(browser: FlaskClient, answer: Any, identifier: str, password: str) -> Any:
    """The authorisation endpoint sent the browser to the sign-in page: sign
    in there and come back; returns the authorisation endpoint's next answer."""
    assert answer.status_code == 303, (answer.status_code, answer.data[:300])
    assert answer.headers["Location"].startswith("/signin?"), answer.headers["Location"]
    page = browser.get(answer.headers["Location"])
    assert page.status_code == 200
    fields = approval_fields(page.get_data(as_text=True))
    done = browser.post("/signin", data={**fields, "identifier": identifier, "password": password})
    assert done.status_code == 303, done.data[:300]
    assert done.headers["Location"].startswith("/oauth/authorize?"), done.headers["Location"]
    return browser.get(done.headers["Location"])


def signed_jwt(client: FlaskClient, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a token the provider signed, verified with its JWKS."""
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").json)
    decoded = jwt.decode(token, keys, algorithms=["RS256", "ES256"])
    return dict(decoded.header), dict(decoded.claims)


def bearer_get(client: FlaskClient, path: str, token: str) -> Any:
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def introspect(client: FlaskClient, rp: RegisteredClient, token: str) -> Any:
    return client.post("/oauth/introspect", data={"token": token}, headers=rp.basic)


@contextmanager
def unchanged(app: Flask, what: str = "") -> Iterator[None]:
    """No row written, changed or removed by the block."""
    before = table_rows(app)
    yield
    after = table_rows(app)
    assert row_counts(after) == row_counts(before), what
    assert [n for n in before if before[n] != after[n]] == [], what
