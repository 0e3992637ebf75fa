"""A material policy change that takes effect while a person is signed in
makes their session owe the consent step: the authorisation endpoint must
send them there (or answer prompt=none with interaction_required) before any
client, the platform's own included, gets a code."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import publish_policy, register, row_count
from tests.oidc_helpers import FIRST_PARTY, add_client, authorize_query, redirect_params


def material_change(app: Flask) -> None:
    publish_policy(
        app,
        version="2026-12",
        effective_at=datetime.now(UTC),
        material=True,
        changes="New terms for analytics.",
        affected_purposes=["analytics"],
    )


def test_a_material_change_during_the_session_sends_the_person_to_the_consent_step(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    register(client, mailbox, sms, token_delivery="cookie")
    rp = add_client(app, FIRST_PARTY)
    assert "code" in redirect_params(client.get(authorize_query(rp)))
    material_change(app)

    request = authorize_query(rp)
    asked = client.get(request)
    assert asked.status_code == 303, asked.status_code
    target = urlsplit(asked.headers["Location"])
    assert target.path == "/consent"
    assert parse_qs(target.query)["next"] == [request]
    codes = row_count(app, "oauth_codes")
    silent = redirect_params(client.get(authorize_query(rp, prompt="none")))
    assert silent["error"] == "interaction_required" and "code" not in silent
    assert row_count(app, "oauth_codes") == codes
