"""The mail server down: a request that sends a code answers at once (nothing
is sent from a web request), the message stays in the outbox while `privid
worker` fails to deliver it, is tried again, and arrives once a mail server
answers at the same address again; its code still works."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from app.cli import unit_of_work
from app.models import OutboxMessage
from tests.fakes import CODE_RE, SmtpServer
from tests.helpers import new_person, privid_command, privid_env, start_registration, stop_process

WAIT_SECONDS = 15


@pytest.fixture
def own_smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings_overrides(own_smtp: SmtpServer) -> dict[str, object]:
    return {"smtp_port": own_smtp.port}


def email_row(app) -> OutboxMessage:
    with app.app_context(), unit_of_work() as svc:
        query = select(OutboxMessage).where(OutboxMessage.channel == "email")
        return svc.db.execute(query).scalar_one()


def wait_for_row(app, what: str, check: Any) -> OutboxMessage:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        row = email_row(app)
        if check(row):
            return row
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {vars(row)}"
        time.sleep(0.05)


def due_now(app, runtime, message_id: str) -> None:
    """Stands for the back-off passing (2**attempts minutes): the row is due
    now, as it would be then."""
    with app.app_context(), unit_of_work() as svc:
        svc.db.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id)
            .values(next_attempt_at=runtime.clock.now())
        )


def test_mail_waits_in_the_outbox_while_smtp_is_down_and_goes_when_it_returns(
    app, client, settings, runtime, sms, own_smtp, tmp_path
):
    sms.deliver = None  # only the `privid worker` below sends
    own_smtp.stop()
    person = new_person()
    started = start_registration(client, person)
    assert started.status_code == 202, started.json
    queued = email_row(app)
    assert queued.attempts == 0 and queued.sent_at is None

    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [privid_command(), "worker"],
            env=privid_env(settings, OUTBOX_POLL_SECONDS="0.1"),
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        sms.wait_for(person.phone)  # the worker runs: the SMS went out
        failed = wait_for_row(app, "a failed try", lambda r: r.attempts == 1 and r.last_error_class)
        assert failed.sent_at is None and failed.abandoned_at is None
        assert failed.payload_encrypted is not None  # kept, to be sent later
        assert failed.next_attempt_at > runtime.clock.now()  # after a back-off

        due_now(app, runtime, failed.id)
        again = wait_for_row(app, "a second try", lambda r: r.attempts == 2)
        assert again.sent_at is None and again.abandoned_at is None
        assert own_smtp.mailbox.received(person.email) == []

        own_smtp.start()  # the same address
        due_now(app, runtime, failed.id)
        mail = own_smtp.mailbox.wait_for(person.email)
        sent = wait_for_row(app, "the row marked sent", lambda r: r.sent_at is not None)
    finally:
        stop_process(worker)
    assert sent.attempts == 3 and sent.payload_encrypted is None and sent.wrapped_key is None
    assert len(own_smtp.mailbox.received(person.email)) == 1

    found = CODE_RE.search(mail.get_payload(decode=True).decode())
    assert found, "no code in the mail"
    flow = started.json["flow_id"]
    proven = client.post(
        f"/api/v1/registration/{flow}/verify", json={"channel": "email", "code": found.group(1)}
    )
    assert proven.status_code == 200, proven.json
    log_text = log_path.read_text(errors="replace")
    assert "DeliveryError" in log_text or "not delivered" in log_text
    assert person.email not in log_text
