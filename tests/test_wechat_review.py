"""Hostile review of WeChat sign-in (issue 11): an attacker's WeChat account
linked to a victim's account without the victim's full sign-in, and the other
attacks of the review, each as the person or the attacker would notice it."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from app.clock import FrozenClock
from tests.helpers import bearer, enable_totp, register, row_count
from tests.wechat_helpers import APP_APPID, app_login, fake_wechat, settings_overrides, wechat

__all__ = ["fake_wechat", "settings_overrides", "wechat"]  # fixtures

SECOND_FACTOR = "/api/v1/login/second-factor"


@pytest.fixture
def clock(frozen_clock: FrozenClock) -> FrozenClock:
    return frozen_clock  # TOTP codes at known steps


def test_a_password_alone_does_not_link_wechat_to_an_account_with_a_second_factor(
    app, client: FlaskClient, mailbox, sms, wechat, clock
):
    person, session = register(client, mailbox, sms)
    totp, _ = enable_totp(client, session, at=clock.now())
    clock.advance(seconds=30)
    # The attacker has the victim's password, not the authenticator app.
    pending = app_login(client, wechat, "bob")
    linked = client.post(
        "/api/v1/login/wechat/link/password",
        json={
            "ticket": pending.json["ticket"],
            "identifier": person.email,
            "password": person.password,
        },
    )
    assert linked.status_code == 202, linked.json
    assert linked.json["methods"] == ["totp", "recovery_code"]
    # Walking away at the second factor leaves the attacker's WeChat unlinked.
    assert row_count(app, "linked_identities") == 0
    again = app_login(client, wechat, "bob")
    assert again.status_code == 202 and again.json["status"] == "link_required", again.json
    # The owner who passes the second factor has WeChat linked.
    done = client.post(
        SECOND_FACTOR, json={"ticket": linked.json["ticket"], "totp_code": totp.at(clock.now())}
    )
    assert done.status_code == 200, done.json
    assert done.json["amr"] == ["fed", "pwd", "otp", "mfa"]
    assert row_count(app, "linked_identities") == 1
    listed = client.get("/api/v1/me/wechat", headers=bearer(done.json["token"]))
    assert [row["app_id"] for row in listed.json["linked"]] == [APP_APPID]
    clock.advance(seconds=30)
    # From now on bob's WeChat signs in to that account (its second factor still asked).
    later = app_login(client, wechat, "bob")
    assert later.status_code == 202 and later.json["methods"] == ["totp", "recovery_code"]
