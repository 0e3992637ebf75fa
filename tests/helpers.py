"""Flows that many tests need, driven through the public API."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask.testing import FlaskClient

from app.services.purposes import load_catalogue
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
