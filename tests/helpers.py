"""What many tests share: flows driven through the public API, and assertions
about the API contract (problem documents, nothing changed by bad input).
Test modules import from here, never from each other."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pyotp
import pytest
import requests
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import CDPSession, Page
from sqlalchemy import Connection, create_engine, event, inspect, select, text
from sqlalchemy.engine import make_url
from werkzeug.test import TestResponse

from app.models import Base
from app.services.container import Runtime
from app.services.outbox import DeliveryReport
from app.services.purposes import load_catalogue
from app.settings import Settings
from app.worker import OutboxWorker
from tests.dpop_client import DpopKey
from tests.fakes import Mailbox, SmsOutbox

T = TypeVar("T")

_serial = itertools.count(1)
GOOD_PASSWORD = "velvet-orbit-canyon-42"


@dataclass
class Person:
    email: str
    phone: str  # E.164
    full_name: str
    password: str = GOOD_PASSWORD


def new_person(full_name: str = "李小龙") -> Person:
    n = next(_serial)
    return Person(
        email=f"person{n}@example.com",
        phone=f"+86139{n:08d}",
        full_name=full_name,
    )


POLICY_VERSION = "2026-06"  # published by the app fixture
CATALOGUE = load_catalogue()


def baseline_consent(**overrides: str) -> dict[str, Any]:
    """Grant what is required, refuse the rest, unless told otherwise."""
    decisions = [
        {
            "purpose": p.code,
            "decision": overrides.get(p.code, "granted" if p.required else "refused"),
        }
        for p in CATALOGUE.decided_at_sign_in()
    ]
    return {"policy_version": POLICY_VERSION, "decisions": decisions}


def start_registration(
    client: FlaskClient, person: Person, consent: dict[str, Any] | None = None
) -> Any:
    return client.post(
        "/api/v1/registration",
        json={
            "email": person.email,
            "phone": person.phone,
            "full_name": person.full_name,
            "password": person.password,
            "consent": consent if consent is not None else baseline_consent(),
        },
    )


def register(
    client: FlaskClient,
    mailbox: Mailbox,
    sms: SmsOutbox,
    person: Person | None = None,
    token_delivery: str = "bearer",
    consent: dict[str, Any] | None = None,
) -> tuple[Person, dict[str, Any]]:
    """A complete registration; returns the person and the session it opened."""
    person = person or new_person()
    started = start_registration(client, person, consent)
    assert started.status_code == 202, started.json
    flow = started.json["flow_id"]
    email_code = mailbox.last_code(person.email)
    first = client.post(
        f"/api/v1/registration/{flow}/verify", json={"channel": "email", "code": email_code}
    )
    assert first.status_code == 200, first.json
    phone_code = sms.last_code(person.phone)
    done = client.post(
        f"/api/v1/registration/{flow}/verify",
        json={"channel": "phone", "code": phone_code, "token_delivery": token_delivery},
    )
    assert done.status_code == 201, done.json
    return person, done.json["session"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: FlaskClient, identifier: str, password: str, delivery: str = "bearer") -> Any:
    return client.post(
        "/api/v1/login/password",
        json={"identifier": identifier, "password": password, "token_delivery": delivery},
    )


# -- passkeys and devices, through the API -----------------------------------------

PASSKEY_REG_OPTIONS = "/api/v1/webauthn/registration/options"
PASSKEY_REG_VERIFY = "/api/v1/webauthn/registration/verify"
PASSKEY_AUTH_OPTIONS = "/api/v1/webauthn/authentication/options"
PASSKEY_AUTH_VERIFY = "/api/v1/webauthn/authentication/verify"


def other_browser(app: Any, user_agent: str | None = None) -> FlaskClient:
    """Another browser or phone: its own, empty cookie jar."""
    other: FlaskClient = app.test_client()
    other.environ_base["wsgi.url_scheme"] = "https"
    if user_agent:
        other.environ_base["HTTP_USER_AGENT"] = user_agent
    return other


def passkey_options(client: FlaskClient, token: str) -> dict[str, Any]:
    options = client.post(PASSKEY_REG_OPTIONS, headers=bearer(token))
    assert options.status_code == 200, options.json
    return dict(options.json)


def register_passkey(
    client: FlaskClient, token: str, answer: dict[str, Any], challenge_id: str
) -> Any:
    """Send an authenticator's answer to the registration challenge it was made for."""
    body = {**answer, "challenge_id": challenge_id}
    return client.post(PASSKEY_REG_VERIFY, json=body, headers=bearer(token))


def registration(client: FlaskClient, token: str, authenticator: Any, **create: Any):
    options = client.post(PASSKEY_REG_OPTIONS, headers=bearer(token))
    assert options.status_code == 200, options.json
    answer = authenticator.create(options.json, **create)
    body = {**answer, "challenge_id": options.json["challenge_id"]}
    return client.post(PASSKEY_REG_VERIFY, json=body, headers=bearer(token)), body


def enrol(client: FlaskClient, token: str, authenticator: Any) -> dict[str, Any]:
    response, _ = registration(client, token, authenticator)
    assert response.status_code == 201, response.json
    return response.json


