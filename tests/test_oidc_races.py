"""Single-use credentials under concurrency: one authorisation code, one
refresh token, presented by 20 clients at once (PostgreSQL in CI, where the
requests really overlap; SQLite serialises them, and the expectations are the
same)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from tests.helpers import race, register
from tests.oidc_helpers import (
    FIRST_PARTY,
    add_client,
    exchange,
    get_code,
    introspect,
    refresh,
)

RACERS = 20


def _grant_revocations(app: Flask) -> list[tuple[Any, ...]]:
    engine = app.extensions["privid.engine"]
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT details FROM audit_events WHERE event_type = 'oidc.grant_revoked'")
        ).all()
    return [tuple(row) for row in rows]


def _revoked_reasons(app: Flask) -> list[str | None]:
    engine = app.extensions["privid.engine"]
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT revoke_reason FROM oauth_grants")).all()
    return [row[0] for row in rows]


def test_twenty_concurrent_redemptions_of_one_code_have_one_winner(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    register(client, mailbox, sms, token_delivery="cookie")
    rp = add_client(app, FIRST_PARTY)
    code = get_code(client, rp, scope="openid offline_access")["code"]
    answers = race(app, RACERS, lambda _, own: exchange(own, rp, code))
    statuses = Counter(a.status_code for a in answers)
    odd = [a.data[:300] for a in answers if a.status_code not in (200, 400)]
    assert statuses == {200: 1, 400: RACERS - 1}, (statuses, odd)
    assert {a.json["error"] for a in answers if a.status_code == 400} == {"invalid_grant"}
    # Every loser presented a code that had been used: RFC 6749 section
    # 4.1.2 has the provider revoke what the code issued, so the winner's
    # tokens end as well. The provider cannot tell the client from a thief
    # racing it; ending the grant is the safe answer, and the grant is
    # revoked once, with one audit event.
    winner = next(a.json for a in answers if a.status_code == 200)
    for token in (winner["access_token"], winner["refresh_token"]):
        assert introspect(client, rp, token).json == {"active": False}
    assert _revoked_reasons(app) == ["code_reused"]
    assert len(_grant_revocations(app)) == 1


def test_twenty_concurrent_refreshes_of_one_token_have_one_winner_then_the_family_ends(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    register(client, mailbox, sms, token_delivery="cookie")
    rp = add_client(app, FIRST_PARTY)
    first = exchange(client, rp, get_code(client, rp, scope="openid offline_access")["code"])
    assert first.status_code == 200
    token = first.json["refresh_token"]
    answers = race(app, RACERS, lambda _, own: refresh(own, rp, token))
    statuses = Counter(a.status_code for a in answers)
    odd = [a.data[:300] for a in answers if a.status_code not in (200, 400)]
    assert statuses == {200: 1, 400: RACERS - 1}, (statuses, odd)
    assert {a.json["error"] for a in answers if a.status_code == 400} == {"invalid_grant"}
    # The 19 losers presented a refresh token that had just been rotated:
    # that is reuse (RFC 9700 section 4.14.2), indistinguishable from a thief
    # racing the client, so the whole family is revoked, the winner's new
    # tokens included. A client must not refresh the same token concurrently.
    winner = next(a.json for a in answers if a.status_code == 200)
    for dead in (winner["access_token"], winner["refresh_token"], first.json["access_token"]):
        assert introspect(client, rp, dead).json == {"active": False}
    assert refresh(client, rp, winner["refresh_token"]).status_code == 400
    assert _revoked_reasons(app) == ["refresh_reused"]
    assert len(_grant_revocations(app)) == 1
