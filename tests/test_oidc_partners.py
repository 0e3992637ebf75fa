"""Partner approvals from the user's side (issue 10): listed and revoked through
the JSON API and the privacy centre's partners page; withdrawing partner
sharing as a whole; the export; cancellation; an operator disabling a client.
Each way of ending an approval must end the partner's tokens at once."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.cli import unit_of_work
from app.models import AuditEvent
from app.oidc import token_store
from app.oidc.client_models import OAuthClient
from app.oidc.clients import client_registry
from app.oidc.grant_models import ClientAuthorization, TokenGrant
from app.oidc.retention import ENDED_GRANT_KEPT, purge
from app.security.tokens import hash_token
from tests.helpers import (
    HIGH_LIMITS,
    account_csrf,
    assert_problem,
    bearer,
    login,
    other_browser,
    race,
    register,
)
from tests.oidc_helpers import (
    FIRST_PARTY,
    PARTNER,
    RegisteredClient,
    add_client,
    authorize_query,
    exchange,
    get_code,
    refresh,
)

SCOPES = "openid profile email offline_access"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


@dataclass
class Person:
    browser: FlaskClient  # cookie session: the authorisation requests and the pages
    token: str  # a bearer session of the same account: the JSON API
    email: str
    password: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)


@pytest.fixture
def person(app: Flask, client: FlaskClient, mailbox: Any, sms: Any) -> Person:
    who, _ = register(client, mailbox, sms, token_delivery="cookie")
    api = other_browser(app)
    signed_in = login(api, who.email, who.password)
    assert signed_in.status_code == 200, signed_in.json
    return Person(client, signed_in.json["token"], who.email, who.password)


@dataclass
class Tokens:
    access: str
    refresh: str


def tokens_for(person: Person, rp: RegisteredClient) -> Tokens:
    """Approve ``rp`` (the page is shown when needed) and exchange the code."""
    back = get_code(person.browser, rp, scope=SCOPES)
    answer = exchange(other_browser(person.browser.application), rp, back["code"])
    assert answer.status_code == 200, answer.json
    return Tokens(answer.json["access_token"], answer.json["refresh_token"])


def active(app: Flask, rp: RegisteredClient, token: str) -> bool:
    answer = other_browser(app).post("/oauth/introspect", data={"token": token}, headers=rp.basic)
    assert answer.status_code == 200, answer.json
    return bool(answer.json["active"])


def userinfo_status(app: Flask, access: str) -> int:
    return other_browser(app).get("/oauth/userinfo", headers=bearer(access)).status_code


def assert_dead(app: Flask, rp: RegisteredClient, tokens: Tokens) -> None:
    assert not active(app, rp, tokens.access)
    assert not active(app, rp, tokens.refresh)
    assert userinfo_status(app, tokens.access) == 401
    refreshed = refresh(other_browser(app), rp, tokens.refresh)
    assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"


def assert_alive(app: Flask, rp: RegisteredClient, tokens: Tokens) -> None:
    assert active(app, rp, tokens.access) and active(app, rp, tokens.refresh)
    assert userinfo_status(app, tokens.access) == 200


def partner_sharing_records(person: Person, client_id: str) -> list[str]:
    app = person.browser.application
    history = other_browser(app).get("/api/v1/me/consent/history", headers=person.auth)
    assert history.status_code == 200, history.json
    return [
        r["decision"]
        for r in history.json["records"]
        if r["purpose"] == "partner_sharing" and r.get("client_id") == client_id
    ]


def asks_again(person: Person, rp: RegisteredClient) -> bool:
    """The next authorisation request shows the approval page again."""
    answer = person.browser.get(authorize_query(rp, scope=SCOPES))
    return answer.status_code == 200 and "Partner shop" in answer.get_data(as_text=True)


@pytest.fixture
def ended(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[list[str], str]]]:
    """What the back-channel logout hook is told: (client ids, reason) per call."""
    calls: list[tuple[list[str], str]] = []

    def hook(_svc: Any) -> Any:
        def tell(grants: Sequence[TokenGrant], reason: str) -> None:
            calls.append(([g.client_id for g in grants], reason))

        return tell

    monkeypatch.setattr(token_store, "backchannel_logout", hook)
    yield calls


# -- listing -------------------------------------------------------------------------


def test_the_api_lists_each_approved_partner_with_what_it_receives(
    app: Flask, person: Person
) -> None:
    rp = add_client(app)
    first_party = add_client(app, FIRST_PARTY)
    tokens_for(person, rp)
    tokens_for(person, first_party)
    answer = other_browser(app).get("/api/v1/me/partners", headers=person.auth)
    assert answer.status_code == 200, answer.json
    (partner,) = answer.json["partners"]  # the platform's own app needs no approval
    assert partner["client_id"] == rp.client_id and partner["name"] == "Partner shop"
    assert partner["scopes"] == ["email", "offline_access", "openid", "profile"]
    assert partner["claims"] == ["email", "email_verified", "name"]
    assert partner["live_grants"] == 1 and partner["last_used_at"] and partner["granted_at"]


def test_the_partner_list_needs_a_sign_in(client: FlaskClient) -> None:
    assert_problem(client.get("/api/v1/me/partners"), 401, "authentication-required")


# -- revoking through the API -------------------------------------------------------


def test_revoking_through_the_api_ends_the_tokens_records_it_and_asks_again(
    app: Flask, person: Person, ended: list[tuple[list[str], str]]
) -> None:
    rp = add_client(app)
    tokens = tokens_for(person, rp)
    assert_alive(app, rp, tokens)
    api = other_browser(app)

    answer = api.delete(f"/api/v1/me/partners/{rp.client_id}", headers=person.auth)
    assert answer.status_code == 204
    assert_dead(app, rp, tokens)
    assert partner_sharing_records(person, rp.client_id) == ["granted", "withdrawn"]
    assert ended == [([rp.client_id], "partner_revoked")]
    assert api.get("/api/v1/me/partners", headers=person.auth).json["partners"] == []
    assert asks_again(person, rp)
    # Again: nothing left to revoke, and nothing more recorded.
    again = api.delete(f"/api/v1/me/partners/{rp.client_id}", headers=person.auth)
    assert_problem(again, 404, "not-found")
    assert partner_sharing_records(person, rp.client_id) == ["granted", "withdrawn"]


@pytest.mark.parametrize("client_id", ["0" * 32, "x" * 32, "%00" + "a" * 31, "a" * 300])
def test_revoking_an_unknown_or_malformed_partner_is_a_404_that_changes_nothing(
    app: Flask, person: Person, client_id: str
) -> None:
    rp = add_client(app)
    tokens = tokens_for(person, rp)
    answer = other_browser(app).delete(f"/api/v1/me/partners/{client_id}", headers=person.auth)
    assert_problem(answer, 404)
    assert_alive(app, rp, tokens)


def test_another_account_cannot_revoke_my_partner(
    app: Flask, person: Person, mailbox: Any, sms: Any
) -> None:
    rp = add_client(app)
    tokens = tokens_for(person, rp)
    stranger = other_browser(app)
    _, session = register(stranger, mailbox, sms)
    answer = stranger.delete(
        f"/api/v1/me/partners/{rp.client_id}", headers=bearer(session["token"])
    )
    assert_problem(answer, 404, "not-found")
    assert_alive(app, rp, tokens)


def test_two_revocations_at_once_record_one_withdrawal(app: Flask, person: Person) -> None:
    rp = add_client(app)
    tokens = tokens_for(person, rp)
    statuses = race(
        app,
        2,
        lambda _i, own: (
            own.delete(f"/api/v1/me/partners/{rp.client_id}", headers=person.auth).status_code
        ),
    )
    assert sorted(statuses) == [204, 404]
    assert partner_sharing_records(person, rp.client_id) == ["granted", "withdrawn"]
    assert_dead(app, rp, tokens)


# -- the privacy centre's partners page ---------------------------------------------


def test_the_privacy_centre_links_to_the_partners_page_which_lists_them(
    app: Flask, person: Person
) -> None:
    rp = add_client(app)
    tokens_for(person, rp)
    centre = person.browser.get("/privacy").get_data(as_text=True)
    assert 'href="/privacy/partners"' in centre
    page = person.browser.get("/privacy/partners")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Partner shop" in html and "Your email address" in html
    assert f"/privacy/partners/{rp.client_id}/revoke" in html
    assert "Active sign-ins: 1" in html


def test_the_partners_page_speaks_chinese(app: Flask, person: Person) -> None:
    rp = add_client(app)
    tokens_for(person, rp)
    html = person.browser.get("/privacy/partners", headers={"Accept-Language": "zh-CN"}).get_data(
        as_text=True
    )
    assert "我授权的合作伙伴" in html and "撤销授权：Partner shop" in html
    assert "您的电子邮箱地址" in html and "有效登录：1" in html
    assert "Revoke access" not in html


def test_revoking_on_the_page_needs_the_csrf_token_then_ends_the_tokens(
    app: Flask, person: Person, ended: list[tuple[list[str], str]]
) -> None:
    rp = add_client(app)
    tokens = tokens_for(person, rp)
    path = f"/privacy/partners/{rp.client_id}/revoke"

    forged = person.browser.post(path, data={})
    assert forged.status_code == 403
    assert_alive(app, rp, tokens)

    token = account_csrf(person.browser, "/privacy/partners")
    answer = person.browser.post(path, data={"csrf_token": token})
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith("/privacy/partners?done=revoked")
    assert_dead(app, rp, tokens)
    assert partner_sharing_records(person, rp.client_id) == ["granted", "withdrawn"]
    assert ended == [([rp.client_id], "partner_revoked")]
    after = person.browser.get("/privacy/partners?done=revoked").get_data(as_text=True)
    assert "access has ended" in after and "You have not approved any partner." in after
    # Posting it again (a replay) finds nothing and records nothing.
    replay = person.browser.post(path, data={"csrf_token": token})
    assert replay.status_code == 404
    assert "not among your approvals" in replay.get_data(as_text=True)
    assert partner_sharing_records(person, rp.client_id) == ["granted", "withdrawn"]
    assert asks_again(person, rp)


# -- withdrawing partner sharing as a whole -------------------------------------------


def test_withdrawing_partner_sharing_ends_every_partner_but_not_the_platforms_own_apps(
    app: Flask, person: Person, ended: list[tuple[list[str], str]]
) -> None:
    shop = add_client(app)
    other = add_client(app, PARTNER, name="Partner travel")
    own = add_client(app, FIRST_PARTY)
    shop_tokens, other_tokens, own_tokens = (tokens_for(person, rp) for rp in (shop, other, own))
    api = other_browser(app)

    answer = api.post("/api/v1/me/consent/partner_sharing/withdraw", headers=person.auth)
    assert answer.status_code == 200, answer.json
    withdrawn = {(r["client_id"], r["decision"]) for r in answer.json["records"]}
    assert withdrawn == {(shop.client_id, "withdrawn"), (other.client_id, "withdrawn")}
    assert_dead(app, shop, shop_tokens)
    assert_dead(app, other, other_tokens)
    assert_alive(app, own, own_tokens)
    assert sorted(c for calls, _ in ended for c in calls) == sorted(
        [shop.client_id, other.client_id]
    )
    assert api.get("/api/v1/me/partners", headers=person.auth).json["partners"] == []
    assert asks_again(person, shop)
    # Nothing left granted: a second withdrawal is refused and records nothing.
    again = api.post("/api/v1/me/consent/partner_sharing/withdraw", headers=person.auth)
    assert_problem(again, 409, "not-granted")
    assert partner_sharing_records(person, shop.client_id) == ["granted", "withdrawn"]


def test_withdrawing_partner_sharing_on_the_page(app: Flask, person: Person) -> None:
    shop = add_client(app)
    tokens = tokens_for(person, shop)
    token = account_csrf(person.browser, "/privacy/partners")
    answer = person.browser.post("/privacy/partners/withdraw", data={"csrf_token": token})
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith("/privacy/partners?done=withdrawn")
    assert_dead(app, shop, tokens)
    again = person.browser.post("/privacy/partners/withdraw", data={"csrf_token": token})
    assert again.status_code == 409
    assert "nothing to withdraw" in again.get_data(as_text=True)


# -- export ------------------------------------------------------------------------------


def test_the_export_holds_approvals_and_token_metadata_never_a_token(
    app: Flask, person: Person
) -> None:
    rp = add_client(app)
    tokens = tokens_for(person, rp)
    rotated = refresh(other_browser(app), rp, tokens.refresh)
    assert rotated.status_code == 200
    answer = other_browser(app).post("/api/v1/me/export", headers=person.auth)
    assert answer.status_code == 200, answer.json
    section = answer.json["partners"]
    (approval,) = section["approvals"]
    assert approval["client_id"] == rp.client_id and approval["client_name"] == "Partner shop"
    assert "email" in approval["scopes"] and approval["granted_at"]
    (grant,) = section["grants"]
    assert grant["client_id"] == rp.client_id and grant["revoked_at"] is None
    kinds = sorted(t["kind"] for t in grant["tokens"])
    assert kinds == ["access", "access", "refresh", "refresh"]
    assert any(t["used_at"] for t in grant["tokens"])  # the rotated refresh token
    raw = json.dumps(answer.json)
    issued = [
        tokens.access,
        tokens.refresh,
        rotated.json["access_token"],
        rotated.json["refresh_token"],
    ]
    for value in issued:
        assert value not in raw and hash_token(value) not in raw


# -- cancellation ----------------------------------------------------------------------


def test_cancelling_the_account_ends_every_grant_at_once(
    app: Flask, person: Person, ended: list[tuple[list[str], str]]
) -> None:
    shop = add_client(app)
    own = add_client(app, FIRST_PARTY)
    shop_tokens, own_tokens = tokens_for(person, shop), tokens_for(person, own)
    cancelled = other_browser(app).post(
        "/api/v1/me/cancellation", json={"confirm": "cancel my account"}, headers=person.auth
    )
    assert cancelled.status_code == 200, cancelled.json
    assert_dead(app, shop, shop_tokens)
    assert_dead(app, own, own_tokens)
    # The hook heard of both grants before the rows went with the account.
    assert ended == [([shop.client_id, own.client_id], "account_cancelled")]
    with app.app_context(), unit_of_work() as svc:
        assert svc.db.scalars(select(TokenGrant)).all() == []
        assert svc.db.scalars(select(ClientAuthorization)).all() == []


# -- an operator disabling a client ---------------------------------------------------


def test_disabling_a_client_ends_its_grants_and_is_audited(
    app: Flask, person: Person, ended: list[tuple[list[str], str]]
) -> None:
    shop = add_client(app)
    other = add_client(app, PARTNER, name="Partner travel")
    shop_tokens, other_tokens = tokens_for(person, shop), tokens_for(person, other)
    with app.app_context(), unit_of_work() as svc:
        client_registry(svc).disable(shop.client_id)
    assert userinfo_status(app, shop_tokens.access) == 401
    assert_alive(app, other, other_tokens)
    assert ended == [([shop.client_id], "client_disabled")]
    with app.app_context(), unit_of_work() as svc:
        grants = svc.db.scalars(select(TokenGrant).where(TokenGrant.client_id == shop.client_id))
        assert [(g.revoked_at is not None, g.revoke_reason) for g in grants] == [
            (True, "client_disabled")
        ]
        assert svc.db.get(OAuthClient, shop.client_id).disabled  # type: ignore[union-attr]
        # A second disable changes nothing and ends nothing more.
        client_registry(svc).disable(shop.client_id)
    assert len(ended) == 1
    with app.app_context(), unit_of_work() as svc:
        events = svc.db.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "oidc.grant_revoked")
        ).all()
        assert [(e.details["client_id"], e.details["reason"]) for e in events] == [
            (shop.client_id, "client_disabled")
        ]


def test_a_disabled_partner_cannot_be_used_to_sign_in_again(app: Flask, person: Person) -> None:
    shop = add_client(app)
    tokens_for(person, shop)
    with app.app_context(), unit_of_work() as svc:
        client_registry(svc).disable(shop.client_id)
    answer = person.browser.get(authorize_query(shop, scope=SCOPES))
    assert answer.status_code == 400 and "Location" not in answer.headers


# -- retention -------------------------------------------------------------------------


def test_ended_grants_and_expired_tokens_go_on_a_retention_run_after_a_while(
    app: Flask, person: Person
) -> None:
    shop = add_client(app)
    travel = add_client(app, PARTNER, name="Partner travel")
    tokens_for(person, shop)
    kept = tokens_for(person, travel)
    assert (
        other_browser(app)
        .delete(f"/api/v1/me/partners/{shop.client_id}", headers=person.auth)
        .status_code
        == 204
    )
    with app.app_context(), unit_of_work() as svc:
        # The run the CLI makes includes the provider's tables; nothing is old yet.
        counts = svc.retention.run()
        assert {k: counts[k] for k in ("oauth_codes", "oauth_tokens", "oauth_grants")} == {
            "oauth_codes": 0, "oauth_tokens": 0, "oauth_grants": 0
        }  # fmt: skip
        later = svc.runtime.clock.now() + ENDED_GRANT_KEPT + timedelta(days=1)
        purged = purge(svc.db, later)
        assert purged["oauth_grants"] == 1  # the revoked one; the live one stays
        assert purged["oauth_codes"] == 2 and purged["oauth_tokens"] == 2
        left = svc.db.scalars(select(TokenGrant)).all()
        assert [g.client_id for g in left] == [travel.client_id]
        assert purge(svc.db, later) == {"oauth_codes": 0, "oauth_tokens": 0, "oauth_grants": 0}
    # The live partner's grant is untouched: its refresh token still works.
    assert refresh(other_browser(app), travel, kept.refresh).status_code == 200
