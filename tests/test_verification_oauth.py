"""OAuth partners see a verified identity only through the ``identity`` scope,
as the level and the day, never the document; and only while the person
shares with that partner."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from app.cli import unit_of_work
from app.models import Channel, Decision
from tests.helpers import bearer, register
from tests.oidc_helpers import PARTNER, add_client, exchange, get_code
from tests.verification_helpers import ZHANG_NUMBER, verified_browser

IDENTITY_PARTNER = replace(PARTNER, scopes=(*PARTNER.scopes, "identity"))


def userinfo(client: Any, access_token: str) -> dict[str, Any]:
    answer = client.get("/oauth/userinfo", headers=bearer(access_token))
    assert answer.status_code == 200, answer.json
    return dict(answer.json)


def test_the_identity_scope_gives_level_and_day_only(app, client, mailbox, sms):
    verified_browser(client, mailbox, sms)
    rp = add_client(app, IDENTITY_PARTNER)
    page = client.get(
        f"/oauth/authorize?response_type=code&client_id={rp.client_id}"
        f"&redirect_uri={rp.redirect_uri}&scope=openid%20identity&state=s"
    )
    assert "Your real-name verification level (not your ID number)" in page.get_data(as_text=True)
    back = get_code(client, rp, scope="openid identity")
    tokens = exchange(client, rp, back["code"]).json
    info = userinfo(client, tokens["access_token"])
    assert info["identity_level"] == "L1"
    assert len(info["identity_verified_on"]) == 10  # a day, not an instant
    assert set(info) == {"sub", "identity_level", "identity_verified_on"}
    assert ZHANG_NUMBER not in str(info) and "110105" not in str(info)


def test_without_the_scope_nothing_of_the_identity_is_given(app, client, mailbox, sms):
    verified_browser(client, mailbox, sms)
    rp = add_client(app, IDENTITY_PARTNER)
    back = get_code(client, rp, scope="openid profile")
    info = userinfo(client, exchange(client, rp, back["code"]).json["access_token"])
    assert "identity_level" not in info and "identity_verified_on" not in info


def test_no_sharing_consent_for_the_client_no_identity(app, client, mailbox, sms):
    verified_browser(client, mailbox, sms)
    rp = add_client(app, IDENTITY_PARTNER)
    back = get_code(client, rp, scope="openid identity")
    tokens = exchange(client, rp, back["code"]).json
    # The ledger says the person no longer shares with this partner (as if
    # the withdrawal's other effects had not run): the claims stop at once.
    with app.app_context(), unit_of_work() as svc:
        from app.models import User
        from app.services.context import RequestContext

        user = svc.db.query(User).one()
        context = RequestContext("203.0.113.0/24", "test", "x")
        svc.consent.decide_for_client(
            user.id, "partner_sharing", rp.client_id, Decision.REFUSED, context, Channel.SETTINGS
        )
    info = userinfo(client, tokens["access_token"])
    assert "identity_level" not in info and "identity_verified_on" not in info


def test_an_unverified_person_gets_no_identity_claims(app, client, mailbox, sms):
    register(client, mailbox, sms, token_delivery="cookie")
    rp = add_client(app, IDENTITY_PARTNER)
    back = get_code(client, rp, scope="openid identity")
    info = userinfo(client, exchange(client, rp, back["code"]).json["access_token"])
    assert set(info) == {"sub"}
