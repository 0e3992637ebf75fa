"""A relying party for browser tests: a small Flask app on 127.0.0.1 (or
localhost, another sector host) in a thread, using authlib's Flask client
exactly as a partner's site would: discovery, PKCE S256, the code exchange
with ID-token validation (signature, iss, aud, nonce, exp), UserInfo. It shows
what it got and keeps it for the test to read."""

from __future__ import annotations

import html
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask, request
from werkzeug.serving import make_server

SCOPE = "openid profile email offline_access"
# Authorisation-request parameters the RP's /login passes on to the provider.
FORWARDED = ("prompt", "max_age", "acr_values", "ui_locales", "login_hint")


@dataclass
class Outcome:
    """What one return to /callback brought: tokens and claims, or an error."""

    issuer_param: str | None
    token: dict[str, Any] | None = None
    id_claims: dict[str, Any] | None = None
    userinfo: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class RelyingParty:
    url: str  # http://<host>:<port>, no trailing slash
    client_id: str
    client_secret: str
    discovery_url: str
    outcomes: list[Outcome] = field(default_factory=list)
    # Each return to /signed-out: "ok" when its state matched, else the error.
    logouts: list[str] = field(default_factory=list)

    @property
    def last(self) -> Outcome:
        assert self.outcomes, "the provider never sent the browser back to the relying party"
        return self.outcomes[-1]

    def metadata(self) -> dict[str, Any]:
        answer = requests.get(self.discovery_url, timeout=10)
        answer.raise_for_status()
        return dict(answer.json())

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        """The token endpoint's refresh grant, through authlib's client."""
        with self._session() as session:
            token = session.refresh_token(
                self.metadata()["token_endpoint"], refresh_token=refresh_token, timeout=10
            )
        return dict(token)

    def userinfo(self, token: dict[str, Any]) -> dict[str, Any]:
        with self._session(token) as session:
            answer = session.get(self.metadata()["userinfo_endpoint"], timeout=10)
            answer.raise_for_status()
            return dict(answer.json())

    def _session(self, token: dict[str, Any] | None = None) -> OAuth2Session:
        return OAuth2Session(
            self.client_id,
            self.client_secret,
            token=token,
            token_endpoint_auth_method="client_secret_basic",
        )


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><title>{html.escape(title)}</title></head>'
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )


def _rp_app(rp: RelyingParty, redirect_uri: str) -> Flask:
    app = Flask(f"relying-party-{secrets.token_hex(4)}")
    app.secret_key = secrets.token_bytes(32)
    # Its own cookie name: on localhost it shares the browser's jar with the provider.
    app.config["SESSION_COOKIE_NAME"] = f"rp_{secrets.token_hex(4)}"
    oauth = OAuth(app)
    provider = oauth.register(
        "provider",
        client_id=rp.client_id,
        client_secret=rp.client_secret,
        server_metadata_url=rp.discovery_url,
        client_kwargs={"scope": SCOPE, "code_challenge_method": "S256", "timeout": 10},
    )

    @app.get("/login")
    def login() -> Any:
        extra = {k: request.args[k] for k in FORWARDED if k in request.args}
        return provider.authorize_redirect(redirect_uri, **extra)

    @app.get("/callback")
    def callback() -> Any:
        outcome = Outcome(issuer_param=request.args.get("iss"))
        rp.outcomes.append(outcome)
        try:
            token = provider.authorize_access_token()
        except OAuthError as error:
            outcome.error = error.error
            return _page("Sign-in failed", f'<p id="error">{html.escape(error.error)}</p>')
        outcome.token = dict(token)
        outcome.id_claims = dict(token["userinfo"])
        outcome.userinfo = dict(provider.userinfo(token=token))
        shown = json.dumps({"id_token": outcome.id_claims, "userinfo": outcome.userinfo})
        return _page("Signed in", f'<pre id="claims">{html.escape(shown)}</pre>')

    @app.get("/logout")
    def logout() -> Any:
        """RP-initiated logout with the last ID token as the hint."""
        hint = rp.last.token["id_token"] if rp.last.token else None
        return provider.logout_redirect(
            post_logout_redirect_uri=f"{rp.url}/signed-out", id_token_hint=hint
        )

    @app.get("/signed-out")
    def signed_out() -> Any:
        try:
            provider.validate_logout_response()
        except OAuthError as error:
            rp.logouts.append(error.error or "error")
            return _page("Sign-out failed", f'<p id="error">{html.escape(str(error))}</p>')
        rp.logouts.append("ok")
        return _page("Signed out", "")

    return app


@contextmanager
def relying_party(
    provider_url: str, client_id: str, client_secret: str, port: int, host: str = "127.0.0.1"
) -> Iterator[RelyingParty]:
    """Serves the RP on ``port``; ``host`` is the name in its redirect URI (the
    browser maps localhost to 127.0.0.1, where the server listens)."""
    rp = RelyingParty(
        url=f"http://{host}:{port}",
        client_id=client_id,
        client_secret=client_secret,
        discovery_url=f"{provider_url}/.well-known/openid-configuration",
    )
    server = make_server("127.0.0.1", port, _rp_app(rp, f"{rp.url}/callback"), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="relying-party", daemon=True)
    thread.start()
    try:
        yield rp
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
