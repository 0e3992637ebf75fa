"""The access gate: every route declares who may call it, one gate enforces it,
the ages come from settings, and a request commits because its service calls
succeeded, not because of its status code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Blueprint, Flask
from sqlalchemy import text

from app.errors import ServiceError
from app.http.access import Access, access_of, public, signed_in
from app.http.gate import (
    csrf_token,
    require_declarations,
    submitted_form,
    undeclared_endpoints,
)
from app.http.scope import services
from app.http.unit_of_work import attempt
from tests.helpers import assert_problem, bearer, register, www_authenticate

NEW_PASSWORD = "amber-quartz-meadow-77"


def test_every_route_declares_who_may_call_it(app: Flask) -> None:
    rules = list(app.url_map.iter_rules())
    assert len(rules) > 40
    for rule in rules:
        declared = access_of(app.view_functions[rule.endpoint])
        assert isinstance(declared, Access), f"{rule.rule} ({rule.endpoint}) has no declaration"
    assert undeclared_endpoints(app) == []


def test_an_undeclared_view_stops_the_app_from_starting(app: Flask) -> None:
    extra = Blueprint("forgetful", __name__)

    @extra.get("/forgotten")
    def forgotten() -> str:
        return "anyone may read this?"

    app.register_blueprint(extra)
    with pytest.raises(RuntimeError, match=r"forgetful\.forgotten"):
        require_declarations(app)
    # Even if it were started anyway, the gate refuses to run the view.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    assert client.get("/forgotten").status_code == 500


def test_a_view_cannot_declare_twice() -> None:
    with pytest.raises(TypeError, match="twice"):

        @public()
        @signed_in()
        def confused() -> str:
            return ""


def test_signed_in_views_refuse_strangers_before_reading_the_body(client) -> None:
    response = client.post("/api/v1/me/password", data="not json", content_type="text/plain")
    assert_problem(response, 401, "authentication-required")


@pytest.fixture
def clock(frozen_clock):
    return frozen_clock


@pytest.mark.parametrize(
    ("settings_overrides", "waited", "refused"),
    [
        ({}, 61, False),
        ({"credential_change_max_auth_age_seconds": 60}, 61, True),
        ({"credential_change_max_auth_age_seconds": 60}, 59, False),
    ],
)
def test_the_step_up_age_is_the_setting(
    client, mailbox, sms, frozen_clock, settings_overrides, waited, refused
) -> None:
    """PRIVID_CREDENTIAL_CHANGE_MAX_AUTH_AGE_SECONDS, and nothing else, decides
    how recent a sign-in changing the password needs."""
    person, session = register(client, mailbox, sms)
    frozen_clock.advance(seconds=waited)
    response = client.post(
        "/api/v1/me/password",
        json={"current_password": person.password, "new_password": NEW_PASSWORD},
        headers=bearer(session["token"]),
    )
    if refused:
        assert_problem(response, 401, "insufficient-user-authentication")
        assert "max_age=60" in www_authenticate(response)
    else:
        assert response.status_code == 200, response.json


# The unit of work: a probe table the tests below write to through the
# request's own database session.
PROBE = "CREATE TABLE IF NOT EXISTS uow_probe (note VARCHAR(40))"


def _probe_rows(app: Flask) -> list[str]:
    with app.extensions["privid.engine"].connect() as connection:
        return [row[0] for row in connection.execute(text("SELECT note FROM uow_probe"))]


@pytest.fixture
def probe_app(app: Flask) -> Iterator[Flask]:
    with app.extensions["privid.engine"].begin() as connection:
        connection.execute(text(PROBE))
        connection.execute(text("DELETE FROM uow_probe"))
    pages = Blueprint("probe", __name__)

    def write(note: str) -> None:
        services().db.execute(text("INSERT INTO uow_probe (note) VALUES (:n)"), {"n": note})

    def failing(note: str, keep: bool) -> None:
        write(note)
        raise ServiceError("probe-failed", 422, "Failed", "The call failed.", keep_changes=keep)

    @pages.post("/probe/form/<mode>")
    @public(csrf=False)
    def form(mode: str) -> tuple[str, int]:
        # A page answering its own failure: the form again, with 200.
        outcome = attempt(lambda: failing(f"form-{mode}", keep=mode == "counts"))
        return ("shown again" if isinstance(outcome, ServiceError) else "done"), 200

    @pages.post("/probe/ok")
    @public(csrf=False)
    def succeeded() -> tuple[str, int]:
        write("ok")
        # A non-2xx status chosen by a view whose call succeeded still commits.
        return "accepted with a warning", 409

    @pages.get("/probe/token")
    @public()
    def token() -> str:
        return csrf_token()

    @pages.post("/probe/name")
    @public(reads_forms=True)
    def name() -> str:
        return submitted_form().get("name", "")

    @pages.post("/probe/sneaky")
    @public()
    def sneaky() -> str:
        return submitted_form().get("name", "")

    app.register_blueprint(pages)
    yield app
    # The table is the test's own: PostgreSQL keeps it across tests otherwise.
    with app.extensions["privid.engine"].begin() as connection:
        connection.execute(text("DROP TABLE uow_probe"))


def test_a_form_shown_again_after_a_failed_call_commits_nothing(probe_app: Flask) -> None:
    client = probe_app.test_client()
    response = client.post("/probe/form/plain")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "shown again"
    assert _probe_rows(probe_app) == []


def test_a_failure_that_must_count_is_kept(probe_app: Flask) -> None:
    client = probe_app.test_client()
    assert client.post("/probe/form/counts").status_code == 200
    assert _probe_rows(probe_app) == ["form-counts"]


def test_a_successful_call_commits_whatever_the_status(probe_app: Flask) -> None:
    client = probe_app.test_client()
    assert client.post("/probe/ok").status_code == 409
    assert _probe_rows(probe_app) == ["ok"]


def test_api_errors_are_problem_documents_with_the_api_policy(client) -> None:
    response = client.get("/api/v1/nowhere")
    assert_problem(response, 404, "not-found")
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def _browser(app: Flask):
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    return client


def test_forms_posted_before_sign_in_carry_this_browsers_token(probe_app: Flask) -> None:
    browser, other = _browser(probe_app), _browser(probe_app)
    token = browser.get("/probe/token").get_data(as_text=True)
    other.get("/probe/token")
    ok = browser.post("/probe/name", data={"name": "Ann", "csrf_token": token})
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "Ann"
    assert_problem(browser.post("/probe/name", data={"name": "Ann"}), 403, "csrf-failed")
    # Another browser's token (what a cross-site page could have got) is refused.
    stolen = other.post("/probe/name", data={"name": "Ann", "csrf_token": token})
    assert_problem(stolen, 403, "csrf-failed")
    # A browser that never loaded a form has no token to match.
    fresh = _browser(probe_app).post("/probe/name", data={"name": "Ann", "csrf_token": token})
    assert_problem(fresh, 403, "csrf-failed")


def test_a_view_cannot_read_a_form_it_did_not_declare(probe_app: Flask) -> None:
    probe_app.config["PROPAGATE_EXCEPTIONS"] = False
    browser = _browser(probe_app)
    token = browser.get("/probe/token").get_data(as_text=True)
    response = browser.post("/probe/sneaky", data={"name": "Ann", "csrf_token": token})
    assert response.status_code == 500
