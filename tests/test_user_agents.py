"""A User-Agent header is whatever the client says, so it can carry a name or a
phone number. Only a parsed summary (browser family, OS family, device type)
may be kept: in sessions, device records and the new-device email."""

from __future__ import annotations

import json

import pytest

from tests.helpers import (
    HIGH_LIMITS,
    IPHONE_SAFARI,
    baseline_consent,
    bearer,
    database_text,
    login,
    register,
)

NAME, PHONE = "ZhangWei", "13812345678"
# An unknown client that is nothing but personal data, and a real-looking
# Android browser whose device-model slot carries it (parsers echo that slot).
UNKNOWN_CLIENT = f"{NAME} {PHONE} zhangwei@example.org"
ANDROID_WITH_MODEL = (
    f"Mozilla/5.0 (Linux; Android 14; {NAME} {PHONE} Build/UQ1A) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.6478.71 Mobile Safari/537.36"
)
BOT_WITH_NAME = f"Mozilla/5.0 (compatible; {NAME}Bot/2.1; +tel:{PHONE})"
NEW_SIGN_IN = "New sign-in to your privid account"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


def _client(app, user_agent: str):
    other = app.test_client()
    other.environ_base["wsgi.url_scheme"] = "https"
    other.environ_base["HTTP_USER_AGENT"] = user_agent
    return other


@pytest.mark.parametrize("crafted", [UNKNOWN_CLIENT, ANDROID_WITH_MODEL, BOT_WITH_NAME])
def test_a_crafted_user_agent_never_reaches_the_database_the_lists_or_the_email(
    app, runtime, client, mailbox, sms, crafted
):
    client.environ_base["HTTP_USER_AGENT"] = IPHONE_SAFARI
    person, _ = register(client, mailbox, sms, consent=baseline_consent(security="granted"))
    stranger = _client(app, crafted)
    signed_in = login(stranger, person.email, person.password)
    assert signed_in.status_code == 200, signed_in.json
    auth = bearer(signed_in.json["token"])

    sessions = client.get("/api/v1/me/sessions", headers=auth)
    devices = client.get("/api/v1/me/devices", headers=auth)
    assert sessions.status_code == devices.status_code == 200
    runtime.dispatcher.drain()
    notices = [m for m in mailbox.to(person.email) if str(m["Subject"]) == NEW_SIGN_IN]
    assert len(notices) == 1, "a sign-in from a new device is announced"
    email = notices[0].get_payload(decode=True).decode()

    shown = {
        "database": database_text(app),
        "sessions list": json.dumps(sessions.json, ensure_ascii=False),
        "devices list": json.dumps(devices.json, ensure_ascii=False),
        "new-device email": email,
    }
    for where, content in shown.items():
        for personal in (NAME, PHONE, "zhangwei@"):
            assert personal not in content, f"{personal!r} from the User-Agent is in the {where}"


@pytest.mark.parametrize(
    ("user_agent", "summary"),
    [
        (ANDROID_WITH_MODEL, "Chrome on Android"),
        (UNKNOWN_CLIENT, "unknown device"),
        (BOT_WITH_NAME, "automated client"),
    ],
)
def test_the_session_shows_the_parsed_summary(app, client, mailbox, sms, user_agent, summary):
    person, _ = register(client, mailbox, sms, consent=baseline_consent(security="granted"))
    signed_in = login(_client(app, user_agent), person.email, person.password)
    assert signed_in.status_code == 200, signed_in.json
    listed = client.get("/api/v1/me/sessions", headers=bearer(signed_in.json["token"])).json
    mine = next(s for s in listed["sessions"] if s["session_id"] == signed_in.json["session_id"])
    assert mine["device"] == summary