def passkey_sign_in(client: FlaskClient, authenticator: Any, **get: Any):
    options = client.post(PASSKEY_AUTH_OPTIONS)
    assert options.status_code == 200, options.json
    answer = authenticator.get(options.json, **get)
    body = {**answer, "challenge_id": options.json["challenge_id"], "token_delivery": "bearer"}
    return client.post(PASSKEY_AUTH_VERIFY, json=body), body


def row_count(app: Any, table: str, where: str = "1=1", **params: Any) -> int:
    with app.extensions["privid.engine"].connect() as connection:
        found = connection.execute(text(f"SELECT COUNT(*) FROM {table} WHERE {where}"), params)
        return int(found.scalar_one())


def session_user(app: Any, session_id: str) -> str:
    """The account a session (by its id, as sign-in answers it) belongs to."""
    with app.extensions["privid.engine"].connect() as connection:
        query = text("SELECT user_id FROM sessions WHERE id = :s")
        return str(connection.execute(query, {"s": session_id}).scalar_one())


def emails_to(runtime: Any, mailbox: Mailbox, address: str, subject_prefix: str) -> list[Any]:
    """Mail delivered to ``address`` whose subject starts so, once deliveries finished."""
    runtime.dispatcher.drain()
    return [m for m in mailbox.to(address) if str(m["Subject"]).startswith(subject_prefix)]


@contextmanager
def tamper_connection(app: Flask) -> Iterator[Connection]:
    """A connection of someone who can write the database but holds no key. On
    PostgreSQL they are a superuser who switches user triggers off for their
    session (session_replication_role), as the service itself never does."""
    with app.extensions["privid.engine"].begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL session_replication_role = replica"))
        yield connection


def wipe_chain_state(connection: Connection, table: str, last_hash: str) -> None:
    """Everything the database keeps about a chain's state, made to agree with
    a tampered table: heads reset to ``last_hash``, seals dropped."""
    chain = {"consent_records": "consent", "audit_events": "audit"}[table]
    present = set(inspect(connection).get_table_names())
    if "chain_heads" in present:
        connection.execute(
            text("UPDATE chain_heads SET last_hash = :h WHERE name = :n"),
            {"h": last_hash, "n": chain},
        )
        connection.execute(
            text("DELETE FROM chain_heads WHERE name LIKE :prefix"), {"prefix": f"{chain}:%"}
        )
    if "chain_seals" in present:
        connection.execute(text("DELETE FROM chain_seals WHERE chain = :n"), {"n": chain})


# -- the outbox and the processes that run the service ---------------------------


def deliver_outbox(app: Flask) -> DeliveryReport:
    """One pass of the outbox worker, as `flask outbox-deliver` runs it."""
    return OutboxWorker.for_app(app).run_once()


def statements_of(app: Flask, request: Callable[[], Any]) -> list[str]:
    """The SQL statements (text, not values) that ``request()`` runs."""
    engine = app.extensions["privid.engine"]
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        request()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return statements


@dataclass(frozen=True)
class Wire:
    """What a request said to PostgreSQL, read off libpq's protocol trace."""

    # Every statement the server was asked to run, in order, as its text:
    # simple Queries (BEGIN, COMMIT, ROLLBACK) and extended-protocol Executes.
    executed: list[str]
    # Each time the server said it was ready again: one per round trip.
    round_trips: int


def wire_of(app: Flask, request: Callable[[], T]) -> tuple[T, Wire]:
    """What ``request()`` returned, and what it said to PostgreSQL: every
    pooled connection it used is traced, BEGIN and COMMIT included
    (SQLAlchemy's statement events never see those)."""
    engine = app.extensions["privid.engine"]
    answers: list[T] = []
    with tempfile.TemporaryFile(mode="w+") as trace:
        _trace_connections(engine, trace.fileno(), lambda: answers.append(request()))
        trace.seek(0)
        traced = trace.read()
    messages: list[str] = []
    for line in traced.splitlines():
        # A message is one line, unless its statement text spans several.
        if _TRACED_MESSAGE.match(line) or not messages:
            messages.append(line)
        else:
            messages[-1] += "\n" + line
    return answers[0], _read_trace(messages)


_TRACED_MESSAGE = re.compile(r"[FB]\t\d+\t")


