"""The operators' API for OAuth clients: register, list, read, rotate a secret,
disable. Operators only; a secret is in the answer that makes it and nowhere
else; bad settings are refused field by field and nothing is stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.cli import unit_of_work
from app.clock import FrozenClock
from app.oidc.clients import client_registry
from app.security.tokens import hash_token
from tests.fakes import Mailbox, SmsOutbox
from tests.helpers import (
    HIGH_LIMITS,
    assert_problem,
    bearer,
    database_text,
    login,
    nothing_changes,
    pointers,
    register,
    row_count,
)

BASE = "/api/v1/admin/oauth-clients"
PARTNER: dict[str, Any] = {
    "name": "Partner shop",
    "client_type": "confidential",
    "token_endpoint_auth_method": "client_secret_basic",
    "redirect_uris": ["https://shop.example/cb"],
    "grant_types": ["authorization_code", "refresh_token"],
    "scopes": ["openid", "email", "offline_access"],
}
MOBILE: dict[str, Any] = {
    "name": "Our mobile app",
    "client_type": "public",
    "token_endpoint_auth_method": "none",
    "redirect_uris": ["http://127.0.0.1:7000/cb"],
    "first_party": True,
}


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)  # several sign-ins per test; limits have their own tests


@pytest.fixture
def clock(frozen_clock: FrozenClock) -> FrozenClock:
    return frozen_clock


@dataclass(frozen=True)
class Operator:
    headers: dict[str, str]
    user_id: str


@pytest.fixture
def operator(app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox) -> Operator:
    """An operator with the recent sign-in operator calls need."""
    person, _ = register(client, mailbox, sms)
    granted = app.test_cli_runner().invoke(args=["operator-grant", person.email])
    assert granted.exit_code == 0, granted.output
    signed_in = login(client, person.email, person.password)
    assert signed_in.status_code == 200, signed_in.json
    headers = bearer(signed_in.json["token"])
    return Operator(headers, client.get("/api/v1/me", headers=headers).json["user_id"])


def authenticates(app: Flask, client_id: str, secret: str) -> bool:
    with app.app_context(), unit_of_work() as svc:
        return client_registry(svc).authenticate_secret(client_id, secret) is not None


def client_events(app: Flask) -> list[tuple[str, str | None, dict[str, Any]]]:
    with app.app_context(), unit_of_work() as svc:
        return [
            (e.event_type, e.actor_id, e.details)
            for e in svc.audit.events()
            if e.event_type.startswith("oauth_client")
        ]


def test_an_operator_registers_lists_reads_rotates_and_disables(
    app: Flask, client: FlaskClient, operator: Operator
):
    created = client.post(BASE, json=PARTNER, headers=operator.headers)
    assert created.status_code == 201, created.json
    registered, secret = created.json["client"], created.json["client_secret"]
    client_id = registered["client_id"]
    assert created.headers["Location"] == f"{BASE}/{client_id}"
    assert created.headers["Cache-Control"] == "no-store"
    assert isinstance(secret, str) and len(secret) >= 43
    assert authenticates(app, client_id, secret)
    assert registered["redirect_uris"] == PARTNER["redirect_uris"]
    assert registered["scopes"] == PARTNER["scopes"]
    assert (registered["require_pkce"], registered["has_secret"]) == (True, True)
    assert (registered["first_party"], registered["subject_type"]) == (False, "pairwise")
    assert registered["sector_identifier"] == "shop.example"
    assert (registered["disabled"], registered["disabled_at"]) == (False, None)

    listed = client.get(BASE, headers=operator.headers)
    assert listed.status_code == 200
    assert [c["client_id"] for c in listed.json["clients"]] == [client_id]
    shown = client.get(f"{BASE}/{client_id}", headers=operator.headers)
    assert shown.status_code == 200 and shown.json == registered

    rotated = client.post(f"{BASE}/{client_id}/secret", headers=operator.headers)
    assert rotated.status_code == 200, rotated.json
    new_secret = rotated.json["client_secret"]
    assert new_secret and new_secret != secret
    assert rotated.json["client"]["client_id"] == client_id
    assert not authenticates(app, client_id, secret)
    assert authenticates(app, client_id, new_secret)

    disabled = client.post(f"{BASE}/{client_id}/disable", headers=operator.headers)
    assert disabled.status_code == 200
    assert disabled.json["disabled"] is True and disabled.json["disabled_at"]
    assert not authenticates(app, client_id, new_secret)
    again = client.post(f"{BASE}/{client_id}/disable", headers=operator.headers)
    assert again.json["disabled_at"] == disabled.json["disabled_at"]
    # Still listed and readable, as disabled; its secret cannot be revived.
    [entry] = client.get(BASE, headers=operator.headers).json["clients"]
    assert (entry["client_id"], entry["disabled"]) == (client_id, True)
    assert client.get(f"{BASE}/{client_id}", headers=operator.headers).json["disabled"] is True
    assert_problem(
        client.post(f"{BASE}/{client_id}/secret", headers=operator.headers), 404, "not-found"
    )

    who = operator.user_id
    assert client_events(app) == [
        ("oauth_client_registered", who, {"client": client_id}),
        ("oauth_client_secret_rotated", who, {"client": client_id}),
        ("oauth_client_disabled", who, {"client": client_id}),
    ]


def test_a_secret_is_shown_once_and_never_again(
    app: Flask, client: FlaskClient, operator: Operator
):
    created = client.post(BASE, json=PARTNER, headers=operator.headers).json
    client_id, secret = created["client"]["client_id"], created["client_secret"]
    rotated = client.post(f"{BASE}/{client_id}/secret", headers=operator.headers).json[
        "client_secret"
    ]
    for response in (
        client.get(BASE, headers=operator.headers),
        client.get(f"{BASE}/{client_id}", headers=operator.headers),
        client.post(f"{BASE}/{client_id}/disable", headers=operator.headers),
    ):
        text = response.get_data(as_text=True)
        assert response.status_code == 200
        for hidden in (secret, rotated, hash_token(secret), hash_token(rotated), "secret_hash"):
            assert hidden not in text
    # Nor is it kept anywhere, the audit trail included.
    stored = database_text(app)
    assert secret not in stored and rotated not in stored


def test_a_first_party_public_client_has_no_secret_and_public_subjects(
    client: FlaskClient, operator: Operator
):
    created = client.post(BASE, json=MOBILE, headers=operator.headers)
    assert created.status_code == 201, created.json
    assert created.json["client_secret"] is None
    registered = created.json["client"]
    assert registered["has_secret"] is False
    assert (registered["first_party"], registered["subject_type"]) == (True, "public")
    assert registered["sector_identifier"] is None
    refused = client.post(f"{BASE}/{registered['client_id']}/secret", headers=operator.headers)
    assert_problem(refused, 409, "client-has-no-secret")


def test_several_redirect_hosts_with_a_named_sector(client: FlaskClient, operator: Operator):
    body = {
        **PARTNER,
        "redirect_uris": ["https://shop.example/cb", "https://m.shop-app.example/cb"],
        "sector_identifier": "Shop.Example",
    }
    created = client.post(BASE, json=body, headers=operator.headers)
    assert created.status_code == 201, created.json
    assert created.json["client"]["sector_identifier"] == "shop.example"


@pytest.mark.parametrize(
    ("changes", "slug", "expected"),
    [
        (
            {"redirect_uris": ["http://shop.example/cb", "https://shop.example/cb#x"]},
            "invalid-redirect-uri",
            {"#/redirect_uris/0", "#/redirect_uris/1"},
        ),
        (
            {"redirect_uris": ["https://shop.example/cb", "https://bank.example/cb"]},
            "invalid-client-metadata",
            {"#/sector_identifier"},
        ),
        (
            {"sector_identifier": "https://shop.example/", "scopes": ["openid", "admin"]},
            "invalid-client-metadata",
            {"#/sector_identifier", "#/scopes"},
        ),
        (
            {"client_type": "trusted", "subject_type": "anonymous"},
            "invalid-client-metadata",
            {"#/client_type", "#/subject_type"},
        ),
        (
            {"token_endpoint_auth_method": "none"},
            "invalid-client-metadata",
            {"#/token_endpoint_auth_method"},
        ),
        ({"name": "x" * 121}, "invalid-client-metadata", {"#/name"}),
        # Fields a caller may not set, and wrong JSON types: refused before the registry.
        ({"client_id": "0" * 32}, "validation-error", {"#/client_id"}),
        ({"secret_hash": hash_token("mine")}, "validation-error", {"#/secret_hash"}),
        ({"disabled_at": "2026-01-01T00:00:00Z"}, "validation-error", {"#/disabled_at"}),
        ({"first_party": "yes"}, "validation-error", {"#/first_party"}),
        ({"redirect_uris": "https://shop.example/cb"}, "validation-error", {"#/redirect_uris"}),
    ],
)
def test_bad_settings_are_refused_field_by_field_and_nothing_is_stored(
    app: Flask,
    client: FlaskClient,
    operator: Operator,
    runtime: Any,
    mailbox: Mailbox,
    sms: SmsOutbox,
    changes: dict[str, Any],
    slug: str,
    expected: set[str],
):
    with nothing_changes(app, runtime, mailbox, sms, "a refused client registration"):
        response = client.post(BASE, json={**PARTNER, **changes}, headers=operator.headers)
        problem = assert_problem(response, 422, slug)
    assert pointers(problem) == expected
    assert all(e["detail"] for e in problem["errors"])
    assert row_count(app, "oauth_clients") == 0


def test_everyone_but_operators_is_refused(
    app: Flask,
    client: FlaskClient,
    operator: Operator,
    runtime: Any,
    mailbox: Mailbox,
    sms: SmsOutbox,
):
    client_id = client.post(BASE, json=PARTNER, headers=operator.headers).json["client"][
        "client_id"
    ]
    _person, session = register(client, mailbox, sms)
    user = bearer(session["token"])
    calls = [
        ("get", BASE, None),
        ("post", BASE, PARTNER),
        ("get", f"{BASE}/{client_id}", None),
        ("post", f"{BASE}/{client_id}/secret", None),
        ("post", f"{BASE}/{client_id}/disable", None),
    ]
    with nothing_changes(app, runtime, mailbox, sms, "non-operators at the client API"):
        for method, path, body in calls:
            as_user = client.open(path, method=method.upper(), json=body, headers=user)
            assert_problem(as_user, 403, "operator-only")
            anonymous = client.open(path, method=method.upper(), json=body)
            assert_problem(anonymous, 401, "authentication-required")
            assert client_id not in as_user.get_data(as_text=True)


def test_an_operator_needs_a_recent_sign_in(
    client: FlaskClient, operator: Operator, clock: FrozenClock
):
    clock.advance(minutes=16)
    assert_problem(
        client.get(BASE, headers=operator.headers), 401, "insufficient-user-authentication"
    )


@pytest.mark.parametrize(
    "client_id",
    [
        "0" * 32,  # well-formed, unknown
        "0" * 31,
        "0" * 33,
        "A" * 32,  # ids are lower-case hex
        "%00" + "0" * 29,
        "x" * 5000,
    ],
)
def test_an_unknown_or_malformed_client_id_is_a_404(
    client: FlaskClient, operator: Operator, client_id: str
):
    for method, path in (
        ("GET", f"{BASE}/{client_id}"),
        ("POST", f"{BASE}/{client_id}/secret"),
        ("POST", f"{BASE}/{client_id}/disable"),
    ):
        response = client.open(path, method=method, headers=operator.headers)
        assert_problem(response, 404)
