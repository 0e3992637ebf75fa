"""One durable outbox for every message: written in the transaction of the change
that causes it, sent only by a worker (`privid worker`, or a one-shot
`flask outbox-deliver`), never lost by a worker that dies, never sent twice by
two workers, retried with back-off, and never holding an address or a code in
clear."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
import requests
from sqlalchemy import event, select

from app.adapters.smtp import SmtpEmailSender
from app.cli import unit_of_work
from app.models import OutboxMessage
from app.services.outbox import OutboxService, backoff
from app.worker import OutboxWorker
from tests.fakes import HangingSmtpServer, free_port
from tests.helpers import (
    HIGH_LIMITS,
    deliver_outbox,
    new_person,
    privid_command,
    privid_env,
    register,
    start_registration,
    stop_process,
    table_rows,
    wait_until_ready,
)

PG = os.environ.get("PRIVID_TEST_DATABASE_URL", "").startswith("postgresql")
SMS_CODE = "/api/v1/login/sms/code"
RESET = "/api/v1/password-reset"


def outbox(app) -> list[OutboxMessage]:
    with app.app_context(), unit_of_work() as svc:
        query = select(OutboxMessage).order_by(OutboxMessage.created_at, OutboxMessage.id)
        return list(svc.db.execute(query).scalars())


def outbox_text(app) -> str:
    """The outbox table as a dump shows it: every value as text."""
    parts = []
    for row in table_rows(app)["outbox_messages"]:
        for value in row:
            is_bytes = isinstance(value, bytes | bytearray | memoryview)
            parts.append(bytes(value).decode("latin-1") if is_bytes else str(value))
    return "\n".join(parts)


def pending(app) -> list[OutboxMessage]:
    return [m for m in outbox(app) if m.sent_at is None and m.abandoned_at is None]


@pytest.fixture
def settings_overrides():
    return dict(HIGH_LIMITS)


@pytest.fixture
def manual(mailbox, sms):
    """Messages move only when the test runs a worker: reading the mailbox or the
    SMS gateway does not deliver the outbox first."""
    mailbox.deliver = sms.deliver = None
    return mailbox, sms


# -- written with the change, sent by the worker --------------------------------


def test_a_code_waits_in_the_outbox_until_a_worker_sends_it(app, client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    mailbox.deliver = sms.deliver = None
    sms.clear()
    assert pending(app) == []

    assert client.post(SMS_CODE, json={"phone": person.phone}).status_code == 202
    [queued] = pending(app)
    assert queued.channel == "sms" and queued.attempts == 0
    time.sleep(0.5)  # the request is over: nothing may be on its way from it
    assert sms.to(person.phone) == []

    run = app.test_cli_runner().invoke(args=["outbox-deliver"])
    assert run.exit_code == 0, run.output
    assert "sent 1," in run.output
    assert len(sms.to(person.phone)) == 1
    [done] = [m for m in outbox(app) if m.id == queued.id]
    assert done.sent_at is not None


def test_a_rolled_back_request_leaves_no_message(app, client, mailbox, sms, monkeypatch):
    from app.services import registration

    original = registration.RegistrationService._send

    def send_then_fail(self, flow, channel, address):
        original(self, flow, channel, address)
        if channel == "phone":  # the email was queued already
            raise RuntimeError("the phone step broke")

    person = new_person()
    monkeypatch.setattr(registration.RegistrationService, "_send", send_then_fail)
    assert start_registration(client, person).status_code == 500
    monkeypatch.undo()
    assert outbox(app) == []
    deliver_outbox(app)
    assert mailbox.to(person.email) == [] and sms.to(person.phone) == []

    # The same request, not broken, does queue both messages.
    assert start_registration(client, person).status_code == 202
    assert sorted(m.channel for m in pending(app)) == ["email", "sms"]


# -- workers -----------------------------------------------------------------------


def test_two_workers_never_send_a_message_twice(app, client, manual):
    """Races on PostgreSQL (SKIP LOCKED); on SQLite the claims serialise on the
    write lock, and the test checks the same outcome."""
    mailbox, sms = manual
    people = [new_person() for _ in range(24)]
    for person in people:
        assert start_registration(client, person).status_code == 202
    assert len(pending(app)) == 48

    workers = [OutboxWorker.for_app(app) for _ in range(4)]
    barrier = threading.Barrier(len(workers))
    reports = []

    def run(worker: OutboxWorker) -> None:
        barrier.wait()
        reports.append(worker.run_once())

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(r.sent for r in reports) == 48
    if PG:
        assert sum(1 for r in reports if r.sent) >= 2, "one worker took everything: no race"
    for person in people:
        assert len(mailbox.to(person.email)) == 1
        assert len(sms.to(person.phone)) == 1
    assert pending(app) == []


def test_a_worker_killed_before_sending_loses_nothing(
    app, client, settings, mailbox, sms, tmp_path
):
    person, _ = register(client, mailbox, sms)
    mailbox.deliver = sms.deliver = None
    mailbox.clear()
    assert client.post(RESET, json={"identifier": person.email}).status_code == 202

    hanging = HangingSmtpServer().start()
    env = privid_env(settings, OUTBOX_CLAIM_SECONDS="2", OUTBOX_POLL_SECONDS="0.2")
    stuck_log = (tmp_path / "stuck.log").open("wb")
    stuck = subprocess.Popen(
        [privid_command(), "worker"],
        env={**env, "PRIVID_SMTP_PORT": str(hanging.port), "PRIVID_SMTP_TIMEOUT_SECONDS": "60"},
        stdout=stuck_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert hanging.connected.wait(30), (tmp_path / "stuck.log").read_text()
        [claimed] = pending(app)
        assert claimed.attempts == 1  # claimed, and now inside the send
        stuck.send_signal(signal.SIGKILL)
        stuck.wait(timeout=10)
    finally:
        stop_process(stuck)
        hanging.stop()
    assert mailbox.to(person.email) == []

    log = (tmp_path / "next.log").open("wb")
    following = subprocess.Popen(
        [privid_command(), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        reset_mail = mailbox.wait_for(person.email)
        following.terminate()  # SIGTERM: the worker stops cleanly
        assert following.wait(timeout=15) == 0
    finally:
        stop_process(following)
    assert "reset your password" in reset_mail.get_payload(decode=True).decode()
    [sent] = [m for m in outbox(app) if m.id == claimed.id]
    assert sent.sent_at is not None and sent.attempts == 2
    assert sent.payload_encrypted is None and sent.wrapped_key is None


# -- retries --------------------------------------------------------------------


class TestOnAFrozenClock:
    @pytest.fixture
    def clock(self, frozen_clock):
        return frozen_clock

    def test_a_mail_server_that_is_down_gets_the_code_later(
        self, app, client, settings, runtime, clock, manual
    ):
        mailbox, sms = manual
        person = new_person()
        assert start_registration(client, person).status_code == 202
        down = SmtpEmailSender(
            host="127.0.0.1", port=free_port(), sender=settings.mail_from, timeout=2
        )

        def run_with(email_sender) -> None:
            with app.app_context(), unit_of_work() as svc:
                OutboxService(
                    svc.db, clock, svc.vault, runtime.key_ring, email_sender, runtime.sms_sender,
                    runtime.push_sender, max_attempts=3, claim_seconds=60,
                ).deliver_due(10)  # fmt: skip

        run_with(down)
        assert len(sms.to(person.phone)) == 1  # SMS is up
        [mail] = pending(app)
        assert mail.channel == "email" and mail.attempts == 1
        assert mail.last_error_class == "DeliveryError"
        assert mail.next_attempt_at == clock.now() + backoff(1)

        run_with(runtime.email_sender)  # back up, but the back-off has not ended
        assert mailbox.to(person.email) == []
        clock.advance(seconds=backoff(1).total_seconds() + 1)
        run_with(down)
        clock.advance(seconds=backoff(2).total_seconds() + 1)
        run_with(runtime.email_sender)
        assert len(mailbox.to(person.email)) == 1
        [mail] = [m for m in outbox(app) if m.channel == "email"]
        assert mail.sent_at is not None and mail.attempts == 3 and mail.payload_encrypted is None

        # A message whose tries run out is abandoned, and its payload erased.
        other = new_person()
        assert start_registration(client, other).status_code == 202
        for attempt in (1, 2, 3):  # inside the code's ten minutes
            run_with(down)
            clock.advance(seconds=backoff(attempt).total_seconds() + 1)
        run_with(runtime.email_sender)
        assert mailbox.to(other.email) == []
        [lost] = [m for m in outbox(app) if m.channel == "email" and m.sent_at is None]
        assert lost.abandoned_at is not None and lost.attempts == 3
        assert lost.payload_encrypted is None and lost.wrapped_key is None

    def test_a_code_that_would_arrive_expired_is_not_sent(
        self, app, client, settings, clock, manual
    ):
        mailbox, sms = manual
        person = new_person()
        assert start_registration(client, person).status_code == 202
        clock.advance(seconds=settings.code_ttl_seconds + 1)  # say, every worker was down
        report = deliver_outbox(app)
        assert (report.sent, report.abandoned) == (0, 2)
        assert mailbox.to(person.email) == [] and sms.to(person.phone) == []
        for message in outbox(app):
            assert message.last_error_class == "Expired" and message.payload_encrypted is None


# -- nothing in clear ----------------------------------------------------------------


def test_the_outbox_holds_no_address_or_code_in_clear(app, client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    stranger = new_person()
    mailbox.deliver = sms.deliver = None
    assert client.post(SMS_CODE, json={"phone": person.phone}).status_code == 202
    assert client.post(RESET, json={"identifier": person.email}).status_code == 202
    assert start_registration(client, stranger).status_code == 202
    queued = outbox_text(app)
    assert len(pending(app)) == 4

    deliver_outbox(app)
    codes = [
        sms.last_code(person.phone, count=2),
        mailbox.last_code(person.email, count=2),
        mailbox.last_code(stranger.email),
        sms.last_code(stranger.phone),
    ]
    national = person.phone.removeprefix("+86")
    for secret in (person.email, person.phone, national, stranger.email, stranger.phone, *codes):
        assert secret not in queued
    for message in outbox(app):
        assert message.payload_encrypted is None and message.wrapped_key is None


# -- item 4: a request that sends nothing does the same work -------------------------


def _work_of(app, client, path: str, body: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """The SQL statements a request ran, and the outbox rows it wrote."""
    engine = app.extensions["privid.engine"]
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    before = {m.id for m in outbox(app)}
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.post(path, json=body).status_code == 202
    finally:
        event.remove(engine, "before_cursor_execute", record)
    written = [(m.channel, m.kind) for m in outbox(app) if m.id not in before]
    return statements, written


@pytest.mark.parametrize(
    ("path", "field", "kind"),
    [(SMS_CODE, "phone", "phone"), (RESET, "identifier", "phone"), (RESET, "identifier", "email")],
)
def test_a_request_does_the_same_work_whether_or_not_a_message_results(
    app, client, mailbox, sms, path, field, kind
):
    person, _ = register(client, mailbox, sms)
    stranger = new_person()
    registered = _work_of(app, client, path, {field: getattr(person, kind)})
    unregistered = _work_of(app, client, path, {field: getattr(stranger, kind)})
    assert registered[1] == unregistered[1] and len(registered[1]) == 1
    assert registered[0] == unregistered[0]
    # Only the worker tells them apart: the registered address gets the code.
    deliver_outbox(app)
    inbox = mailbox if kind == "email" else sms
    assert len(inbox.to(getattr(person, kind))) == 2  # registration's code, then this one
    assert inbox.to(getattr(stranger, kind)) == []


def test_privid_serve_sends_with_a_worker_of_its_own(settings, mailbox, sms, tmp_path):
    port = free_port()
    env = privid_env(settings, DATABASE_URL=f"sqlite:///{tmp_path}/serve.db")
    env["PRIVID_OUTBOX_POLL_SECONDS"] = "0.1"
    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen(
            [privid_command(), "serve", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_ready(base, serve, tmp_path / "serve.log", "privid serve")
        person = new_person()
        started = requests.post(
            f"{base}/api/v1/registration",
            json={"email": person.email, "phone": person.phone,
                  "full_name": person.full_name, "password": person.password},
            timeout=10,
        )  # fmt: skip
        assert started.status_code == 202, started.text
        assert mailbox.last_code(person.email) and sms.last_code(person.phone)
    finally:
        stop_process(serve)
