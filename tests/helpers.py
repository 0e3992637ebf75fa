"""Flows that many tests need, driven through the public API."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, inspect, text

from app.services.outbox import DeliveryReport
from app.services.purposes import load_catalogue
from app.settings import Settings
from app.worker import OutboxWorker
from tests.fakes import Mailbox, SmsOutbox

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


def sign_in_with_passkey(client: FlaskClient, authenticator: Any) -> Any:
    """A username-less passkey sign-in (bearer delivery) from ``client``."""
    options = client.post(PASSKEY_AUTH_OPTIONS)
    assert options.status_code == 200, options.json
    answer = authenticator.get(options.json)
    body = {**answer, "challenge_id": options.json["challenge_id"], "token_delivery": "bearer"}
    return client.post(PASSKEY_AUTH_VERIFY, json=body)


def row_count(app: Any, table: str, where: str = "1=1", **params: Any) -> int:
    with app.extensions["privid.engine"].connect() as connection:
        found = connection.execute(text(f"SELECT COUNT(*) FROM {table} WHERE {where}"), params)
        return int(found.scalar_one())


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
    }
    env.update({f"PRIVID_{name}": value for name, value in overrides.items()})
    return env


def privid_command() -> str:
    """The installed `privid` command of this environment."""
    return str(Path(sys.executable).with_name("privid"))


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


def enable_totp(client: FlaskClient, token: str, at: datetime) -> tuple[Any, list[str]]:
    """Turns TOTP on for the session's account; returns the pyotp.TOTP and the recovery codes."""
    import pyotp

    enrolled = client.post("/api/v1/me/mfa/totp", headers=bearer(token))
    assert enrolled.status_code == 201, enrolled.json
    totp = pyotp.TOTP(enrolled.json["secret"])
    confirmed = client.post(
        "/api/v1/me/mfa/totp/confirm", json={"code": totp.at(at)}, headers=bearer(token)
    )
    assert confirmed.status_code == 200, confirmed.json
    return totp, confirmed.json["recovery_codes"]


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
