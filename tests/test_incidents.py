"""Security-incident notices: an operator records an incident, the affected users
(chosen by id or by activity in a time window) are told by email and push
through the outbox, retries survive a mail server that is down, and users read
the notices addressed to them."""

from __future__ import annotations

import json
from datetime import timedelta
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

import pytest
from sqlalchemy import select

from app.adapters.messages import DeliveryError
from app.adapters.push import OutgoingPush
from app.adapters.smtp import SmtpEmailSender
from app.cli import unit_of_work
from app.clock import FrozenClock
from app.models import AuditEvent, Incident, IncidentRecipient, OutboxKind, OutboxMessage
from app.services.outbox import OutboxService, backoff
from app.settings import Environment
from tests.fakes import Mailbox, free_port
from tests.helpers import (
    HIGH_LIMITS,
    Person,
    assert_problem,
    bearer,
    login,
    nothing_changes,
    pointers,
    register,
    table_rows,
)

NOTICE_SUBJECT = "privid security notice"
PARTS = {
    "facts": "A misconfigured log store exposed sign-in records for two hours.",
    "impact": "Sign-in times and truncated IP addresses may have been read by others.",
    "measures": "We closed the store, rotated its keys and will audit every log store.",
    "advice": "Review your active sessions and change your password if unsure.",
    "remedies": "Write to privacy@privid.example for help; we cover any losses.",
}


class RecordingPush:
    """The push provider of the tests: records pushes, or fails on request."""

    def __init__(self) -> None:
        self.sent: list[OutgoingPush] = []
        self.fail = False

    def send(self, message: OutgoingPush) -> None:
        if self.fail:
            raise DeliveryError("push provider unavailable")
        self.sent.append(message)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)  # many sign-ins per test; limits have their own tests


@pytest.fixture
def clock(frozen_clock: FrozenClock) -> FrozenClock:
    return frozen_clock


@pytest.fixture
def push(runtime) -> RecordingPush:
    fake = RecordingPush()
    runtime.push_sender = fake
    return fake


# -- helpers ---------------------------------------------------------------------


def make_operator(app, client, person: Person) -> dict[str, str]:
    granted = app.test_cli_runner().invoke(args=["operator-grant", person.email])
    assert granted.exit_code == 0, granted.output
    signed_in = login(client, person.email, person.password)  # operator calls need a fresh one
    assert signed_in.status_code == 200, signed_in.json
    return bearer(signed_in.json["token"])


def user_id(client, session: dict[str, Any]) -> str:
    return str(client.get("/api/v1/me", headers=bearer(session["token"])).json["user_id"])


def incident_body(**selection: Any) -> dict[str, Any]:
    return {"title": "Sign-in records exposed", **PARTS, **selection}


def subject(message: Message) -> str:
    return str(make_header(decode_header(message["Subject"])))


def notices(mailbox: Mailbox, address: str) -> list[Message]:
    """The notices the mail server holds; only the operator's delivery sends them."""
    return [m for m in mailbox.received(address) if subject(m).startswith(NOTICE_SUBJECT)]


def text_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(message.get_content_charset() or "utf-8")


def outbox_rows(app) -> list[OutboxMessage]:
    """The incident notices in the outbox (codes and other notices go there too)."""
    with app.app_context(), unit_of_work() as svc:
        query = select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.INCIDENT)
        return list(svc.db.execute(query).scalars())


def audit_events(app, event_type: str) -> list[AuditEvent]:
    with app.app_context(), unit_of_work() as svc:
        query = select(AuditEvent).where(AuditEvent.event_type == event_type)
        return list(svc.db.execute(query.order_by(AuditEvent.id)).scalars())


def deliver(client, operator: dict[str, str]) -> dict[str, int]:
    response = client.post("/api/v1/admin/outbox/deliver", headers=operator)
    assert response.status_code == 200, response.json
    return dict(response.json)


