"""Messages waiting in the outbox belong to the account they concern: the
export lists them (never what they say), and cancelling the account abandons
and erases them, so nothing reaches the person once the account is gone."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.cli import unit_of_work
from app.models import OutboxMessage
from tests.helpers import HIGH_LIMITS, bearer, deliver_outbox, register

CANCEL = {"confirm": "cancel my account"}


@pytest.fixture
def settings_overrides():
    return dict(HIGH_LIMITS)


def outbox_rows(app) -> list[OutboxMessage]:
    with app.app_context(), unit_of_work() as svc:
        query = select(OutboxMessage).order_by(OutboxMessage.created_at, OutboxMessage.id)
        return list(svc.db.execute(query).scalars())


def queue_while_the_worker_is_down(client, mailbox, sms, person, auth) -> None:
    """A reset code, an SMS sign-in code and a password-change notice, all still queued."""
    mailbox.deliver = sms.deliver = None
    mailbox.clear()
    sms.clear()
    reset = client.post("/api/v1/password-reset", json={"identifier": person.email})
    assert reset.status_code == 202
    sms_code = client.post("/api/v1/login/sms/code", json={"phone": person.phone})
    assert sms_code.status_code == 202
    changed = client.post(
        "/api/v1/me/password",
        json={"current_password": person.password, "new_password": "amber-falcon-river-77"},
        headers=auth,
    )
    assert changed.status_code in (200, 204), changed.json


def test_the_export_lists_messages_on_their_way_without_their_content(app, client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    queue_while_the_worker_is_down(client, mailbox, sms, person, auth)

    exported = client.post("/api/v1/me/export", headers=auth)
    assert exported.status_code == 200
    messages = exported.json["messages"]
    pending = [m for m in messages if m["status"] == "pending"]
    assert sorted(m["channel"] for m in pending) == ["email", "email", "sms"]
    for message in messages:
        assert {"channel", "kind", "status", "created_at", "sent_at"} <= set(message)
        # What a message says (the code, the address) is not the export's to show.
        assert not {"payload_encrypted", "wrapped_key", "key_id"} & set(message)
    text = exported.get_data(as_text=True)
    codes = [row.payload_encrypted for row in outbox_rows(app) if row.payload_encrypted]
    assert codes and all(c.hex() not in text for c in codes)

    # Once sent, the export says so.
    deliver_outbox(app)
    after = client.post("/api/v1/me/export", headers=auth).json["messages"]
    assert [m for m in after if m["status"] == "pending"] == []
    assert sum(m["status"] == "sent" for m in after) >= 3


def test_cancelling_abandons_and_erases_what_is_still_queued(app, client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    queue_while_the_worker_is_down(client, mailbox, sms, person, auth)
    queued = [m.id for m in outbox_rows(app) if m.sent_at is None and m.abandoned_at is None]
    assert len(queued) == 3

    cancelled = client.post("/api/v1/me/cancellation", json=CANCEL, headers=auth)
    assert cancelled.status_code == 200, cancelled.json

    # In the same transaction: no key left that could open a message for the person.
    rows = {m.id: m for m in outbox_rows(app)}
    for message_id in queued:
        row = rows[message_id]
        assert row.abandoned_at is not None and row.sent_at is None
        assert row.key_id is None and row.wrapped_key is None and row.payload_encrypted is None
    assert [m for m in rows.values() if m.payload_encrypted is not None] == []

    # The worker comes back: the cancelled person hears nothing more.
    deliver_outbox(app)
    assert mailbox.received(person.email) == []
    assert sms.received(person.phone) == []
