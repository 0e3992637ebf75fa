"""The audit trail is hash-chained, free of personal data, and tampering is caught."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from app.models import AuditEvent
from tests.conftest import PG_URL
from tests.helpers import baseline_consent, bearer, enrol, login, passkey_sign_in, register
from tests.soft_authenticator import SoftAuthenticator


def _events(app):
    with app.extensions["privid.session_factory"]() as db:
        return db.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars().all()


def test_flows_leave_sealed_events_without_personal_data(app, client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    assert login(client, person.email, "wrong-password-here").status_code == 401
    assert login(client, person.email, person.password).status_code == 200
    client.post("/api/v1/logout", headers=bearer(session["token"]))

    events = _events(app)
    kinds = [e.event_type for e in events]
    for expected in ("registration.completed", "login.failed", "login.succeeded", "logout"):
        assert expected in kinds
    assert len({e.hash for e in events}) == len(events)
    assert all(e.seal is None for e in events)  # not sealed yet
    result = app.test_cli_runner().invoke(args=["audit-verify"])
    assert result.exit_code == 0 and f"sealed {len(events)} new events in seal 1" in result.output
    assert {e.seal for e in _events(app)} == {1}
    dump = json.dumps(
        [[e.event_type, e.details, e.ip_prefix, e.user_id] for e in events], ensure_ascii=False
    )
    for secret in (person.email, person.phone, person.phone[3:], person.full_name, person.password):
        assert secret not in dump
    failed = next(e for e in events if e.event_type == "login.failed")
    assert failed.outcome == "failure" and failed.details["reason"] == "invalid_credentials"


def test_cli_names_the_first_tampered_event(app, client, mailbox, sms):
    register(client, mailbox, sms)
    result = app.test_cli_runner().invoke(args=["audit-verify"])
    assert result.exit_code == 0 and "intact" in result.output

    events = _events(app)
    victim = events[1]
    engine = app.extensions["privid.engine"]
    tamper = text("UPDATE audit_events SET outcome = 'failure' WHERE id = :id")
    if PG_URL:
        # PostgreSQL itself refuses; only someone who can drop the trigger gets through.
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(tamper, {"id": victim.id})
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
            connection.execute(tamper, {"id": victim.id})
            connection.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))
    else:
        with engine.begin() as connection:
            connection.execute(tamper, {"id": victim.id})
    result = app.test_cli_runner().invoke(args=["audit-verify"])
    assert result.exit_code == 1
    assert f"event {victim.id}" in result.output


def test_events_after_security_is_withdrawn_carry_no_network_prefix(app, client, mailbox, sms):
    """The network prefix is security data: once the purpose is withdrawn, the
    trail stops recording it for that account, as sessions do."""
    client.environ_base["REMOTE_ADDR"] = "198.51.100.23"
    person, session = register(client, mailbox, sms, consent=baseline_consent(security="granted"))
    assert login(client, person.email, person.password).status_code == 200
    withdrawn = client.post(
        "/api/v1/me/consent/security/withdraw", headers=bearer(session["token"])
    )
    assert withdrawn.status_code == 200
    after_withdrawal = _events(app)[-1].id
    assert login(client, person.email, "wrong-password-here").status_code == 401
    signed_in = login(client, person.email, person.password)
    assert signed_in.status_code == 200
    client.post("/api/v1/logout", headers=bearer(signed_in.json["token"]))

    events = _events(app)
    before = [e for e in events if e.id <= after_withdrawal and e.event_type == "login.succeeded"]
    assert before and before[0].ip_prefix == "198.51.100.0/24"  # granted then
    later = [e for e in events if e.id > after_withdrawal]
    kinds = {e.event_type for e in later}
    assert {"login.failed", "login.succeeded", "logout"} <= kinds
    assert [e.ip_prefix for e in later if e.ip_prefix not in (None, "withheld")] == []
    assert "198.51.100" not in json.dumps([[e.ip_prefix, e.details] for e in later])


def test_a_failed_passkey_sign_in_after_security_is_withdrawn_carries_no_prefix(
    app, client, mailbox, sms
):
    """The failure names the account whose passkey answered, so the account's
    choice about network details applies to it as to every other event."""
    consent = baseline_consent(security="granted", device_biometrics="granted")
    _, session = register(client, mailbox, sms, consent=consent)
    authenticator = SoftAuthenticator()
    enrol(client, session["token"], authenticator)
    withdrawn = client.post(
        "/api/v1/me/consent/security/withdraw", headers=bearer(session["token"])
    )
    assert withdrawn.status_code == 200, withdrawn.json
    after_withdrawal = _events(app)[-1].id
    client.environ_base["REMOTE_ADDR"] = "203.0.113.77"
    refused, _ = passkey_sign_in(client, authenticator, origin="https://evil.example")
    assert refused.status_code == 401
    [failed] = [
        e for e in _events(app) if e.id > after_withdrawal and e.event_type == "login.failed"
    ]
    me = client.get("/api/v1/me", headers=bearer(session["token"])).json
    assert failed.user_id == me["user_id"]
    assert failed.ip_prefix in (None, "withheld")
    assert "203.0.113" not in json.dumps([failed.ip_prefix, failed.details])