def dead_smtp(settings) -> SmtpEmailSender:
    # A port nothing listens on: the connection is refused at once.
    return SmtpEmailSender(host="127.0.0.1", port=free_port(), sender=settings.mail_from, timeout=2)


# -- the whole flow ----------------------------------------------------------------


def test_incident_by_window_reaches_exactly_the_active_users(
    app, client, runtime, mailbox, sms, clock, push
):
    start = clock.now()
    inside, _ = register(client, mailbox, sms)
    at_the_end, _ = register(client, mailbox, sms)
    later, _ = register(client, mailbox, sms)
    idle, _ = register(client, mailbox, sms)  # registered, never signs in
    boss, _ = register(client, mailbox, sms)

    clock.advance(hours=1)
    assert login(client, inside.email, inside.password).status_code == 200
    clock.advance(hours=1)
    assert login(client, at_the_end.email, at_the_end.password).status_code == 200
    clock.advance(hours=1)
    assert login(client, later.email, later.password).status_code == 200
    operator = make_operator(app, client, boss)  # signs in now, outside the window too

    window = {
        "from": (start + timedelta(minutes=30)).isoformat(),
        "to": (start + timedelta(hours=2)).isoformat(),  # the end is included
        "event_types": ["login.succeeded"],
    }
    created = client.post(
        "/api/v1/admin/incidents",
        json=incident_body(window=window, channels=["email", "push"]),
        headers=operator,
    )
    assert created.status_code == 201, created.json
    incident = created.json
    assert created.headers["Location"] == f"/api/v1/admin/incidents/{incident['incident_id']}"
    assert incident["counts"] == {
        "recipients": 2,
        "queued": 4,
        "retrying": 0,
        "sent": 0,
        "failed": 0,
    }
    # Without an explicit period, the incident took the window's.
    assert incident["occurred_from"].startswith(window["from"][:19])
    assert incident["occurred_to"].startswith(window["to"][:19])

    # Queued, not sent: the outbox holds ids only, never an address or a text.
    assert not notices(mailbox, inside.email)
    people = (inside, at_the_end, later, idle, boss)
    for table in ("outbox_messages", "incident_recipients"):
        stored = json.dumps(table_rows(app)[table], default=str)
        for person in people:
            assert person.email not in stored and person.phone not in stored
        assert PARTS["facts"] not in stored

    report = deliver(client, operator)
    assert report == {"sent": 4, "retrying": 0, "abandoned": 0, "skipped": 0}

    # Sessions from before have gone idle; the users sign in again to look.
    inside_session = login(client, inside.email, inside.password).json
    inside_id = user_id(client, inside_session)
    for person in (inside, at_the_end):
        [mail] = notices(mailbox, person.email)
        body = text_of(mail)
        assert subject(mail) == f"{NOTICE_SUBJECT}: Sign-in records exposed"
        for part in PARTS.values():
            assert part in body, (part, body)
    for person in (later, idle, boss):
        assert notices(mailbox, person.email) == []
    assert {p.title for p in push.sent} == {NOTICE_SUBJECT}
    pushed_to = {p.user_id for p in push.sent}
    assert inside_id in pushed_to and len(pushed_to) == 2
    end_id = (pushed_to - {inside_id}).pop()

    # Users read the notice, with all five parts; others have none.
    mine = client.get("/api/v1/me/notices", headers=bearer(inside_session["token"]))
    assert mine.status_code == 200, mine.json
    [notice] = mine.json["notices"]
    assert notice["incident_id"] == incident["incident_id"]
    assert notice["title"] == "Sign-in records exposed"
    assert {k: notice[k] for k in PARTS} == PARTS
    later_session = login(client, later.email, later.password).json
    assert client.get("/api/v1/me/notices", headers=bearer(later_session["token"])).json == {
        "notices": []
    }

    # The operator sees the counts; a second pass has nothing left to send.
    assert deliver(client, operator) == {"sent": 0, "retrying": 0, "abandoned": 0, "skipped": 0}
    assert len(notices(mailbox, inside.email)) == 1
    assert len(push.sent) == 2
    shown = client.get(f"/api/v1/admin/incidents/{incident['incident_id']}", headers=operator)
    assert shown.status_code == 200, shown.json
    assert shown.json["counts"] == {
        "recipients": 2,
        "queued": 0,
        "retrying": 0,
        "sent": 4,
        "failed": 0,
    }
    with app.app_context(), unit_of_work() as svc:
        recipients = svc.db.execute(select(IncidentRecipient.user_id)).scalars()
        assert set(recipients) == {inside_id, end_id}

    # Every operator action is in the audit trail with who did it.
    boss_id = incident["created_by"]
    [recorded] = audit_events(app, "incident.recorded")
    assert recorded.actor_id == boss_id
    assert recorded.details["incident_id"] == incident["incident_id"]
    assert recorded.details["recipients"] == 2
    assert recorded.details["event_types"] == ["login.succeeded"]
    assert [e.actor_id for e in audit_events(app, "outbox.delivered")] == [boss_id, boss_id]
    assert [e.actor_id for e in audit_events(app, "incident.viewed")] == [boss_id]


