"""The pages' CSP and a client's redirect URI: browsers check form-action on
every redirect after a form post, so a form whose answer ends at a relying
party (the approval page; sign-in, step-up and consent pages returning to an
authorisation request) must allow that origin, and only when the client
registered it. tests/test_oidc_browser.py shows the flows in Chromium."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.cli import unit_of_work
from app.oidc.clients import client_registry
from tests.helpers import publish_policy, register
from tests.oidc_helpers import PARTNER, add_client, authorize_query, exchange, get_code

RP_ORIGIN = "https://rp.example"


def form_action(response: Any) -> list[str]:
    found = re.search(r"form-action ([^;]+)", response.headers["Content-Security-Policy"])
    assert found, response.headers["Content-Security-Policy"]
    return found.group(1).split()


def test_the_approval_page_lets_its_form_end_at_the_clients_redirect_uri(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    register(client, mailbox, sms, token_delivery="cookie")
    rp = add_client(app, PARTNER)
    page = client.get(authorize_query(rp))
    assert page.status_code == 200 and "Partner shop" in page.get_data(as_text=True)
    assert form_action(page) == ["'self'", RP_ORIGIN]


@pytest.mark.parametrize("path", ["/signin", "/signin/sms", "/step-up"])
def test_pages_returning_to_an_authorisation_request_allow_its_client(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, path: str
) -> None:
    if path == "/step-up":
        register(client, mailbox, sms, token_delivery="cookie")  # a page behind sign-in
    rp = add_client(app, PARTNER)
    page = client.get(f"{path}?{urlencode({'next': authorize_query(rp)})}")
    assert page.status_code == 200
    assert form_action(page) == ["'self'", RP_ORIGIN]


def test_the_consent_step_returning_to_an_authorisation_request_allows_its_client(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    register(client, mailbox, sms, token_delivery="cookie")
    publish_policy(
        app,
        version="2026-12",
        effective_at=datetime.now(UTC),
        material=True,
        changes="New terms for analytics.",
        affected_purposes=["analytics"],
    )
    rp = add_client(app, PARTNER)
    page = client.get("/consent?" + urlencode({"next": authorize_query(rp)}))
    assert page.status_code == 200 and 'action="/consent"' in page.get_data(as_text=True)
    assert form_action(page) == ["'self'", RP_ORIGIN]


def test_a_password_sign_in_that_fails_keeps_the_target_on_the_page_shown_again(
    app: Flask, client: FlaskClient
) -> None:
    rp = add_client(app, PARTNER)
    form = client.get("/signin")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True))
    assert token
    again = client.post(
        "/signin",
        data={"csrf_token": token[1], "identifier": "nobody@example.com", "password": "wrong-one",
              "next": authorize_query(rp)},
    )  # fmt: skip
    assert again.status_code == 400
    assert form_action(again) == ["'self'", RP_ORIGIN]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param({"redirect_uri": "https://attacker.example/callback"}, id="unregistered-uri"),
        pytest.param({"redirect_uri": RP_ORIGIN + "/callback/../other"}, id="not-exact"),
        pytest.param({"client_id": "0" * 32}, id="unknown-client"),
        pytest.param({"redirect_uri": "https://rp.example/callback x; script-src *"}, id="csp"),
    ],
)
def test_a_crafted_next_adds_nothing(app: Flask, client: FlaskClient, tamper: dict[str, str]):
    rp = add_client(app, PARTNER)
    page = client.get("/signin?" + urlencode({"next": authorize_query(rp, **tamper)}))
    assert page.status_code == 200
    assert form_action(page) == ["'self'"]
    assert "script-src 'self' 'nonce-" in page.headers["Content-Security-Policy"]


def test_a_repeated_redirect_uri_adds_nothing(app: Flask, client: FlaskClient) -> None:
    rp = add_client(app, PARTNER)
    twice = authorize_query(rp) + "&" + urlencode({"redirect_uri": "https://attacker.example/"})
    page = client.get("/signin?" + urlencode({"next": twice}))
    assert form_action(page) == ["'self'"]


def test_a_disabled_clients_origin_is_no_longer_allowed(app: Flask, client: FlaskClient) -> None:
    rp = add_client(app, PARTNER)
    next_path = authorize_query(rp)
    assert form_action(client.get("/signin?" + urlencode({"next": next_path}))) == [
        "'self'",
        RP_ORIGIN,
    ]
    with app.app_context(), unit_of_work() as svc:
        client_registry(svc).disable(rp.client_id)
    assert form_action(client.get("/signin?" + urlencode({"next": next_path}))) == ["'self'"]


def test_the_logout_confirmation_lets_its_form_end_at_the_post_logout_uri(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    register(client, mailbox, sms, token_delivery="cookie")
    rp = add_client(app, PARTNER, post_logout_redirect_uris=(f"{RP_ORIGIN}/signed-out",))
    tokens = exchange(client, rp, get_code(client, rp)["code"]).json
    hint = {"id_token_hint": tokens["id_token"]}
    going_back = client.get(
        "/oauth/logout?"
        + urlencode({**hint, "post_logout_redirect_uri": f"{RP_ORIGIN}/signed-out"})
    )
    assert going_back.status_code == 200 and "Sign out?" in going_back.get_data(as_text=True)
    assert form_action(going_back) == ["'self'", RP_ORIGIN]
    staying = client.get("/oauth/logout?" + urlencode(hint))
    assert staying.status_code == 200
    assert form_action(staying) == ["'self'"]


def test_other_pages_keep_form_action_self(client: FlaskClient) -> None:
    assert form_action(client.get("/signin")) == ["'self'"]
    assert form_action(client.get("/signin?next=/account")) == ["'self'"]
