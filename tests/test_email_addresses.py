"""Email addresses a mail library would rewrite (RFC 2047 encoded words) are
refused, and mail goes to the validated address named in the SMTP envelope,
never to what a header decodes to."""

from __future__ import annotations

import pytest

from app.adapters.messages import OutgoingEmail
from app.adapters.smtp import SmtpEmailSender
from tests.helpers import (
    assert_problem,
    bearer,
    new_person,
    nothing_changes,
    register,
    start_registration,
)

# Python's email library reads each of these as alice@example.com (or alice's
# mailbox under another charset), though the text differs from it.
ENCODED_WORDS = [
    "=?x?q?alice?=@example.com",
    "=?c1?q?alice?=@example.com",
    "=?utf-8?b?YWxpY2U=?=@example.com",
    "=?us-ascii?Q?al=69ce?=@example.com",
    "pre=?x?q?alice?=@example.com",
]


@pytest.mark.parametrize("address", ENCODED_WORDS)
def test_registration_with_an_encoded_word_address_is_refused_and_nothing_is_sent(
    app, client, runtime, mailbox, sms, address
):
    person = new_person()
    person.email = address
    with nothing_changes(app, runtime, mailbox, sms, address):
        answer = start_registration(client, person)
    body = assert_problem(answer, 422, "validation-error")
    assert [e["pointer"] for e in body["errors"]] == ["#/email"]
    assert "encoded" in body["detail"]
    # The address itself is not echoed back.
    assert address not in answer.get_data(as_text=True)


def test_an_encoded_word_cannot_reach_a_registered_mailbox(app, client, runtime, mailbox, sms):
    owner, _ = register(client, mailbox, sms, new_person())
    local, domain = owner.email.split("@")
    disguised = f"=?x?q?{local}?=@{domain}"
    with nothing_changes(app, runtime, mailbox, sms, "reset"):
        reset = client.post("/api/v1/password-reset", json={"identifier": disguised})
        assert_problem(reset, 422, "validation-error")
    intruder = new_person()
    intruder.email = disguised
    with nothing_changes(app, runtime, mailbox, sms, "registration"):
        assert_problem(start_registration(client, intruder), 422, "validation-error")


def test_changing_to_an_encoded_word_address_is_refused(app, client, runtime, mailbox, sms):
    person, session = register(client, mailbox, sms)
    with nothing_changes(app, runtime, mailbox, sms, "email change"):
        answer = client.post(
            "/api/v1/me/email",
            json={"email": "=?x?q?someone?=@example.com", "current_password": person.password},
            headers=bearer(session["token"]),
        )
    body = assert_problem(answer, 422, "validation-error")
    assert [e["pointer"] for e in body["errors"]] == ["#/email"]


def test_registration_mail_goes_to_the_validated_address_in_the_envelope(client, mailbox, sms):
    person = new_person()
    assert start_registration(client, person).status_code == 202
    message = mailbox.wait_for(person.email)
    assert message["X-Envelope-To"] == person.email


def test_the_smtp_envelope_names_the_address_given_not_what_the_header_decodes_to(
    smtp_server, mailbox
):
    # Defence in depth: even if such an address got past validation, the mail
    # server is told the recipient in the envelope, so no header can redirect it.
    sender = SmtpEmailSender(host="127.0.0.1", port=smtp_server.port, sender="privid@example.org")
    literal = "=?x?q?alice?=@example.com"
    sender.send(OutgoingEmail(to=literal, subject="Your code", body="123456"))
    message = mailbox.wait_for(literal)
    assert message["X-Envelope-To"] == literal
    assert mailbox.to("alice@example.com") == []