def test_a_notice_is_in_the_users_export(app, client, mailbox, sms, push):
    _person, session = register(client, mailbox, sms)
    boss, _ = register(client, mailbox, sms)
    operator = make_operator(app, client, boss)
    uid = user_id(client, session)
    created = client.post(
        "/api/v1/admin/incidents", json=incident_body(user_ids=[uid]), headers=operator
    )
    assert created.status_code == 201, created.json
    exported = client.post("/api/v1/me/export", headers=bearer(session["token"]))
    assert exported.status_code == 200, exported.json
    [notice] = exported.json["security_notices"]
    assert notice["id"] == created.json["incident_id"] and "created_by" not in notice
    [message] = exported.json["messages"]
    assert message["channel"] == "email" and message["sent_at"] is None


# -- the mail server is down -----------------------------------------------------


def test_a_message_survives_a_mail_server_that_is_down(
    app, client, runtime, settings, mailbox, sms, clock, push
):
    person, session = register(client, mailbox, sms)
    boss, _ = register(client, mailbox, sms)
    operator = make_operator(app, client, boss)
    uid = user_id(client, session)
    created = client.post(
        "/api/v1/admin/incidents",
        json=incident_body(user_ids=[uid, uid]),  # the same id twice is one recipient
        headers=operator,
    )
    assert created.status_code == 201, created.json
    assert created.json["counts"]["recipients"] == 1

    with app.app_context(), unit_of_work() as svc:
        down = OutboxService(
            svc.db, clock, svc.vault, runtime.key_ring, dead_smtp(settings), runtime.sms_sender,
            push, max_attempts=8, claim_seconds=60,
        )  # fmt: skip
        report = down.deliver_due(10)
    assert (report.sent, report.retrying, report.abandoned) == (0, 1, 0)
    [row] = outbox_rows(app)
    assert row.attempts == 1
    assert row.sent_at is None and row.abandoned_at is None
    assert row.next_attempt_at == clock.now() + timedelta(minutes=2)
    assert row.last_error_class == "DeliveryError"
    assert notices(mailbox, person.email) == []

    shown = client.get(f"/api/v1/admin/incidents/{created.json['incident_id']}", headers=operator)
    assert shown.json["counts"]["queued"] == 1 and shown.json["counts"]["retrying"] == 1

    # The mail server is back, but the back-off has not ended: nothing is sent yet.
    assert deliver(client, operator)["sent"] == 0
    assert notices(mailbox, person.email) == []

    clock.advance(minutes=2, seconds=1)
    cli = app.test_cli_runner()
    first = cli.invoke(args=["outbox-deliver"])
    assert first.exit_code == 0, first.output
    assert "sent 1, retrying 0, abandoned 0, skipped 0" in first.output
    [mail] = notices(mailbox, person.email)
    assert PARTS["remedies"] in text_of(mail)

    again = cli.invoke(args=["outbox-deliver"])
    assert "sent 0, retrying 0, abandoned 0, skipped 0" in again.output
    assert len(notices(mailbox, person.email)) == 1
    [row] = outbox_rows(app)
    assert row.attempts == 2 and row.sent_at == clock.now()
    assert [e.details["sent"] for e in audit_events(app, "outbox.delivered")] == [0, 1]


