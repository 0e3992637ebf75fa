"""Flows that many tests need, driven through the public API."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

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
