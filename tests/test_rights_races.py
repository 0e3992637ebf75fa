"""Data-subject requests under pressure: the daily export cap holds against
concurrent exports, an operator's concurrent answers to one request leave
exactly one answer, and making requests is rate limited per account with
repeats of an open request refused.

The races run on PostgreSQL (PRIVID_TEST_DATABASE_URL). On SQLite every write
transaction starts with BEGIN IMMEDIATE, so the requests cannot interleave
there; the same tests still check that none of them fails with a 500."""

from __future__ import annotations

import threading
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from limits import parse as parse_limit
from werkzeug.test import TestResponse

from tests.helpers import assert_problem, bearer, new_person, register

CAP = 3


def _own_client(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    return client


def _all_at_once(app: Flask, calls: list[Callable[[FlaskClient], TestResponse]]) -> list[int]:
    """Each call on its own client and thread, released together by a barrier."""
    statuses: list[int] = [0] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(n: int) -> None:
        client = _own_client(app)
        barrier.wait(timeout=30)
        statuses[n] = calls[n](client).status_code

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses


def test_ten_concurrent_exports_complete_only_as_many_as_the_daily_cap(app, client, mailbox, sms):
    _, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    export = lambda c: c.post("/api/v1/me/export", headers=auth)  # noqa: E731
    statuses = _all_at_once(app, [export] * 10)
    assert sorted(statuses) == [200] * CAP + [429] * (10 - CAP), statuses
    listed = client.get("/api/v1/me/requests", headers=auth).json["requests"]
    assert sorted(r["status"] for r in listed) == ["completed"] * CAP + ["refused"] * (10 - CAP)
    # Still capped afterwards.
    assert_problem(client.post("/api/v1/me/export", headers=auth), 429, "request-refused")


def _operator(app: Flask, client: FlaskClient, mailbox, sms) -> dict[str, str]:
    person, session = register(client, mailbox, sms, new_person("Operator One"))
    granted = app.test_cli_runner().invoke(args=["operator-grant", person.email])
    assert granted.exit_code == 0, granted.output
    return bearer(session["token"])


def test_an_operators_concurrent_complete_and_refuse_leave_exactly_one_answer(
    app, client, mailbox, sms
):
    _, session = register(client, mailbox, sms)
    mine = bearer(session["token"])
    staff = _operator(app, client, mailbox, sms)
    for round_ in range(4):
        made = client.post(
            "/api/v1/me/requests",
            json={"kind": "rectification" if round_ % 2 else "deletion", "categories": ["other"]},
            headers=mine,
        )
        assert made.status_code == 201, made.json
        request_id = made.json["request_id"]
        base = f"/api/v1/admin/requests/{request_id}"

        def complete(c: FlaskClient, base: str = base) -> TestResponse:
            return c.post(f"{base}/complete", json={"outcome": "Done."}, headers=staff)

        def refuse(c: FlaskClient, base: str = base) -> TestResponse:
            return c.post(f"{base}/refuse", json={"reason": "Legal hold."}, headers=staff)

        statuses = _all_at_once(app, [complete, refuse, complete, refuse])
        assert sorted(statuses) == [200, 409, 409, 409], statuses
        answered = next(
            r
            for r in client.get("/api/v1/me/requests", headers=mine).json["requests"]
            if r["request_id"] == request_id
        )
        won = "completed" if statuses[0] == 200 or statuses[2] == 200 else "refused"
        assert answered["status"] == won
        assert (answered["outcome"] is not None) == (won == "completed")
        assert (answered["refusal_reason"] is not None) == (won == "refused")


def test_an_identical_open_request_is_refused_as_a_duplicate(client, mailbox, sms):
    _, session = register(client, mailbox, sms)
    mine = bearer(session["token"])
    body = {"kind": "deletion", "categories": ["other"]}
    first = client.post("/api/v1/me/requests", json=body, headers=mine)
    assert first.status_code == 201
    again = client.post("/api/v1/me/requests", json=body, headers=mine)
    problem = assert_problem(again, 409, "request-duplicate")
    assert first.json["request_id"] in problem["detail"]
    # A different request is fine.
    other = client.post(
        "/api/v1/me/requests", json={"kind": "rectification", "categories": ["other"]}, headers=mine
    )
    assert other.status_code == 201
    listed = client.get("/api/v1/me/requests", headers=mine).json["requests"]
    assert len(listed) == 2


def test_concurrent_identical_requests_record_one(app, client, mailbox, sms):
    _, session = register(client, mailbox, sms)
    mine = bearer(session["token"])
    make = lambda c: c.post(  # noqa: E731
        "/api/v1/me/requests", json={"kind": "deletion", "categories": ["other"]}, headers=mine
    )
    statuses = _all_at_once(app, [make] * 6)
    assert sorted(statuses) == [201] + [409] * 5, statuses
    listed = client.get("/api/v1/me/requests", headers=mine).json["requests"]
    assert len(listed) == 1


def test_making_requests_is_rate_limited_per_account(client, mailbox, sms, settings):
    _, session = register(client, mailbox, sms)
    mine = bearer(session["token"])
    # Answered at once, so never a duplicate of an open one: only the limit stops them.
    body = {"kind": "deletion", "categories": ["ended_sessions"]}
    statuses = [
        client.post("/api/v1/me/requests", json=body, headers=mine).status_code for _ in range(60)
    ]
    allowed = parse_limit(settings.limit_requests_per_account).amount
    assert allowed < 60
    accepted = statuses.count(201)
    assert accepted == allowed, statuses
    assert set(statuses[accepted:]) == {429}, statuses
    limited = client.post("/api/v1/me/requests", json=body, headers=mine)
    assert_problem(limited, 429, "rate-limited")
    assert int(limited.headers["Retry-After"]) >= 1
    # Another account, from the same address, is not held back.
    _, other = register(client, mailbox, sms)
    fresh = client.post("/api/v1/me/requests", json=body, headers=bearer(other["token"]))
    assert fresh.status_code == 201