def test_a_pass_stops_using_a_channel_that_keeps_failing(
    app, client, runtime, settings, mailbox, sms, clock, push
):
    sessions = [register(client, mailbox, sms)[1] for _ in range(5)]
    boss, _ = register(client, mailbox, sms)
    operator = make_operator(app, client, boss)
    body = incident_body(user_ids=[user_id(client, s) for s in sessions])
    assert client.post("/api/v1/admin/incidents", json=body, headers=operator).status_code == 201

    with app.app_context(), unit_of_work() as svc:
        down = OutboxService(
            svc.db, clock, svc.vault, runtime.key_ring, dead_smtp(settings), runtime.sms_sender,
            push, max_attempts=8, claim_seconds=60,
        )  # fmt: skip
        report = down.deliver_due(100)
    # Three failures in a row, then the rest wait for the next pass, untried.
    assert (report.sent, report.retrying, report.total) == (0, 3, 3)
    assert sorted(r.attempts for r in outbox_rows(app)) == [0, 0, 1, 1, 1]

    # The next pass (mail server back) sends the two that were not tried; the
    # three that were wait for their back-off.
    assert deliver(client, operator)["sent"] == 2
    clock.advance(minutes=3)
    assert deliver(client, operator)["sent"] == 3


def test_a_chinese_title_arrives_intact(app, client, mailbox, sms, push):
    person, session = register(client, mailbox, sms)
    boss, _ = register(client, mailbox, sms)
    operator = make_operator(app, client, boss)
    body = {**incident_body(user_ids=[user_id(client, session)]), "title": "登录记录泄露"}
    assert client.post("/api/v1/admin/incidents", json=body, headers=operator).status_code == 201
    assert deliver(client, operator)["sent"] == 1
    [mail] = notices(mailbox, person.email)
    assert subject(mail) == f"{NOTICE_SUBJECT}: 登录记录泄露"
    assert "事件经过 / What happened" in text_of(mail)


def test_a_message_is_abandoned_after_the_last_attempt(
    app, client, runtime, settings, mailbox, sms, clock, push
):
    _person, session = register(client, mailbox, sms)
    boss, _ = register(client, mailbox, sms)
    operator = make_operator(app, client, boss)
    body = incident_body(user_ids=[user_id(client, session)], channels=["push"])
    created = client.post("/api/v1/admin/incidents", json=body, headers=operator)
    assert created.status_code == 201, created.json
    push.fail = True

    outcomes = []
    for _ in range(3):
        with app.app_context(), unit_of_work() as svc:
            outbox = OutboxService(
                svc.db, clock, svc.vault, runtime.key_ring, dead_smtp(settings),
                runtime.sms_sender, push, max_attempts=3, claim_seconds=60,
            )  # fmt: skip
            report = outbox.deliver_due(10)
        outcomes.append((report.retrying, report.abandoned))
        clock.advance(hours=1)
    assert outcomes == [(1, 0), (1, 0), (0, 1)]
    [row] = outbox_rows(app)
    assert row.attempts == 3 and row.abandoned_at is not None and row.sent_at is None

    # An abandoned message is never tried again, even with a working provider.
    push.fail = False
    operator = make_operator(app, client, boss)  # the earlier sign-in has gone idle
    assert deliver(client, operator)["sent"] == 0
    assert push.sent == []
    shown = client.get(f"/api/v1/admin/incidents/{created.json['incident_id']}", headers=operator)
    assert shown.json["counts"]["failed"] == 1 and shown.json["counts"]["queued"] == 0