def _trace_connections(engine: Any, fileno: int, request: Callable[[], Any]) -> None:
    # Tracing starts before a connection's first statement (ahead of the
    # service's own listener, which may send BEGIN) and stops when the pool
    # takes the connection back, after COMMIT. A pooled connection's checkout
    # event is not a reliable start: it fires only on a fresh checkout.
    traced: dict[int, Any] = {}

    def start(conn, cursor, *_args) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection = cursor.connection
        if id(dbapi_connection) in traced:
            return
        # Unprepared, every execution carries its text (and no extra round
        # trip for preparing one turns up in the count).
        traced[id(dbapi_connection)] = (dbapi_connection, dbapi_connection.prepare_threshold)
        dbapi_connection.prepare_threshold = None
        dbapi_connection.pgconn.trace(fileno)
        dbapi_connection.pgconn.set_trace_flags(1)  # no timestamps

    def stop(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        if (entry := traced.pop(id(dbapi_connection), None)) is not None:
            _untrace(*entry)

    event.listen(engine, "before_cursor_execute", start, insert=True)
    event.listen(engine, "checkin", stop)
    try:
        request()
    finally:
        event.remove(engine, "before_cursor_execute", start)
        event.remove(engine, "checkin", stop)
        for entry in traced.values():
            _untrace(*entry)


def _untrace(dbapi_connection: Any, prepare_threshold: int | None) -> None:
    dbapi_connection.pgconn.untrace()
    dbapi_connection.prepare_threshold = prepare_threshold


def _quoted(field: str) -> tuple[str, str]:
    """The first quoted word of a trace field, and what follows it."""
    opening = field.index('"')
    closing = field.index('"', opening + 1)
    return field[opening + 1 : closing], field[closing + 1 :]


def _read_trace(messages: list[str]) -> Wire:
    prepared: dict[str, str] = {}
    bound = ""
    executed: list[str] = []
    round_trips = 0
    for line in messages:
        direction, _length, message, *rest = [*line.split("\t", 3), ""]
        field = rest[0]
        if direction == "B" and message == "ReadyForQuery":
            round_trips += 1
        if direction != "F":
            continue
        if message == "Query":
            executed.append(field.strip().strip('"'))
        elif message == "Parse":
            name, after = _quoted(field)
            # The statement's text runs to the last quote; its parameter types follow.
            prepared[name] = after[after.index('"') + 1 : after.rindex('"')]
        elif message == "Bind":
            _portal, after = _quoted(field)
            bound, _ = _quoted(after)
        elif message == "Execute":
            executed.append(prepared[bound])
    return Wire(executed, round_trips)


def deliver_all(app: Flask) -> None:
    """Outbox passes until nothing is due: a flood can exceed one pass's batch."""
    for _ in range(100):
        report = deliver_outbox(app)
        if report.total == 0:
            return
    raise AssertionError("the outbox never empties")


def privid_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment for a `privid`/gunicorn process sharing the test's
    database, rate-limit storage, mail server and SMS gateway."""
    env = {
        **os.environ,
        "PRIVID_ENV": "test",
        "PRIVID_DATABASE_URL": settings.database_url,
        "PRIVID_RATELIMIT_STORAGE_URI": settings.ratelimit_storage_uri,
        "PRIVID_EMAIL_BACKEND": "smtp",
        "PRIVID_SMTP_HOST": "127.0.0.1",
        "PRIVID_SMTP_PORT": str(settings.smtp_port),
        "PRIVID_SMS_BACKEND": "http",
        "PRIVID_SMS_HTTP_URL": settings.sms_http_url,
        "PRIVID_SMS_HTTP_TOKEN": settings.sms_http_token,
        "PRIVID_ARGON2_MEMORY_KIB": str(settings.argon2_memory_kib),
        "PRIVID_ARGON2_TIME_COST": str(settings.argon2_time_cost),
        # A worker seals the ledgers: the test's key and checkpoint folder.
        "PRIVID_CHAIN_KEY": settings.chain_key,
        "PRIVID_CHAIN_CHECKPOINT_DIR": settings.chain_checkpoint_dir,
    }
    env.update({f"PRIVID_{name}": value for name, value in overrides.items()})
    return env


def privid_command() -> str:
    """The installed `privid` command of this environment."""
    return str(Path(sys.executable).with_name("privid"))


def wait_until_ready(
    base: str, process: subprocess.Popen[bytes], log: Path, what: str = "the server"
) -> None:
    """Polls ``base``/readyz until it answers 200; fails with the process's log
    if it exits or takes longer than 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{what} exited:\n{log.read_text(errors='replace')}"
        try:
            if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} did not become ready:\n{log.read_text(errors='replace')}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def https_client(app: Any, forwarded_for: str | None = None) -> FlaskClient:
    """A client of its own (own cookie jar); with ``forwarded_for`` it talks
    through the trusted proxy as that address (PRIVID_TRUSTED_PROXY_COUNT=1)."""
    client: FlaskClient = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    if forwarded_for:
        client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client


