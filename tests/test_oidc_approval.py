"""The partner's approval page between a sign-in and the code: what a
person does on it must not send them round again."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import Person, register, row_count
from tests.oidc_helpers import (
    PARTNER,
    add_client,
    approval_action,
    approval_fields,
    approve,
    authorize_query,
    redirect_params,
)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SESSION_COOKIE = "__Host-privid_session"


def sign_in_at(client: FlaskClient, signin_url: str, person: Person) -> Any:
    """The sign-in page the provider sent the browser to, filled in and sent."""
    form = client.get(signin_url)
    token = CSRF.search(form.get_data(as_text=True))
    assert token
    next_path = parse_qs(urlsplit(signin_url).query)["next"][0]
    return client.post(
        "/signin",
        data={"csrf_token": token[1], "identifier": person.email,
              "password": person.password, "next": next_path},
    )  # fmt: skip


@pytest.mark.parametrize("asked", [{"prompt": "login"}, {"max_age": "0"}])
def test_a_sign_in_asked_for_counts_for_the_approval_that_follows(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, asked: dict[str, str]
) -> None:
    person, _ = register(client, mailbox, sms, token_delivery="cookie")
    rp = add_client(app, PARTNER)
    to_signin = client.get(authorize_query(rp, **asked))
    assert to_signin.status_code == 303 and to_signin.headers["Location"].startswith("/signin?")
    signed_in = sign_in_at(client, to_signin.headers["Location"], person)
    assert signed_in.status_code == 303
    page = client.get(signed_in.headers["Location"])
    assert page.status_code == 200 and "Partner shop" in page.get_data(as_text=True)
    # One sign-in was asked for, and made: the approval goes straight back.
    assert "code" in redirect_params(approve(client, page.get_data(as_text=True)))


def test_a_forged_login_after_note_on_the_answer_is_ignored(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    register(client, mailbox, sms, token_delivery="cookie")
    rp = add_client(app, PARTNER)
    page = client.get(authorize_query(rp))
    assert page.status_code == 200
    # The answer now asks for a fresh sign-in and claims one with a made-up note.
    fields = approval_fields(page.get_data(as_text=True))
    fields.update(decision="approve", prompt="login", privid_login_after="99999999999999.forged")
    answer = client.post(approval_action(page.get_data(as_text=True)), data=fields)
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/signin?")


def test_an_answer_after_the_session_ended_signs_in_and_asks_again(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    person, _ = register(client, mailbox, sms, token_delivery="cookie")
    rp = add_client(app, PARTNER)
    request = authorize_query(rp)
    html = client.get(request).get_data(as_text=True)
    client.delete_cookie(SESSION_COOKIE)  # the session ended while the page was open
    answer = approve(client, html)
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/signin?")
    signed_in = sign_in_at(client, answer.headers["Location"], person)
    assert signed_in.status_code == 303
    # Back to the same request, the approval page again; nothing was approved.
    again = client.get(signed_in.headers["Location"])
    assert again.status_code == 303 and again.headers["Location"] == request
    assert row_count(app, "client_authorizations") == 0
    page = client.get(again.headers["Location"])
    assert page.status_code == 200 and "Partner shop" in page.get_data(as_text=True)
    assert "code" in redirect_params(approve(client, page.get_data(as_text=True)))
