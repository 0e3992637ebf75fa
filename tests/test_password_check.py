"""POST /api/v1/password/check: the live verdict a sign-up form shows while a
password is typed, the same one registration gives on submit."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.helpers import GOOD_PASSWORD, assert_problem, new_person, start_registration


def check(client, **body):
    response = client.post("/api/v1/password/check", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize(
    ("password", "reason"),
    [("short", "too_short"), ("x" * 300, "too_long"), ("password", "common")],
)
def test_a_refused_password_says_why_with_a_stable_code(client, password, reason):
    assert check(client, password=password) == {"acceptable": False, "reason": reason}


def test_a_good_password_is_acceptable(client):
    assert check(client, password=GOOD_PASSWORD) == {"acceptable": True, "reason": None}


def test_a_password_built_from_the_typed_details_is_personal(client):
    person = new_person(full_name="Zhang Wei")
    own = "zhangwei" + person.phone.removeprefix("+86")
    assert check(client, password=own)["acceptable"] is True  # nothing to compare with
    verdict = check(client, password=own, phone=person.phone, full_name=person.full_name)
    assert verdict == {"acceptable": False, "reason": "personal"}
    # The registration refuses the same password for the same details.
    refused = start_registration(client, replace(person, password=own))
    assert refused.status_code == 422
    assert refused.get_json()["errors"][0]["pointer"] == "#/password"


def test_details_not_valid_yet_are_left_out_not_refused(client):
    verdict = check(client, password=GOOD_PASSWORD, email="half-typed@", phone="139")
    assert verdict == {"acceptable": True, "reason": None}


def test_the_body_is_checked_like_any_other(client):
    assert_problem(client.post("/api/v1/password/check", json={}), 422)
    extra = client.post("/api/v1/password/check", json={"password": "x", "admin": True})
    assert_problem(extra, 422)


@pytest.mark.parametrize("settings_overrides", [{"limit_password_check_per_ip": "2/hour"}])
def test_checks_are_rate_limited_per_network(client, settings_overrides):
    check(client, password="a")
    check(client, password="b")
    assert_problem(client.post("/api/v1/password/check", json={"password": "c"}), 429)
