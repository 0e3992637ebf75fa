"""Helpers for the API-contract tests (bad input, sessions, CSRF, OpenAPI, rate limits).

Kept apart from tests/helpers.py, which other test modules own."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from app.models import Base
from app.services.container import Runtime
from tests.fakes import Mailbox, SmsOutbox
from tests.helpers import Person, bearer, new_person, register, start_registration

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