def race(app: Any, count: int, attempt: Any) -> list[Any]:
    """Runs ``attempt(index, client)`` in ``count`` threads, each with its own
    test client (so its own database connection), released together by a barrier."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        own = https_client(app)
        barrier.wait(timeout=30)
        results[index] = attempt(index, own)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def start_reset(client: FlaskClient, identifier: str) -> Any:
    started = client.post("/api/v1/password-reset", json={"identifier": identifier})
    assert started.status_code == 202, started.json
    return started


def finish_reset(client: FlaskClient, started: Any, identifier: str, code: str, new: str) -> Any:
    """Confirms the reset that ``started`` (the reset request's answer) began."""
    body = {
        "identifier": identifier,
        "flow": started.json["flow"],
        "code": code,
        "new_password": new,
    }
    return client.post("/api/v1/password-reset/confirm", json=body)


def reset_password(client: FlaskClient, mailbox: Mailbox, email: str, new_password: str) -> Any:
    """The whole emailed password reset; returns the confirmation's answer."""
    before = len(mailbox.to(email))
    started = start_reset(client, email)
    code = mailbox.last_code(email, count=before + 1)
    return finish_reset(client, started, email, code, new_password)


def request_sms_code(client: FlaskClient, phone: str, **kw: Any) -> Any:
    """Asks for a sign-in code; returns the answer (202, with the flow handle)."""
    return client.post("/api/v1/login/sms/code", json={"phone": phone}, **kw)


def sms_sign_in(client: FlaskClient, started: Any, phone: str, code: str) -> Any:
    """Finishes the SMS sign-in that ``started`` (the code request's answer) began."""
    body = {"phone": phone, "flow": started.json["flow"], "code": code, "token_delivery": "bearer"}
    return client.post("/api/v1/login/sms", json=body)


# -- TOTP ------------------------------------------------------------------

# 10 s into a 30 s step, so a code typed "now" is not at a step boundary.
TOTP_START = datetime(2026, 11, 27, 9, 0, 10, tzinfo=UTC)


def enable_totp(
    client: FlaskClient, session: dict[str, Any], at: datetime = TOTP_START
) -> tuple[pyotp.TOTP, list[str]]:
    """Enrols and confirms TOTP; returns the generator and the recovery codes.
    A cookie session (token None) sends its CSRF token instead of a bearer."""
    auth = (
        bearer(session["token"])
        if session.get("token")
        else {"X-CSRF-Token": session["csrf_token"]}
    )
    enrolled = client.post("/api/v1/me/mfa/totp", headers=auth)
    assert enrolled.status_code == 201, enrolled.json
    assert enrolled.json["otpauth_uri"].startswith("otpauth://totp/privid:")
    assert enrolled.json["qr_svg"].lstrip().startswith("<?xml")
    totp = pyotp.TOTP(enrolled.json["secret"])
    confirmed = client.post("/api/v1/me/mfa/totp/confirm", json={"code": totp.at(at)}, headers=auth)
    assert confirmed.status_code == 200, confirmed.json
    codes = confirmed.json["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    return totp, codes


# -- the API contract: problem documents, nothing changed, limits, clients ----

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://privid.dev/problems/"
HIGH_LIMITS = {
    name: "10000/minute"
    for name in (
        "limit_login_per_ip",
        "limit_login_per_account",
        "limit_code_send_per_destination",
        "limit_code_send_per_ip",
        "limit_registration_per_ip",
        "limit_reset_per_ip",
        "limit_requests_per_account",
        "limit_verification_per_account",
        "limit_verification_per_document",
    )
}

ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.6478.71 Mobile Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
WINDOWS_FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"


# -- problem documents ---------------------------------------------------------


def assert_problem(response: TestResponse, status: int, slug: str | None = None) -> dict[str, Any]:
    """An RFC 9457 document with the given status (and type slug); returns its body."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, f"{response.status_code} {text[:500]}"
    assert response.mimetype == PROBLEM_MEDIA_TYPE, (response.mimetype, text[:500])
    body = response.get_json(force=True)
    assert isinstance(body, dict), text
    for member, kind in (("type", str), ("title", str), ("status", int), ("detail", str)):
        assert isinstance(body.get(member), kind), (member, body)
    assert body["status"] == status
    assert body["type"].startswith(PROBLEM_BASE), body
    assert body["title"].strip() and body["detail"].strip(), body
    if slug is not None:
        assert body["type"] == PROBLEM_BASE + slug, body
    for error in body.get("errors", []):
        assert isinstance(error.get("pointer"), str) and error["pointer"].startswith("#"), body
        assert isinstance(error.get("detail"), str) and error["detail"], body
    return body


def pointers(body: dict[str, Any]) -> set[str]:
    return {e["pointer"] for e in body.get("errors", [])}


def www_authenticate(response: TestResponse) -> str:
    return response.headers.get("WWW-Authenticate", "")


def assert_invalid_token(response: TestResponse) -> dict[str, Any]:
    body = assert_problem(response, 401)
    challenge = www_authenticate(response)
    assert challenge.startswith("Bearer "), challenge
    assert 'error="invalid_token"' in challenge, challenge
    return body


# -- observing side effects ---------------------------------------------------


def table_rows(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order."""
    engine = app.extensions["privid.engine"]
    with engine.connect() as connection:
        return {
            table.name: sorted((tuple(row) for row in connection.execute(select(table))), key=repr)
            for table in Base.metadata.sorted_tables
        }


def row_counts(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, int]:
    return {name: len(items) for name, items in rows.items()}


def database_text(app: Flask) -> str:
    """Every stored value rendered as text, for 'is this secret stored anywhere' checks."""
    parts: list[str] = []
    for items in table_rows(app).values():
        for row in items:
            for value in row:
                if isinstance(value, bytes | bytearray | memoryview):
                    parts.append(bytes(value).decode("latin-1"))
                else:
                    parts.append(str(value))
    return "\n".join(parts)


def sent_messages(runtime: Runtime, mailbox: Mailbox, sms: SmsOutbox) -> tuple[int, int]:
    """(emails, SMS) delivered so far, once the outbox worker has run."""
    if mailbox.deliver is not None:
        mailbox.deliver()  # one pass of the outbox worker (tests/fakes.py)
    with mailbox.lock:
        emails = len(mailbox.messages)
    with sms.lock:
        texts = len(sms.messages)
    return emails, texts


@contextmanager
def nothing_changes(
    app: Flask, runtime: Runtime, mailbox: Mailbox, sms: SmsOutbox, what: str = ""
) -> Iterator[None]:
    """The block may not write a row or send a message."""
    # Deliver first: a delivery changes outbox rows.
    before_sent = sent_messages(runtime, mailbox, sms)
    before_rows = table_rows(app)
    yield
    after_rows = table_rows(app)
    after_sent = sent_messages(runtime, mailbox, sms)
    assert row_counts(after_rows) == row_counts(before_rows), what
    changed = [name for name in before_rows if before_rows[name] != after_rows[name]]
    assert not changed, f"{what}: tables changed: {changed}"
    assert after_sent == before_sent, f"{what}: messages sent (emails, SMS): {after_sent}"


# -- the JSON endpoints that take a body ----------------------------------------


@dataclass
class World:
    """A registered person signed in with a bearer token, and a live registration flow."""

    person: Person
    token: str
    session_id: str
    flow_id: str


def make_world(
    client: FlaskClient,
    mailbox: Mailbox,
    sms: SmsOutbox,
    runtime: Runtime,
    consent: dict[str, Any] | None = None,
) -> World:
    person, session = register(client, mailbox, sms, token_delivery="bearer", consent=consent)
    # An operator, so the operator-only endpoints reach their body checks too.
    granted = client.application.test_cli_runner().invoke(args=["operator-grant", person.email])
    assert granted.exit_code == 0, granted.output
    started = start_registration(client, new_person(), consent)
    assert started.status_code == 202, started.json
    runtime.dispatcher.drain()
    return World(person, session["token"], session["session_id"], started.json["flow_id"])


BodyFactory = Callable[[World], dict[str, Any]]

_CREDENTIAL: dict[str, Any] = {
    "challenge_id": "00000000-0000-0000-0000-000000000000",
    "id": "AAAA",
    "rawId": "AAAA",
    "type": "public-key",
    "clientExtensionResults": {},
}
_ASSERTION = {"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA"}

# Keyed by (method, OpenAPI path); each builds a body that passes validation.
VALID_BODIES: dict[tuple[str, str], BodyFactory] = {
    ("post", "/api/v1/registration"): lambda w: (
        lambda p: {
            "email": p.email,
            "phone": p.phone,
            "full_name": p.full_name,
            "password": p.password,
        }
    )(new_person()),
    ("post", "/api/v1/registration/{flow_id}/verify"): lambda w: {
        "channel": "email",
        "code": "000000",
    },
    ("post", "/api/v1/registration/{flow_id}/resend"): lambda w: {"channel": "phone"},
    ("post", "/api/v1/login/password"): lambda w: {
        "identifier": w.person.email,
        "password": w.person.password,
        "token_delivery": "bearer",
    },
    ("post", "/api/v1/login/sms/code"): lambda w: {"phone": w.person.phone},
    ("post", "/api/v1/login/sms"): lambda w: {
        "phone": w.person.phone,
        "flow": "a-flow-handle-that-was-never-issued",
        "code": "000000",
    },
    ("post", "/api/v1/password-reset"): lambda w: {"identifier": w.person.email},
    ("post", "/api/v1/password-reset/confirm"): lambda w: {
        "identifier": w.person.email,
        "flow": "a-flow-handle-that-was-never-issued",
        "code": "000000",
        "new_password": "amber-quartz-meadow-77",
    },
    ("post", "/api/v1/me/password"): lambda w: {
        "current_password": w.person.password,
        "new_password": "amber-quartz-meadow-77",
    },
    ("post", "/api/v1/me/email"): lambda w: {
        "email": new_person().email,
        "current_password": w.person.password,
    },
    ("post", "/api/v1/me/phone"): lambda w: {
        "phone": new_person().phone,
        "current_password": w.person.password,
    },
    ("post", "/api/v1/me/{kind}/confirm"): lambda w: {"code": "000000"},
    ("post", "/api/v1/me/consent/decisions"): lambda w: {
        "policy_version": "2026-06",
        "decisions": [{"purpose": "analytics", "decision": "granted"}],
    },
    ("post", "/api/v1/me/consent/{purpose}/grant"): lambda w: {"policy_version": "2026-06"},
    ("post", "/api/v1/me/step-up"): lambda w: {"password": w.person.password},
    ("post", "/api/v1/login/second-factor"): lambda w: {
        "ticket": "not-a-ticket",
        "totp_code": "000000",
    },
    ("post", "/api/v1/me/mfa/totp/confirm"): lambda w: {"code": "000000"},
    ("post", "/api/v1/me/name"): lambda w: {
        "full_name": "Grace Hopper",
        "current_password": w.person.password,
    },
    ("post", "/api/v1/me/requests"): lambda w: {"kind": "deletion", "categories": ["other"]},
    ("post", "/api/v1/me/cancellation"): lambda w: {"confirm": "cancel my account"},
    ("post", "/api/v1/admin/requests/{request_id}/complete"): lambda w: {"outcome": "Done."},
    ("post", "/api/v1/admin/requests/{request_id}/refuse"): lambda w: {"reason": "Because."},
    ("post", "/api/v1/admin/incidents"): lambda w: {
        "title": "Sign-in records exposed",
        "facts": "A misconfigured log store exposed sign-in records.",
        "impact": "Sign-in times and truncated IP addresses may have been read.",
        "measures": "The store was closed and access keys rotated.",
        "advice": "Review your active sessions and change your password.",
        "remedies": "Contact privacy@example.com for help or compensation.",
        "window": {
            "from": "2026-11-01T00:00:00Z",
            "to": "2026-11-02T00:00:00Z",
            "event_types": ["login.succeeded"],
        },
        "channels": ["email"],
    },
    ("post", "/api/v1/admin/oauth-clients"): lambda w: {
        "name": "Partner shop",
        "client_type": "confidential",
        "token_endpoint_auth_method": "client_secret_basic",
        "redirect_uris": ["https://shop.example/cb"],
        "post_logout_redirect_uris": ["https://shop.example/bye"],
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": ["openid", "offline_access"],
        "require_pkce": True,
        "id_token_signed_response_alg": "RS256",
        "access_token_format": "jwt",
        "dpop_bound": False,
        "first_party": False,
        "subject_type": "pairwise",
        "sector_identifier": "shop.example",
    },
    ("post", "/api/v1/admin/policies"): lambda w: {
        "version": "2026-12",
        "effective_at": "2026-12-01T00:00:00Z",
        "text": "A new text.",
        "material": True,
        "changes": "Sharing with a new partner.",
        "affected_purposes": ["partner_sharing"],
    },
    # Passkeys: well-formed credentials (toJSON() shape) the service then refuses.
    ("post", "/api/v1/webauthn/registration/verify"): lambda w: {
        **_CREDENTIAL,
        "response": {"clientDataJSON": "e30", "attestationObject": "oA"},
    },
    ("post", "/api/v1/webauthn/authentication/verify"): lambda w: {
        **_CREDENTIAL,
        "response": _ASSERTION,
    },
    ("post", "/api/v1/me/step-up/webauthn/verify"): lambda w: {
        **_CREDENTIAL,
        "response": _ASSERTION,
    },
    ("post", "/api/v1/me/credentials/{credential_id}/rename"): lambda w: {"nickname": "Phone"},
    ("post", "/api/v1/login/second-factor/email"): lambda w: {"ticket": "not-a-ticket"},
    ("post", "/api/v1/login/second-factor/sms"): lambda w: {"ticket": "not-a-ticket"},
    ("post", "/api/v1/me/devices/{device_id}/rename"): lambda w: {"label": "Work laptop"},
    ("post", "/api/v1/me/devices/app-key"): lambda w: {
        "challenge_id": "00000000-0000-0000-0000-000000000000",
        "label": "Phone",
        "platform": "android",
    },
}

PATH_VALUES: dict[str, Callable[[World], str]] = {
    "flow_id": lambda w: w.flow_id,
    "kind": lambda w: "email",
    "session_id": lambda w: w.session_id,
    "purpose": lambda w: "analytics",
    "record_id": lambda w: "1",
    "incident_id": lambda w: "00000000-0000-0000-0000-000000000000",
    "request_id": lambda w: "00000000-0000-0000-0000-000000000000",
    "version": lambda w: "2026-06",
    "credential_id": lambda w: "00000000-0000-0000-0000-000000000000",
    "device_id": lambda w: "00000000-0000-0000-0000-000000000000",
    "client_id": lambda w: "0" * 32,
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as documented, with {params}
    operation: dict[str, Any]
    schema: dict[str, Any]  # the request body's JSON Schema, resolved

    @property
    def needs_auth(self) -> bool:
        return bool(self.operation.get("security"))

    def url(self, world: World) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)](world), self.path)

    def headers(self, world: World) -> dict[str, str]:
        return bearer(world.token) if self.needs_auth else {}

    def valid_body(self, world: World) -> dict[str, Any]:
        return VALID_BODIES[(self.method, self.path)](world)

    def send(
        self,
        client: FlaskClient,
        world: World,
        data: bytes | str,
        content_type: str | None = "application/json",
        **kwargs: Any,
    ) -> TestResponse:
        headers = {**self.headers(world), **kwargs.pop("headers", {})}
        if content_type is not None:
            headers["Content-Type"] = content_type
        return client.open(
            self.url(world), method=self.method.upper(), data=data, headers=headers, **kwargs
        )

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


