"""The answer to an outage, in process and at the edges the load tests reach
only by chance: a commit that fails because the database went away (the
last after-request hook), the rate-limit storage failing on a page. Each is a
503 with Retry-After in the surface's own form, commits nothing, and is logged
by the error's type only."""

from __future__ import annotations

import logging

import pytest
from limits.errors import StorageError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.extensions import limiter
from tests.helpers import (
    HIGH_LIMITS,
    account_csrf,
    assert_problem,
    login,
    register,
    row_count,
)

SECRET = "connection to server at 10.1.2.3 failed for person1@example.com"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


def test_a_commit_the_database_drops_is_a_503_and_keeps_nothing(
    app, client, mailbox, sms, monkeypatch, caplog
):
    person, _ = register(client, mailbox, sms)
    sessions = row_count(app, "sessions")

    def dropped(self: Session) -> None:
        raise OperationalError("COMMIT", {}, Exception(SECRET))

    monkeypatch.setattr(Session, "commit", dropped)
    # As in production: an error in an after-request hook reaches the handlers.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    caplog.set_level(logging.INFO)
    answer = login(client, person.email, person.password)
    monkeypatch.undo()
    body = assert_problem(answer, 503, "service-unavailable")
    assert answer.headers["Retry-After"] == "5"
    assert "10.1.2.3" not in str(body)
    assert row_count(app, "sessions") == sessions
    assert "database unavailable (OperationalError)" in caplog.text
    assert SECRET not in caplog.text


def test_the_rate_limit_storage_down_on_a_page_is_a_503_page(app, client, monkeypatch):
    def storage_down(*_args: object, **_kwargs: object) -> bool:
        raise StorageError(ConnectionError(SECRET))

    token = account_csrf(client, "/signin")
    monkeypatch.setattr(limiter.limiter, "hit", storage_down)
    form = {"csrf_token": token, "identifier": "x@example.com", "password": "p"}
    answer = client.post("/signin", data=form)
    assert answer.status_code == 503
    assert answer.mimetype == "text/html"
    assert answer.headers["Retry-After"] == "5"
    assert SECRET not in answer.get_data(as_text=True)
