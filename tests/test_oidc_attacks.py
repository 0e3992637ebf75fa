"""Attacks on the provider's machine endpoints: client authentication
(secrets, private_key_jwt assertions), codes and refresh tokens replayed,
expired, stolen by another client or sent with the wrong redirect URI;
tampered, expired and foreign access tokens; revocation; DPoP-bound tokens
without their proof. Every refusal is an RFC 6749 JSON error and changes
nothing that was not meant to change."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey
from werkzeug.datastructures import MultiDict

from app.cli import unit_of_work
from app.clock import FrozenClock
from app.oidc.clients import client_registry
from app.oidc.token_store import TokenKind, token_store
from tests.dpop_client import DpopKey
from tests.helpers import register, table_rows
from tests.oidc_helpers import (
    FIRST_PARTY,
    PUBLIC_APP,
    SERVICE,
    RegisteredClient,
    add_client,
    bearer_get,
    exchange,
    get_code,
    introspect,
    pkce_pair,
    refresh,
    signed_jwt,
    step_aligned_now,
    unchanged,
)

ISSUER = "https://localhost"
TOKEN = "/oauth/token"
USERINFO = "/oauth/userinfo"


@pytest.fixture
def clock() -> FrozenClock:
    # Frozen near the real time: DPoP proofs and client assertions carry
    # real timestamps, and tests move the clock past lifetimes.
    return FrozenClock(step_aligned_now())


@pytest.fixture
def browser(client: FlaskClient, mailbox: Any, sms: Any) -> FlaskClient:
    register(client, mailbox, sms, token_delivery="cookie")
    return client


def oauth_error(answer: Any, status: int, error: str) -> dict[str, Any]:
    """An RFC 6749 section 5.2 answer: JSON, the error code, never cached."""
    assert answer.status_code == status, (answer.status_code, answer.data[:300])
    assert answer.mimetype == "application/json"
    body = answer.json
    assert body["error"] == error, body
    assert set(body) <= {"error", "error_description", "error_uri"}, body
    assert answer.headers["Cache-Control"] == "no-store"
    return body


def tokens_for(
    app: Flask, client: FlaskClient, browser: FlaskClient, rp: RegisteredClient, **params: str
) -> dict[str, Any]:
    answer = exchange(client, rp, get_code(browser, rp, **params)["code"])
    assert answer.status_code == 200, answer.json
    return dict(answer.json)


def active(client: FlaskClient, rp: RegisteredClient, token: str) -> bool:
    answer = introspect(client, rp, token)
    assert answer.status_code == 200, answer.json
    return bool(answer.json["active"])


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


# -- client authentication ------------------------------------------------------------


def test_wrong_client_secret_is_invalid_client_and_spends_nothing(
    app: Flask, client: FlaskClient, browser: FlaskClient
) -> None:
    rp = add_client(app, FIRST_PARTY)
    code = get_code(browser, rp)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    with unchanged(app, "wrong secret"):
        answer = client.post(TOKEN, data=form, headers=basic(rp.client_id, "not-the-secret"))
    oauth_error(answer, 401, "invalid_client")
    assert answer.headers["WWW-Authenticate"].startswith("Basic")
    # The secret in the body instead of the header it was registered for.
    with unchanged(app, "wrong method"):
        answer = client.post(
            TOKEN, data={**form, "client_id": rp.client_id, "client_secret": rp.secret}
        )
    oauth_error(answer, 401, "invalid_client")
    # No authentication at all.
    with unchanged(app, "no authentication"):
        answer = client.post(TOKEN, data={**form, "client_id": rp.client_id})
    oauth_error(answer, 401, "invalid_client")
    assert exchange(client, rp, code).status_code == 200


def test_unknown_and_disabled_clients_are_invalid_client(
    app: Flask, client: FlaskClient, browser: FlaskClient
) -> None:
    rp = add_client(app, FIRST_PARTY)
    tokens = tokens_for(app, client, browser, rp, scope="openid offline_access")
    code = get_code(browser, rp)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    with unchanged(app, "unknown client"):
        answer = client.post(TOKEN, data=form, headers=basic("f" * 32, "whatever"))
    oauth_error(answer, 401, "invalid_client")
    with app.app_context(), unit_of_work() as svc:
        client_registry(svc).disable(rp.client_id)
    with unchanged(app, "disabled client"):
        answer = client.post(TOKEN, data=form, headers=rp.basic)
        oauth_error(answer, 401, "invalid_client")
        gone = refresh(client, rp, tokens["refresh_token"])
        oauth_error(gone, 401, "invalid_client")
        assert bearer_get(client, USERINFO, tokens["access_token"]).status_code == 401


def test_client_secret_post(app: Flask, client: FlaskClient, browser: FlaskClient) -> None:
    rp = add_client(app, FIRST_PARTY, token_endpoint_auth_method="client_secret_post")
    code = get_code(browser, rp)["code"]
    form = {
        "grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri,
        "client_id": rp.client_id,
    }  # fmt: skip
    wrong = client.post(TOKEN, data={**form, "client_secret": "nope"})
    oauth_error(wrong, 401, "invalid_client")
    # Basic for a client registered for client_secret_post is refused too.
    oauth_error(client.post(TOKEN, data=form, headers=rp.basic), 401, "invalid_client")
    answer = client.post(TOKEN, data={**form, "client_secret": rp.secret})
    assert answer.status_code == 200, answer.json
    assert answer.json["id_token"]


class KeyClient:
    """A private_key_jwt client: an EC P-256 key pair, the public half registered."""

    def __init__(self, app: Flask) -> None:
        self.key = ECKey.generate_key("P-256", parameters={"kid": "rp-key-1"})
        public = self.key.as_dict(private=False)
        self.rp = add_client(
            app, FIRST_PARTY, token_endpoint_auth_method="private_key_jwt", jwks={"keys": [public]}
        )

    def assertion(self, key: ECKey | None = None, **claims: Any) -> str:
        now = int(step_aligned_now().timestamp())
        body = {
            "iss": self.rp.client_id, "sub": self.rp.client_id, "aud": ISSUER + TOKEN,
            "jti": secrets.token_urlsafe(16), "iat": now, "exp": now + 60,
        }  # fmt: skip
        body.update(claims)
        signer = key or self.key
        return jwt.encode({"alg": "ES256", "kid": signer.kid}, body, signer, algorithms=["ES256"])

    def form(self, code: str, assertion: str) -> dict[str, str]:
        return {
            "grant_type": "authorization_code", "code": code,
            "redirect_uri": self.rp.redirect_uri,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }  # fmt: skip


def test_private_key_jwt_assertion_works_once_and_only_for_this_server(
    app: Flask, client: FlaskClient, browser: FlaskClient
) -> None:
    rp = KeyClient(app)
    code = get_code(browser, rp.rp)["code"]
    refused = {
        "wrong audience": rp.assertion(aud="https://other.example/oauth/token"),
        "expired": rp.assertion(exp=int(step_aligned_now().timestamp()) - 300),
        "another key": rp.assertion(key=ECKey.generate_key("P-256", parameters={"kid": "x"})),
        "issuer is not the client": rp.assertion(iss="someone-else"),
    }
    for what, assertion in refused.items():
        with unchanged(app, what):
            answer = client.post(TOKEN, data=rp.form(code, assertion))
        # 400 or 401: only a client using the Authorization header must get 401.
        oauth_error(answer, answer.status_code, "invalid_client")
        assert answer.status_code in (400, 401), what
    good = rp.assertion()
    answer = client.post(TOKEN, data=rp.form(code, good))
    assert answer.status_code == 200, answer.json
    replayed = client.post(TOKEN, data=rp.form(get_code(browser, rp.rp)["code"], good))
    oauth_error(replayed, replayed.status_code, "invalid_client")
    assert replayed.status_code in (400, 401)


def test_private_key_jwt_assertion_that_outlives_the_replay_window_is_refused(
    app: Flask, client: FlaskClient, browser: FlaskClient
) -> None:
    """The jti is remembered for ten minutes: an assertion valid for longer
    could be replayed once it is forgotten, so it is not accepted at all."""
    rp = KeyClient(app)
    code = get_code(browser, rp.rp)["code"]
    long_lived = rp.assertion(exp=int(step_aligned_now().timestamp()) + 24 * 3600)
    with unchanged(app, "long-lived assertion"):
        answer = client.post(TOKEN, data=rp.form(code, long_lived))
    oauth_error(answer, answer.status_code, "invalid_client")
    assert answer.status_code in (400, 401)
    assert client.post(TOKEN, data=rp.form(code, rp.assertion())).status_code == 200


# -- codes ----------------------------------------------------------------------------


def test_code_reuse_is_invalid_grant_and_kills_what_the_first_use_issued(
    app: Flask, client: FlaskClient, browser: FlaskClient, clock: FrozenClock
) -> None:
    rp = add_client(app, FIRST_PARTY)
    code = get_code(browser, rp, scope="openid offline_access")["code"]
    first = exchange(client, rp, code)
    assert first.status_code == 200
    assert active(client, rp, first.json["access_token"])
    clock.advance(seconds=30)  # oidcc-codereuse-30seconds: still within the code's minute
    oauth_error(exchange(client, rp, code), 400, "invalid_grant")
    assert bearer_get(client, USERINFO, first.json["access_token"]).status_code == 401
    assert not active(client, rp, first.json["access_token"])
    assert not active(client, rp, first.json["refresh_token"])
    oauth_error(refresh(client, rp, first.json["refresh_token"]), 400, "invalid_grant")


def test_expired_code_is_invalid_grant(
    app: Flask, client: FlaskClient, browser: FlaskClient, clock: FrozenClock
) -> None:
    rp = add_client(app, FIRST_PARTY)
    late = get_code(browser, rp)["code"]
    in_time = get_code(browser, rp)["code"]
    clock.advance(seconds=59)
    assert exchange(client, rp, in_time).status_code == 200
    clock.advance(seconds=2)
    with unchanged(app, "expired code"):
        oauth_error(exchange(client, rp, late), 400, "invalid_grant")


def test_code_of_another_client_is_invalid_grant(
    app: Flask, client: FlaskClient, browser: FlaskClient
) -> None:
    rp = add_client(app, FIRST_PARTY)
    thief = add_client(app, FIRST_PARTY)
    code = get_code(browser, rp)["code"]
    with unchanged(app, "another client's code"):
        oauth_error(exchange(client, thief, code), 400, "invalid_grant")
    # The thief's attempt neither spent the code nor revoked anything.
    assert exchange(client, rp, code).status_code == 200


def test_redirect_uri_must_match_at_the_token_endpoint(
    app: Flask, client: FlaskClient, browser: FlaskClient
) -> None:
    rp = add_client(
        app, FIRST_PARTY, redirect_uris=("https://rp.example/cb", "https://rp.example/b")
    )
    code = get_code(browser, rp)["code"]
    for uri in ("https://rp.example/b", "https://rp.example/cb/", None):
        form = {"grant_type": "authorization_code", "code": code}
        if uri is not None:
            form["redirect_uri"] = uri
        with unchanged(app, f"redirect_uri {uri}"):
            answer = client.post(TOKEN, data=form, headers=rp.basic)
        assert answer.status_code == 400 and answer.json["error"] in (
            "invalid_grant",
            "invalid_request",
        ), answer.json
    assert exchange(client, rp, code).status_code == 200


# -- refresh tokens -------------------------------------------------------------------


def test_refresh_rotates_and_reuse_revokes_the_family(
    app: Flask, client: FlaskClient, browser: FlaskClient, clock: FrozenClock
) -> None:
    rp = add_client(app, FIRST_PARTY)
    first = tokens_for(app, client, browser, rp, scope="openid offline_access")
    clock.advance(seconds=1)
    rotated = refresh(client, rp, first["refresh_token"], scope="openid offline_access")
    assert rotated.status_code == 200, rotated.json
    assert rotated.headers["Cache-Control"] == "no-store"
    new = rotated.json
    assert new["refresh_token"] != first["refresh_token"] and new["token_type"] == "Bearer"
    _, one = signed_jwt(client, first["id_token"])
    _, two = signed_jwt(client, new["id_token"])
    for claim in ("iss", "sub", "aud", "auth_time", "sid"):
        assert one[claim] == two[claim], claim
    assert two["iat"] > one["iat"] and "nonce" not in two
    # The first access token lives on until the family is caught replaying.
    assert active(client, rp, first["access_token"])
    oauth_error(refresh(client, rp, first["refresh_token"]), 400, "invalid_grant")
    for token in (first["access_token"], new["access_token"], new["refresh_token"]):
        assert not active(client, rp, token)
    oauth_error(refresh(client, rp, new["refresh_token"]), 400, "invalid_grant")


def test_refresh_token_of_another_client_is_invalid_grant(
    app: Flask, client: FlaskClient, browser: FlaskClient
) -> None:
    rp, other = add_client(app, FIRST_PARTY), add_client(app, FIRST_PARTY)
    theirs = tokens_for(app, client, browser, other, scope="openid offline_access")
    with unchanged(app, "another client's refresh token"):
        oauth_error(refresh(client, rp, theirs["refresh_token"]), 400, "invalid_grant")
    assert refresh(client, other, theirs["refresh_token"]).status_code == 200


def test_refresh_may_narrow_the_scope_but_not_widen_it(
    app: Flask, client: FlaskClient, browser: FlaskClient
) -> None:
    rp = add_client(app, FIRST_PARTY)
    first = tokens_for(app, client, browser, rp, scope="openid profile offline_access")
    with unchanged(app, "wider scope"):
        wider = refresh(client, rp, first["refresh_token"], scope="openid profile email")
    oauth_error(wider, 400, "invalid_scope")
    narrower = refresh(client, rp, first["refresh_token"], scope="openid offline_access")
    assert narrower.status_code == 200, narrower.json
    assert narrower.json["scope"] == "openid offline_access"
    info = bearer_get(client, USERINFO, narrower.json["access_token"])
    assert info.status_code == 200 and "name" not in info.json


@pytest.mark.parametrize(
    "settings_overrides",
    [{"oidc_grant_lifetime_seconds": 600, "oidc_refresh_token_lifetime_seconds": 86400}],
)
def test_refresh_stops_at_the_grant_absolute_lifetime(
    app: Flask, client: FlaskClient, browser: FlaskClient, clock: FrozenClock
) -> None:
    rp = add_client(app, FIRST_PARTY)
    current = tokens_for(app, client, browser, rp, scope="openid offline_access")["refresh_token"]
    for _ in range(2):
        clock.advance(seconds=250)
        answer = refresh(client, rp, current)
        assert answer.status_code == 200, answer.json
        current = answer.json["refresh_token"]
    clock.advance(seconds=101)  # 601 s after the code
    with unchanged(app, "past the grant's lifetime"):
        oauth_error(refresh(client, rp, current), 400, "invalid_grant")


# -- client credentials and other grant types ----------------------------------------


def test_client_credentials_gives_an_access_token_only(app: Flask, client: FlaskClient) -> None:
    rp = add_client(app, SERVICE, scopes=())
    answer = client.post(TOKEN, data={"grant_type": "client_credentials"}, headers=rp.basic)
    assert answer.status_code == 200, answer.json
    assert "refresh_token" not in answer.json and "id_token" not in answer.json
    token = answer.json["access_token"]
    found = introspect(client, rp, token).json
    assert found["active"] and found["sub"] == rp.client_id and "auth_time" not in found
    # No user behind it: UserInfo has nobody to describe.
    assert bearer_get(client, USERINFO, token).status_code in (400, 403)
    for scope in ("openid", "profile", "offline_access", "email phone"):
        with unchanged(app, f"user scope {scope}"):
            refused = client.post(
                TOKEN, data={"grant_type": "client_credentials", "scope": scope}, headers=rp.basic
            )
        oauth_error(refused, 400, "invalid_scope")


def test_client_credentials_is_only_for_clients_registered_for_it(
    app: Flask, client: FlaskClient
) -> None:
    rp = add_client(app, FIRST_PARTY)
    with unchanged(app):
        answer = client.post(TOKEN, data={"grant_type": "client_credentials"}, headers=rp.basic)
    oauth_error(answer, 400, "unauthorized_client")


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "password", "username": "a@example.com", "password": "x"},
        {"grant_type": "implicit"},
        {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": "x"},
        {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "x.y.z"},
    ],
)
def test_unsupported_grant_types(app: Flask, client: FlaskClient, form: dict[str, str]) -> None:
    rp = add_client(app, FIRST_PARTY)
    with unchanged(app, form["grant_type"]):
        answer = client.post(TOKEN, data=form, headers=rp.basic)
    oauth_error(answer, 400, "unsupported_grant_type")


def test_bad_token_requests_change_nothing(
    app: Flask, client: FlaskClient, browser: FlaskClient
) -> None:
    rp = add_client(app, FIRST_PARTY)
    code = get_code(browser, rp, scope="openid offline_access")["code"]
    good = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    bad: list[tuple[str, dict[str, Any], int, tuple[str, ...]]] = [
        ("no grant type", {"code": code}, 400, ("unsupported_grant_type", "invalid_request")),
        ("empty code", {**good, "code": ""}, 400, ("invalid_request", "invalid_grant")),
        ("no code", {k: v for k, v in good.items() if k != "code"}, 400, ("invalid_request",)),
        ("unknown code", {**good, "code": "x" * 43}, 400, ("invalid_grant",)),
        ("long code", {**good, "code": "x" * 5000}, 400, ("invalid_grant", "invalid_request")),
        ("NUL in code", {**good, "code": code + "\x00"}, 400, ("invalid_grant", "invalid_request")),
        ("refresh: unknown", {"grant_type": "refresh_token", "refresh_token": "nope"}, 400,
         ("invalid_grant",)),
        ("refresh: none", {"grant_type": "refresh_token"}, 400, ("invalid_request",)),
    ]  # fmt: skip
    for what, form, status, errors in bad:
        with unchanged(app, what):
            answer = client.post(TOKEN, data=form, headers=rp.basic)
        assert answer.status_code == status, (what, answer.status_code, answer.data[:200])
        assert answer.json["error"] in errors, (what, answer.json)
        assert answer.headers["Cache-Control"] == "no-store", what
    with unchanged(app, "JSON body"):
        answer = client.post(TOKEN, json=good, headers=rp.basic)
    assert answer.status_code == 400 and answer.json["error"], answer.json
    with unchanged(app, "GET"):
        answer = client.get(TOKEN + "?" + "&".join(f"{k}={v}" for k, v in good.items()))
    assert answer.status_code == 405 and answer.json["error"] == "invalid_request"
    # After all that, the code still works for its client.
    assert exchange(client, rp, code).status_code == 200


@pytest.mark.parametrize("endpoint", [TOKEN, "/oauth/introspect", "/oauth/revoke"])
def test_a_parameter_sent_twice_is_invalid_request(
    app: Flask, client: FlaskClient, browser: FlaskClient, endpoint: str
) -> None:
    rp = add_client(app, FIRST_PARTY)
    code = get_code(browser, rp)["code"]
    name = "code" if endpoint == TOKEN else "token"
    form = MultiDict(
        [("grant_type", "authorization_code"), ("redirect_uri", rp.redirect_uri),
         (name, code), (name, "another")]
    )  # fmt: skip
    with unchanged(app, endpoint):
        answer = client.post(endpoint, data=form, headers=rp.basic)
    oauth_error(answer, 400, "invalid_request")
    assert exchange(client, rp, code).status_code == 200


def test_a_client_authenticates_one_way_and_names_itself_once(
    app: Flask, client: FlaskClient, browser: FlaskClient
) -> None:
    rp, other = add_client(app, FIRST_PARTY), add_client(app, FIRST_PARTY)
    code = get_code(browser, rp)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    ambiguous = {
        "client_id of another client": {**form, "client_id": other.client_id},
        "Basic and client_secret": {**form, "client_id": rp.client_id, "client_secret": rp.secret},
    }
    for what, body in ambiguous.items():
        with unchanged(app, what):
            answer = client.post(TOKEN, data=body, headers=rp.basic)
        oauth_error(answer, 400, "invalid_request")
    # Its own client_id beside the Basic credentials is fine.
    answer = client.post(TOKEN, data={**form, "client_id": rp.client_id}, headers=rp.basic)
    assert answer.status_code == 200, answer.json


# -- access tokens --------------------------------------------------------------------


def _flip(token: str, at: int) -> str:
    replacement = "A" if token[at] != "A" else "B"
    return token[:at] + replacement + token[at + 1 :]


@pytest.mark.parametrize("token_format", ["jwt", "opaque"])
def test_tampered_access_token_is_refused(
    app: Flask, client: FlaskClient, browser: FlaskClient, token_format: str
) -> None:
    rp = add_client(app, FIRST_PARTY, access_token_format=token_format)
    token = tokens_for(app, client, browser, rp)["access_token"]
    for at in (0, len(token) // 2, len(token) - 2):
        answer = bearer_get(client, USERINFO, _flip(token, at))
        assert answer.status_code == 401, at
        assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
        assert not active(client, rp, _flip(token, at))
    assert bearer_get(client, USERINFO, token).status_code == 200


def test_access_token_signed_by_the_provider_but_not_issued_is_refused(
    app: Flask, client: FlaskClient, browser: FlaskClient
) -> None:
    """A JWT access token is looked up, not just verified: one with a valid
    signature that the store never recorded (a forged or revoked one) fails."""
    from app.oidc.keys import SigningKeys

    rp = add_client(app, FIRST_PARTY)
    token = tokens_for(app, client, browser, rp)["access_token"]
    _, claims = signed_jwt(client, token)
    with app.app_context(), unit_of_work() as svc:
        forged = SigningKeys.of(svc).sign(
            {**claims, "scope": "openid profile email"}, "RS256", "at+jwt"
        )
    assert bearer_get(client, USERINFO, forged).status_code == 401


def test_expired_access_token_is_refused(
    app: Flask, client: FlaskClient, browser: FlaskClient, clock: FrozenClock
) -> None:
    rp = add_client(app, FIRST_PARTY)
    token = tokens_for(app, client, browser, rp)["access_token"]
    clock.advance(seconds=599)
    assert bearer_get(client, USERINFO, token).status_code == 200
    clock.advance(seconds=2)
    assert bearer_get(client, USERINFO, token).status_code == 401
    assert not active(client, rp, token)


def test_another_client_learns_nothing_by_introspection_or_revocation(
    app: Flask, client: FlaskClient, browser: FlaskClient
) -> None:
    rp, other = add_client(app, FIRST_PARTY), add_client(app, FIRST_PARTY)
    tokens = tokens_for(app, client, browser, rp, scope="openid offline_access")
    for token in (tokens["access_token"], tokens["refresh_token"]):
        assert introspect(client, other, token).json == {"active": False}
        with unchanged(app, "revocation by another client"):
            answer = client.post("/oauth/revoke", data={"token": token}, headers=other.basic)
        assert answer.status_code in (200, 400)
        assert active(client, rp, token)
    unauthenticated = client.post("/oauth/introspect", data={"token": tokens["access_token"]})
    oauth_error(unauthenticated, 401, "invalid_client")


def test_revoking_an_access_token_ends_it_alone(
    app: Flask, client: FlaskClient, browser: FlaskClient
) -> None:
    rp = add_client(app, FIRST_PARTY)
    tokens = tokens_for(app, client, browser, rp, scope="openid offline_access")
    answer = client.post(
        "/oauth/revoke",
        data={"token": tokens["access_token"], "token_type_hint": "access_token"},
        headers=rp.basic,
    )
    assert answer.status_code == 200
    assert bearer_get(client, USERINFO, tokens["access_token"]).status_code == 401
    assert refresh(client, rp, tokens["refresh_token"]).status_code == 200


def test_revoking_a_refresh_token_ends_the_grant(
    app: Flask, client: FlaskClient, browser: FlaskClient
) -> None:
    rp = add_client(app, FIRST_PARTY)
    tokens = tokens_for(app, client, browser, rp, scope="openid offline_access")
    # A wrong hint is only a hint.
    answer = client.post(
        "/oauth/revoke",
        data={"token": tokens["refresh_token"], "token_type_hint": "access_token"},
        headers=rp.basic,
    )
    assert answer.status_code == 200
    assert bearer_get(client, USERINFO, tokens["access_token"]).status_code == 401
    oauth_error(refresh(client, rp, tokens["refresh_token"]), 400, "invalid_grant")
    # Revoking an unknown or dead token is a quiet 200 (RFC 7009 section 2.2).
    again = client.post("/oauth/revoke", data={"token": "nope"}, headers=rp.basic)
    assert again.status_code == 200


# -- DPoP -----------------------------------------------------------------------------


def _dpop_exchange(
    client: FlaskClient, rp: RegisteredClient, code: str, key: DpopKey, verifier: str, now: float
) -> Any:
    form = {
        "grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri,
        "code_verifier": verifier, "client_id": rp.client_id,
    }  # fmt: skip
    return client.post(TOKEN, data=form, headers={"DPoP": key.proof("POST", TOKEN, iat=now)})


def test_dpop_bound_tokens_need_their_proof(
    app: Flask, client: FlaskClient, browser: FlaskClient, clock: FrozenClock
) -> None:
    rp = add_client(app, PUBLIC_APP, first_party=True)
    key, stranger = DpopKey(), DpopKey()
    now = clock.now().timestamp()
    verifier, challenge = pkce_pair()
    code = get_code(
        browser, rp, scope="openid profile offline_access", code_challenge=challenge,
        code_challenge_method="S256",
    )["code"]  # fmt: skip
    answer = _dpop_exchange(client, rp, code, key, verifier, now)
    assert answer.status_code == 200, answer.json
    tokens = answer.json
    assert tokens["token_type"] == "DPoP"
    token = tokens["access_token"]
    _, claims = signed_jwt(client, token)
    assert claims["cnf"] == {"jkt": key.thumbprint}
    # As a bearer token: refused.
    assert bearer_get(client, USERINFO, token).status_code == 401
    # The DPoP scheme without a proof, with a stranger's proof, with a proof
    # for another request or without the token's hash: refused.
    assert client.get(USERINFO, headers={"Authorization": f"DPoP {token}"}).status_code == 401
    wrong_proofs = [
        stranger.headers("GET", USERINFO, token, iat=now),
        key.headers("POST", USERINFO, token, iat=now),
        {**key.headers("GET", USERINFO, token, iat=now),
         "DPoP": key.proof("GET", USERINFO, iat=now)},
        key.headers("GET", USERINFO, token, iat=now - 3600),
    ]  # fmt: skip
    for headers in wrong_proofs:
        assert client.get(USERINFO, headers=headers).status_code == 401
    proved = client.get(USERINFO, headers=key.headers("GET", USERINFO, token, iat=now))
    assert proved.status_code == 200, proved.json
    # The same proof again is a replay.
    headers = key.headers("GET", USERINFO, token, iat=now)
    assert client.get(USERINFO, headers=headers).status_code == 200
    assert client.get(USERINFO, headers=headers).status_code == 401
    # The public client's refresh token is bound to the key as well.
    plain = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
             "client_id": rp.client_id}  # fmt: skip
    with unchanged(app, "refresh without the proof"):
        oauth_error(client.post(TOKEN, data=plain), 400, "invalid_grant")
    with unchanged(app, "refresh with another key"):
        other = client.post(
            TOKEN, data=plain, headers={"DPoP": stranger.proof("POST", TOKEN, iat=now)}
        )
        oauth_error(other, 400, "invalid_grant")
    bound = client.post(TOKEN, data=plain, headers={"DPoP": key.proof("POST", TOKEN, iat=now)})
    assert bound.status_code == 200, bound.json
    assert bound.json["token_type"] == "DPoP"


def test_introspection_reports_the_dpop_binding(
    app: Flask, client: FlaskClient, browser: FlaskClient, clock: FrozenClock
) -> None:
    rp = add_client(app, FIRST_PARTY)
    key = DpopKey()
    code = get_code(browser, rp)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    proof = key.proof("POST", TOKEN, iat=clock.now().timestamp())
    answer = client.post(TOKEN, data=form, headers={**rp.basic, "DPoP": proof})
    assert answer.status_code == 200 and answer.json["token_type"] == "DPoP"
    found = introspect(client, rp, answer.json["access_token"]).json
    assert found["active"] and found["token_type"] == "DPoP"
    assert found["cnf"] == {"jkt": key.thumbprint}


def test_a_bad_dpop_proof_at_the_token_endpoint_spends_nothing(
    app: Flask, client: FlaskClient, browser: FlaskClient, clock: FrozenClock
) -> None:
    rp = add_client(app, FIRST_PARTY)
    code = get_code(browser, rp)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    key = DpopKey()
    now = clock.now().timestamp()
    for proof in (
        "not-a-proof",
        key.proof("POST", "/oauth/other", iat=now),
        key.proof("GET", TOKEN, iat=now),
        key.proof("POST", TOKEN, iat=now - 3600),
        key.proof("POST", TOKEN, iat=now, typ="JWT"),
    ):
        with unchanged(app, proof[:20]):
            answer = client.post(TOKEN, data=form, headers={**rp.basic, "DPoP": proof})
        assert answer.status_code == 400, answer.json
        assert answer.json["error"] == "invalid_dpop_proof"
    assert exchange(client, rp, code).status_code == 200


def test_a_client_registered_for_dpop_must_send_a_proof(
    app: Flask, client: FlaskClient, browser: FlaskClient, clock: FrozenClock
) -> None:
    rp = add_client(app, FIRST_PARTY, dpop_bound=True)
    code = get_code(browser, rp)["code"]
    with unchanged(app, "no proof"):
        oauth_error(exchange(client, rp, code), 400, "invalid_dpop_proof")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    proof = DpopKey().proof("POST", TOKEN, iat=clock.now().timestamp())
    answer = client.post(TOKEN, data=form, headers={**rp.basic, "DPoP": proof})
    assert answer.status_code == 200 and answer.json["token_type"] == "DPoP"


def test_stored_tokens_are_hashes_only(app: Flask, client: FlaskClient, browser: FlaskClient):
    rp = add_client(app, FIRST_PARTY, access_token_format="opaque")
    tokens = tokens_for(app, client, browser, rp, scope="openid offline_access")
    dump = json.dumps({k: [list(map(str, r)) for r in v] for k, v in table_rows(app).items()})
    for name in ("access_token", "refresh_token"):
        assert tokens[name] not in dump
    with app.app_context(), unit_of_work() as svc:
        assert token_store(svc).find(tokens["refresh_token"], TokenKind.REFRESH) is not None


@pytest.mark.parametrize(
    "client_id", ["\x00", "a" * 31 + "\x00", "%00", "é" * 32, "A" * 32, "a" * 65]
)
def test_a_client_id_no_client_can_have_is_refused_before_the_database(
    app: Flask, client: FlaskClient, client_id: str
) -> None:
    """A NUL in a client_id made PostgreSQL refuse the read, and the grant,
    introspection and logout answered 500; now any value outside the shape
    client ids have gets what an unknown client gets, on every endpoint that
    reads one."""
    rp = add_client(app, SERVICE, scopes=())

    def answers(named: str) -> list[tuple[int, str | None]]:
        basic = "Basic " + base64.b64encode(f"{named}:{rp.secret}".encode()).decode()
        posted = {"grant_type": "client_credentials", "client_id": named, "client_secret": "s"}
        got = [
            client.post(TOKEN, data={"grant_type": "client_credentials"},
                        headers={"Authorization": basic}),
            client.post(TOKEN, data=posted),
            client.post("/oauth/introspect", data={"token": "x" * 43},
                        headers={"Authorization": basic}),
            client.get("/oauth/logout?" + urlencode({"client_id": named})),
        ]  # fmt: skip
        return [(a.status_code, a.json.get("error") if a.is_json else None) for a in got]

    with unchanged(app, "odd client_id"):
        odd, unknown = answers(client_id), answers("f" * 32)
    assert odd == unknown
    assert [status for status, _ in unknown] == [401, 400, 401, 400]