def test_a_cancelled_account_is_skipped(app, client, mailbox, sms, push):
    person, session = register(client, mailbox, sms)
    boss, _ = register(client, mailbox, sms)
    operator = make_operator(app, client, boss)
    body = incident_body(user_ids=[user_id(client, session)], channels=["email", "push"])
    created = client.post("/api/v1/admin/incidents", json=body, headers=operator)
    assert created.status_code == 201, created.json

    cancelled = client.post(
        "/api/v1/me/cancellation",
        json={"confirm": "cancel my account"},
        headers=bearer(session["token"]),
    )
    assert cancelled.status_code == 200, cancelled.json

    # Cancellation abandoned both notices already: the worker finds nothing to send.
    assert deliver(client, operator) == {"sent": 0, "retrying": 0, "abandoned": 0, "skipped": 0}
    assert notices(mailbox, person.email) == [] and push.sent == []
    rows = outbox_rows(app)
    assert len(rows) == 2
    assert all(r.abandoned_at and r.last_error_class == "AccountGone" for r in rows)
    assert all(r.attempts == 0 for r in rows)
    shown = client.get(f"/api/v1/admin/incidents/{created.json['incident_id']}", headers=operator)
    assert shown.json["counts"]["failed"] == 2


# -- who may do what -------------------------------------------------------------


def test_operator_endpoints_refuse_everyone_else(app, client, runtime, mailbox, sms, push):
    _person, session = register(client, mailbox, sms)
    user = bearer(session["token"])
    body = incident_body(user_ids=[user_id(client, session)])
    with nothing_changes(app, runtime, mailbox, sms, "a user at the operator endpoints"):
        for response in (
            client.post("/api/v1/admin/incidents", json=body, headers=user),
            client.get(
                "/api/v1/admin/incidents/00000000-0000-0000-0000-000000000000", headers=user
            ),
            client.post("/api/v1/admin/outbox/deliver", headers=user),
        ):
            assert_problem(response, 403, "operator-only")
        for response in (
            client.post("/api/v1/admin/incidents", json=body),
            client.post("/api/v1/admin/outbox/deliver"),
            client.get("/api/v1/me/notices"),
        ):
            assert_problem(response, 401, "authentication-required")
    assert client.get("/api/v1/me/notices", headers=user).json == {"notices": []}


def test_an_operator_needs_a_recent_sign_in(app, client, mailbox, sms, clock, push):
    boss, _ = register(client, mailbox, sms)
    operator = make_operator(app, client, boss)
    clock.advance(minutes=16)
    response = client.post("/api/v1/admin/outbox/deliver", headers=operator)
    assert_problem(response, 401, "insufficient-user-authentication")


def test_an_unknown_incident_is_a_404(app, client, mailbox, sms, push):
    boss, _ = register(client, mailbox, sms)
    operator = make_operator(app, client, boss)
    response = client.get(
        "/api/v1/admin/incidents/00000000-0000-0000-0000-000000000000", headers=operator
    )
    assert_problem(response, 404, "not-found")


# -- bad input ---------------------------------------------------------------------


