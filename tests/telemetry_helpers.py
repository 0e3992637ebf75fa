"""What the logs-and-metrics tests share: one full flow driven through any HTTP
client (the in-process test client or requests against gunicorn), reading a
/metrics scrape, and checking captured log lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Person, baseline_consent, new_person

METRICS_TOKEN = "metrics-" + "k" * 40
CLIENT_REQUEST_ID = "rp-trace-0001"
# A request id carrying a phone number: refused, a fresh id is used instead.
SMUGGLED_REQUEST_ID = "trace-8613912345678"
# Answers (status, json body or None, headers) to (method, path, json, data, headers).
Send = Callable[..., tuple[int, Any, dict[str, str]]]


@dataclass
class FlowRecord:
    """What the flow used (nothing of it may reach a log) and what it saw."""

    person: Person
    secrets: list[str] = field(default_factory=list)
    # (method, path, status, X-Request-Id answered)
    answers: list[tuple[str, str, int, str]] = field(default_factory=list)

    def sent(self, send: Send, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        status, body, headers = send(method, path, **kw)
        self.answers.append((method, path, status, headers.get("X-Request-Id", "")))
        return status, body


def full_flow(
    send: Send,
    email_code: Callable[[str], str],
    sms_code: Callable[[str], str],
    client_basic: tuple[str, str],
) -> FlowRecord:
    """Registration with both codes, a sign-in, a failed sign-in, an OAuth
    client_credentials token, consent withdrawal, bad input, a path holding the
    email, and password checks until one is rate-limited (the limit set to 2 a
    minute)."""
    person = new_person("Grace Brewster Hopper")
    record = FlowRecord(person)
    status, body = record.sent(
        send,
        "POST",
        "/api/v1/registration",
        json={
            "email": person.email,
            "phone": person.phone,
            "full_name": person.full_name,
            "password": person.password,
            "consent": baseline_consent(analytics="granted"),
        },
        headers={"X-Request-Id": CLIENT_REQUEST_ID},
    )
    assert status == 202, body
    flow = body["flow_id"]
    code = email_code(person.email)
    status, body = record.sent(
        send,
        "POST",
        f"/api/v1/registration/{flow}/verify",
        json={"channel": "email", "code": code},
        headers={"X-Request-Id": SMUGGLED_REQUEST_ID},
    )
    assert status == 200, body
    phone_code = sms_code(person.phone)
    status, body = record.sent(
        send,
        "POST",
        f"/api/v1/registration/{flow}/verify",
        json={"channel": "phone", "code": phone_code, "token_delivery": "bearer"},
    )
    assert status == 201, body
    record.secrets += [code, phone_code, flow, body["session"]["token"]]

    status, body = record.sent(
        send,
        "POST",
        "/api/v1/login/password",
        json={"identifier": person.email, "password": person.password, "token_delivery": "bearer"},
    )
    assert status == 200, body
    token = body["token"]
    record.secrets.append(token)
    status, body = record.sent(
        send,
        "POST",
        "/api/v1/login/password",
        json={"identifier": person.phone, "password": "wrong-" + person.password},
    )
    assert status == 401, body

    client_id, secret = client_basic
    status, body = record.sent(
        send,
        "POST",
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    assert status == 200, body
    record.secrets += [secret, body["access_token"]]

    status, body = record.sent(
        send,
        "POST",
        "/api/v1/me/consent/analytics/withdraw",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert status == 200, body

    # Errors: a malformed body, and a path that holds the email.
    status, _ = record.sent(
        send,
        "POST",
        "/api/v1/login/password",
        data=b'{"identifier": "' + person.email.encode() + b'",',
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    status, _ = record.sent(send, "GET", f"/api/v1/nothing/{person.email}")
    assert status == 404
    # Until refused: with in-memory limit storage each gunicorn worker counts
    # on its own, so the refusal comes by the fifth request at the latest.
    for _ in range(5):
        status, body = record.sent(
            send, "POST", "/api/v1/password/check", json={"password": person.password}
        )
        if status == 429:
            break
        assert status == 200, body
    assert status == 429, "the password check was never rate-limited"
    record.secrets += [person.email, person.phone, person.phone[3:], person.full_name]
    record.secrets.append(person.password)
    return record


def parse_lines(text: str) -> list[dict[str, Any]]:
    """Every line, which must each be one JSON object with the fixed fields."""
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        entry = json.loads(line)  # fails the test on any line that is not JSON
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message", "request_id"} <= entry.keys(), line
        parsed.append(entry)
    return parsed


def assert_nothing_personal(text: str, record: FlowRecord, address: str) -> None:
    for secret in [*record.secrets, address]:
        assert secret not in text, f"{secret!r} is in the logs"


def assert_ids_answered(record: FlowRecord) -> None:
    ids = [rid for *_, rid in record.answers]
    assert all(ids) and len(set(ids)) == len(ids), ids
    assert ids[0] == CLIENT_REQUEST_ID  # a well-formed id is kept
    assert ids[1] != SMUGGLED_REQUEST_ID  # one carrying a phone number is not


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A scrape as {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: dict[Any, float], name: str, **labels: str) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


def label_values(scrape: dict[Any, float], label: str) -> set[str]:
    return {v for (_, labels) in scrape for k, v in labels if k == label}
