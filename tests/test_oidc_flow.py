"""The code flow end to end, in process: a signed-in browser, a partner's
approval, the token endpoint, UserInfo, refresh rotation, and the ID token's
claims checked against the published keys."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.helpers import register, statements_of
from tests.oidc_helpers import (
    FIRST_PARTY,
    add_client,
    authorize_query,
    exchange,
    get_code,
    pkce_pair,
    redirect_params,
    refresh,
)


def signed_in_browser(client: FlaskClient, mailbox: Any, sms: Any) -> FlaskClient:
    register(client, mailbox, sms, token_delivery="cookie")
    return client


def verify(client: FlaskClient, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").json)
    return dict(jwt.decode(token, keys, algorithms=["RS256", "ES256"]).claims)


def test_code_flow_with_partner_approval_gives_tokens_and_userinfo(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    browser = signed_in_browser(client, mailbox, sms)
    rp = add_client(app)
    verifier, challenge = pkce_pair()
    first = browser.get(
        authorize_query(rp, scope="openid profile email offline_access", nonce="n-1",
                        code_challenge=challenge, code_challenge_method="S256")
    )  # fmt: skip
    assert first.status_code == 200
    page = first.get_data(as_text=True)
    assert "Partner shop" in page and "Your email address" in page
    from tests.oidc_helpers import approve

    back = redirect_params(approve(browser, page))
    assert back["iss"] == "https://privid.test" or back["iss"].startswith("http")
    answer = exchange(client, rp, back["code"], verifier)
    assert answer.status_code == 200, answer.json
    tokens = answer.json
    assert tokens["token_type"] == "Bearer" and "refresh_token" in tokens
    claims = verify(client, tokens["id_token"])
    assert claims["aud"] == rp.client_id and claims["nonce"] == "n-1"
    assert {
        "iss",
        "sub",
        "exp",
        "iat",
        "auth_time",
        "acr",
        "amr",
        "at_hash",
        "sid",
    } <= claims.keys()
    digest = hashlib.sha256(tokens["access_token"].encode()).digest()[:16]
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    info = client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert info.status_code == 200, info.json
    assert info.json["sub"] == claims["sub"] and "@" in info.json["email"] and info.json["name"]
    # The second time, the partner is remembered: straight back with a code.
    again = browser.get(authorize_query(rp, scope="openid profile"))
    assert "code" in redirect_params(again)
    # Refresh rotates; the old refresh token then revokes the whole grant.
    rotated = refresh(client, rp, tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.json
    assert rotated.json["refresh_token"] != tokens["refresh_token"]
    reused = refresh(client, rp, tokens["refresh_token"])
    assert reused.status_code == 400 and reused.json["error"] == "invalid_grant"
    dead = refresh(client, rp, rotated.json["refresh_token"])
    assert dead.status_code == 400
    gone = client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {rotated.json['access_token']}"}
    )
    assert gone.status_code == 401


def test_a_refresh_and_a_userinfo_read_take_few_round_trips(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    """A refresh reads the client, then the token with its grant (locked), its
    client's state and its user in one query, claims it, and records the new
    access and refresh tokens in one INSERT; UserInfo reads the token, grant,
    client and user in one query (then the claims asked for, and the user's
    data key)."""
    browser = signed_in_browser(client, mailbox, sms)
    rp = add_client(app)
    verifier, challenge = pkce_pair()
    query = authorize_query(rp, scope="openid email offline_access", code_challenge=challenge,
                            code_challenge_method="S256")  # fmt: skip
    from tests.oidc_helpers import approve

    back = redirect_params(approve(browser, browser.get(query).get_data(as_text=True)))
    tokens = exchange(client, rp, back["code"], verifier).json
    # The exchange made the first signing key: the next request reads the
    # keys anew once (app/oidc/keys.py). Measure a refresh after that one.
    tokens = refresh(client, rp, tokens["refresh_token"]).json
    answers: list[Any] = []
    statements = statements_of(
        app, lambda: answers.append(refresh(client, rp, tokens["refresh_token"]))
    )
    assert answers[0].status_code == 200, answers[0].json
    queries = [s.split()[0] for s in statements if not s.startswith("BEGIN")]
    # PostgreSQL writes both tokens in one statement, the first as a WITH
    # clause; SQLite in one executemany.
    assert queries[:3] == ["SELECT", "SELECT", "UPDATE"] and len(queries) == 4, statements
    inserted = statements[-1]
    assert inserted.startswith(("INSERT", "WITH")) and "INSERT INTO oauth_tokens" in inserted
    info_statements = statements_of(
        app,
        lambda: answers.append(
            client.get(
                "/oauth/userinfo",
                headers={"Authorization": f"Bearer {answers[0].json['access_token']}"},
            )
        ),
    )
    assert answers[1].status_code == 200 and "@" in answers[1].json["email"]
    info_queries = [s for s in info_statements if not s.startswith("BEGIN")]
    # The token with grant, client and user; the claims the code asked for;
    # the user's data key. The client is never read on its own.
    assert len(info_queries) == 3, info_statements
    assert "JOIN oauth_clients" in info_queries[0] and "JOIN users" in info_queries[0]
    assert not any(
        q.split("WHERE")[0].rstrip().endswith("FROM oauth_clients") for q in info_queries
    )


def test_code_reuse_is_refused_and_revokes_the_first_tokens(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    browser = signed_in_browser(client, mailbox, sms)
    rp = add_client(app, FIRST_PARTY)
    back = get_code(browser, rp)
    first = exchange(client, rp, back["code"])
    assert first.status_code == 200, first.json
    second = exchange(client, rp, back["code"])
    assert second.status_code == 400 and second.json["error"] == "invalid_grant"
    info = client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {first.json['access_token']}"}
    )
    assert info.status_code == 401


def test_discovery_names_what_is_served(client: FlaskClient) -> None:
    doc = client.get("/.well-known/openid-configuration").json
    assert doc["response_types_supported"] == ["code"]
    assert (
        client.get(doc["jwks_uri"].split("//", 1)[1].split("/", 1)[1].join(["/", ""])).status_code
        == 200
    )
    assert json.dumps(doc)