def test_bad_incidents_are_refused_and_nothing_is_stored(
    app, client, runtime, mailbox, sms, clock, push
):
    _person, session = register(client, mailbox, sms)
    boss, _ = register(client, mailbox, sms)
    operator = make_operator(app, client, boss)
    uid = user_id(client, session)
    now = clock.now()
    window = {
        "from": (now - timedelta(hours=1)).isoformat(),
        "to": now.isoformat(),
        "event_types": ["login.succeeded"],
    }
    nobody = "00000000-0000-4000-8000-000000000000"
    cases: list[tuple[dict[str, Any], int, str, set[str]]] = [
        (incident_body(), 422, "validation-error", {"#/user_ids", "#/window"}),
        (
            incident_body(user_ids=[uid], window=window),
            422,
            "validation-error",
            {"#/user_ids", "#/window"},
        ),
        (incident_body(user_ids=None), 422, "validation-error", {"#/user_ids"}),
        (incident_body(user_ids=[]), 422, "validation-error", {"#/user_ids"}),
        (incident_body(user_ids=[uid, nobody]), 422, "validation-error", {"#/user_ids/1"}),
        (incident_body(user_ids=[uid.upper()]), 422, "validation-error", {"#/user_ids/0"}),
        (
            incident_body(window={**window, "to": window["from"], "from": window["to"]}),
            422,
            "validation-error",
            {"#/window/to"},
        ),
        (
            incident_body(window={**window, "from": "2026-11-27T08:00:00"}),  # no time zone
            422,
            "validation-error",
            {"#/window/from"},
        ),
        (
            incident_body(window={**window, "event_types": ["login.nobody-did-this"]}),
            422,
            "validation-error",
            {"#/window/event_types/0"},
        ),
        (
            incident_body(window={**window, "event_types": ["logout"]}),  # nobody in the window
            422,
            "validation-error",
            {"#/window"},
        ),
        (
            {**incident_body(user_ids=[uid]), "title": "Subject\r\nBcc: x@example.com"},
            422,
            "validation-error",
            {"#/title"},
        ),
        (
            incident_body(user_ids=[uid], channels=["sms"]),
            422,
            "validation-error",
            {"#/channels/0"},
        ),
        (incident_body(user_ids=[uid], channels=[]), 422, "validation-error", {"#/channels"}),
        (
            incident_body(
                user_ids=[uid], occurred_from=now.isoformat(), occurred_to=window["from"]
            ),
            422,
            "validation-error",
            {"#/occurred_to"},
        ),
        (
            {k: v for k, v in incident_body(user_ids=[uid]).items() if k != "remedies"},
            422,
            "validation-error",
            {"#/remedies"},
        ),
    ]
    for body, status, slug, where in cases:
        with nothing_changes(app, runtime, mailbox, sms, json.dumps(body)[:200]):
            response = client.post("/api/v1/admin/incidents", json=body, headers=operator)
            problem = assert_problem(response, status, slug)
        assert pointers(problem) == where, (body, problem)
    with app.app_context(), unit_of_work() as svc:
        assert svc.db.execute(select(Incident)).first() is None
        assert (
            svc.db.execute(select(OutboxMessage).where(OutboxMessage.user_id == uid)).first()
            is None
        )


def test_production_refuses_push_without_a_provider(app, client, runtime, mailbox, sms):
    _person, session = register(client, mailbox, sms)
    boss, _ = register(client, mailbox, sms)
    operator = make_operator(app, client, boss)
    body = incident_body(user_ids=[user_id(client, session)], channels=["email", "push"])
    # Only the incident API's check reads this; the app was built in test mode.
    runtime.settings = runtime.settings.model_copy(update={"env": Environment.PRODUCTION})
    with nothing_changes(app, runtime, mailbox, sms, "push without a provider"):
        response = client.post("/api/v1/admin/incidents", json=body, headers=operator)
        assert pointers(assert_problem(response, 422, "validation-error")) == {"#/channels"}
    runtime.push_sender = RecordingPush()  # a real provider is configured
    assert client.post("/api/v1/admin/incidents", json=body, headers=operator).status_code == 201


# -- back-off ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "wait"),
    [
        (1, timedelta(minutes=2)),
        (2, timedelta(minutes=4)),
        (8, timedelta(minutes=256)),
        (9, timedelta(hours=6)),
        (1000, timedelta(hours=6)),
    ],
)
def test_backoff_doubles_up_to_six_hours(attempts, wait):
    assert backoff(attempts) == wait