def resolve_ref(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and token in node, f"unresolvable $ref {ref}"
        node = node[token]
    return node


def body_endpoints(document: dict[str, Any]) -> list[Endpoint]:
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "requestBody" not in operation:
                continue
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            if "$ref" in schema:
                schema = resolve_ref(document, schema["$ref"])
            found.append(Endpoint(method, path, operation, schema))
    return found


def publish_policy(
    app: Flask,
    *,
    version: str,
    effective_at: datetime,
    material: bool,
    changes: str,
    affected_purposes: tuple[str, ...] | list[str] = (),
    text: str = "A later version of the test platform's privacy policy.",
) -> None:
    """Publish a policy version as an operator's `privid` command does."""
    from app.cli import unit_of_work
    from app.services.policies import NewPolicy

    with app.app_context(), unit_of_work() as svc:
        svc.policies.publish(
            NewPolicy(
                version=version,
                effective_at=effective_at,
                text=text,
                material=material,
                changes=changes,
                affected_purposes=list(affected_purposes),
            ),
            published_by="cli",
        )


def virtual_authenticator(
    page: Page, *, resident_key: bool = True, user_verification: bool = True
) -> str:
    """A platform authenticator (CTAP2, internal) in the page's browser, through
    the DevTools WebAuthn domain; it says yes to every presence and
    verification check. Returns its id (WebAuthn.getCredentials takes it)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": resident_key,
                "hasUserVerification": user_verification,
                "isUserVerified": user_verification,
                "automaticPresenceSimulation": True,
            }
        },
    )
    # The session must outlive this call: the authenticator lives in it.
    _cdp_sessions[page] = cdp
    return str(added["authenticatorId"])


_cdp_sessions: weakref.WeakKeyDictionary[Page, CDPSession] = weakref.WeakKeyDictionary()


def authenticator_credentials(page: Page, authenticator_id: str) -> list[dict[str, Any]]:
    """The credentials a virtual authenticator holds."""
    cdp = _cdp_sessions[page]
    found = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    return list(found["credentials"])


SERIOUS_IMPACTS = {"serious", "critical"}


def assert_accessible(page: Page) -> None:
    """axe-core on the page as it is now: no serious or critical violation."""
    results = Axe().run(page)
    serious = [
        f"{v['id']} ({v['impact']}): {v['help']} -> "
        + "; ".join(", ".join(node["target"]) for node in v["nodes"])
        for v in results.response["violations"]
        if v.get("impact") in SERIOUS_IMPACTS
    ]
    assert serious == [], "accessibility violations:\n" + "\n".join(serious)


def sign_in_browser(
    page: Page, mailbox: Mailbox, sms: SmsOutbox, consent: dict[str, Any] | None = None
) -> Person:
    """A new account, registered through the JSON API from the page's own
    browser context (so its cookie session lands in the browser's jar), with
    the baseline consent unless told otherwise: for tests of pages behind
    sign-in. Tests of the sign-in pages themselves sign in through the pages."""
    person = new_person()
    api = page.request
    started = api.post(
        "/api/v1/registration",
        data={
            "email": person.email,
            "phone": person.phone,
            "full_name": person.full_name,
            "password": person.password,
            "consent": consent if consent is not None else baseline_consent(),
        },
    )
    assert started.status == 202, started.text()
    flow = started.json()["flow_id"]
    verify = f"/api/v1/registration/{flow}/verify"
    first = api.post(verify, data={"channel": "email", "code": mailbox.last_code(person.email)})
    assert first.status == 200, first.text()
    done = api.post(
        verify,
        data={"channel": "phone", "code": sms.last_code(person.phone), "token_delivery": "cookie"},
    )
    assert done.status == 201, done.text()
    return person


# --- signin pages ---


def set_user_verified(page: Page, authenticator_id: str, verified: bool) -> None:
    """Whether the page's virtual authenticator passes its user-verification
    check (fingerprint, face, PIN) from now on."""
    _cdp_sessions[page].send(
        "WebAuthn.setUserVerified",
        {"authenticatorId": authenticator_id, "isUserVerified": verified},
    )


_REGISTER_PASSKEY = """async () => {
  const options = await privid.postJson('/api/v1/webauthn/registration/options');
  if (!options.ok) return options;
  const { challenge_id, ...publicKey } = options.data;
  let credential;
  try {
    credential = await privid.create(publicKey);
  } catch (error) {
    return { ok: false, status: 0, error: error.name };
  }
  return privid.postJson('/api/v1/webauthn/registration/verify', { ...credential, challenge_id });
}"""


def register_passkey_in_page(page: Page) -> dict[str, Any]:
    """A passkey for the signed-in account, made by the page's authenticator
    with the pages' own webauthn.js (on /policies, a page that loads no other
    script); the API's answer, or the browser's refusal as status 0."""
    if not page.url.endswith("/policies"):
        page.goto("/policies")
    page.add_script_tag(url="/assets/webauthn.js")
    result: dict[str, Any] = page.evaluate(_REGISTER_PASSKEY)
    return result


def without_passkey_autofill(page: Page) -> None:
    """The page's browser reports no conditional mediation (no passkeys in
    autofill), as browsers without it do: Chromium's virtual authenticators
    would otherwise answer the sign-in page's autofill request at once."""
    page.add_init_script(
        "if (window.PublicKeyCredential) "
        "PublicKeyCredential.isConditionalMediationAvailable = async () => false;"
    )


# --- account pages ---

_CSRF_META = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)">')


def account_csrf(client: FlaskClient, path: str = "/account") -> str:
    """The signed-in browser's form token, as a page hands it out."""
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    found = _CSRF_META.search(page.get_data(as_text=True))
    assert found is not None
    return found.group(1)


def account_form(client: FlaskClient, path: str, **fields: str) -> TestResponse:
    """Post a page's form as the browser would, with its CSRF token."""
    return client.post(path, data={"csrf_token": account_csrf(client), **fields})


# --- signup pages ---

# POST /api/v1/password/check (live feedback on the sign-up page): a valid body
# for the contract tests, with every optional detail given.
# POST /api/v1/me/identity-verification: a sandbox test identity (verification/sandbox.py).
VALID_BODIES[("post", "/api/v1/me/identity-verification")] = lambda w: {
    "full_name": "张三",
    "document_type": "cn_resident_id_card",
    "document_number": "11010519491231002X",
}
VALID_BODIES[("post", "/api/v1/password/check")] = lambda w: {
    "password": GOOD_PASSWORD,
    "email": w.person.email,
    "phone": w.person.phone,
    "full_name": w.person.full_name,
}


# -- what a database holds, for "is this secret stored anywhere" searches ------------


def render(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")


def dump_tables(app: Flask) -> tuple[bytes, set[str], int]:
    """Every column of every row of every model table, as bytes."""
    chunks: list[bytes] = []
    rows = 0
    with app.extensions["privid.engine"].connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(select(table)).mappings():
                rows += 1
                chunks.extend(render(value) for value in row.values())
    return b"\x00".join(chunks), {t.name for t in Base.metadata.sorted_tables}, rows


def database_files(app: Flask) -> list[Path]:
    url = make_url(str(app.extensions["privid.engine"].url))
    main = Path(str(url.database))
    candidates = [main, *(main.with_name(main.name + s) for s in ("-wal", "-shm", "-journal"))]
    return [path for path in candidates if path.exists()]


def file_bytes(app: Flask) -> bytes:
    """The bytes the database keeps on disk for our tables."""
    engine = app.extensions["privid.engine"]
    if engine.dialect.name == "sqlite":
        return b"\x00".join(path.read_bytes() for path in database_files(app))
    # PostgreSQL: flush to disk, then read each table's heap file as the server
    # stores it (the test role is a superuser, as on the CI machine).
    chunks = []
    with engine.connect() as connection:
        connection.execute(text("CHECKPOINT"))
        for table in inspect(connection).get_table_names():
            path = connection.execute(
                text("SELECT pg_relation_filepath(CAST(:t AS regclass))"), {"t": table}
            ).scalar_one()
            chunks.append(
                connection.execute(text("SELECT pg_read_binary_file(:p)"), {"p": path}).scalar_one()
            )
    assert chunks, "no table files were read"
    return b"\x00".join(bytes(chunk) for chunk in chunks)


# WeChat sign-in (app/wechat): bodies that pass validation, with a ticket nobody issued.
_WECHAT_TICKET = "not-a-ticket-anyone-issued.x"
VALID_BODIES.update(
    {
        ("post", "/api/v1/login/wechat"): lambda w: {"code": "a-code-wechat-never-gave"},
        ("post", "/api/v1/login/wechat/link/password"): lambda w: {
            "ticket": _WECHAT_TICKET,
            "identifier": w.person.email,
            "password": w.person.password,
        },
        ("post", "/api/v1/login/wechat/phone/code"): lambda w: {
            "ticket": _WECHAT_TICKET,
            "phone": w.person.phone,
        },
        ("post", "/api/v1/login/wechat/phone"): lambda w: {
            "ticket": _WECHAT_TICKET,
            "phone": w.person.phone,
            "flow": "a-flow-handle-that-was-never-issued",
            "code": "000000",
        },
        ("post", "/api/v1/login/wechat/link/passkey"): lambda w: {
            **_CREDENTIAL,
            "ticket": _WECHAT_TICKET,
            "response": _ASSERTION,
        },
        ("post", "/api/v1/me/password/new"): lambda w: {"new_password": "amber-quartz-meadow-77"},
        ("post", "/api/v1/me/password/remove"): lambda w: {"current_password": w.person.password},
    }
)

# -- migrations -------------------------------------------------------------------


@pytest.fixture
def scratch_url(tmp_path: Path) -> Iterator[str]:
    """An empty database of the suite's kind, dropped afterwards."""
    pg_url = os.environ.get("PRIVID_TEST_DATABASE_URL", "")
    if not pg_url:
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    schema = f"probe_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


# -- binding a phone app's key (DPoP) ------------------------------------------------

APP_UA = "privid-android/3.1 okhttp/4.12.0"
CHALLENGE = "/api/v1/me/devices/app-key/challenge"
BIND = "/api/v1/me/devices/app-key"


def ask_challenge(client, headers: dict[str, str]) -> dict[str, Any]:
    response = client.post(CHALLENGE, headers=headers)
    assert response.status_code == 200, response.json
    return dict(response.json)


def bind(
    client,
    token: str,
    key: DpopKey,
    clock,
    challenge: dict[str, Any],
    *,
    scheme: str = "Bearer",
    nonce: str | None = None,
    proof_token: str | None = None,
    label: str = "Li Wei's phone",
    platform: str = "android",
):
    proof = key.proof(
        "POST",
        BIND,
        token=proof_token or token,
        nonce=challenge["nonce"] if nonce is None else nonce,
        iat=clock.now().timestamp(),
    )
    return client.post(
        BIND,
        json={"challenge_id": challenge["challenge_id"], "label": label, "platform": platform},
        headers={"Authorization": f"{scheme} {token}", "DPoP": proof},
    )
