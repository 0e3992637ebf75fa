"""A bounded schemathesis pass over every documented operation.

Every operation of /openapi.json gets a fixed number of generated requests,
anonymously and signed in with a bearer token (a registered user who made the
baseline consent decisions). Each answer must be no 5xx, carry the documented
media type, and match the documented schema for its status: the document has
to describe what the service sends, not what it would accept. Requests go
through the WSGI app in process (no network); hypothesis runs derandomised, so
a run is repeatable and its length is bounded by EXAMPLES (about 30 s on
SQLite), with pytest-timeout as the backstop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.fakes import Mailbox, SmsOutbox
from tests.helpers import HIGH_LIMITS, PATH_VALUES, World, baseline_consent, make_world

EXAMPLES = 20  # generated requests per operation and pass
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # a fixed seed: the same requests on every run
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)  # hundreds of requests from one address


@dataclass
class Caller:
    """Who sends the requests; signed in, it keeps a live session."""

    sign_in: Callable[[], World] | None
    world: World | None = None
    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        if self.sign_in is None:
            return {}
        if self.world is None:
            self.world = self.sign_in()
        return {"Authorization": f"Bearer {self.world.token}"}

    def seen(self, label: str, status: int) -> None:
        self.statuses.setdefault(label, Counter())[status] += 1
        if status == 401 and self.sign_in is not None:
            # The case ended the session (sign-out, cancellation): sign in again.
            self.world = None


def _path_values(caller: Caller, names: list[str]) -> dict[str, str]:
    """Real identifiers, so the pass reaches past the 404 of a random one."""
    world = caller.world
    if world is None or not all(n in PATH_VALUES for n in names):
        return {}
    return {name: PATH_VALUES[name](world) for name in names}


def _fuzz(app: Flask, caller: Caller) -> list[str]:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        caller.headers()  # signed in before the strategy reads the path values
        names = [p.name for p in operation.path_parameters]
        strategies = [operation.as_strategy(mode) for mode in MODES]
        known = _path_values(caller, names)
        if names and known:
            strategies.append(operation.as_strategy(path_parameters=known))
        strategy = st.one_of(strategies)

        _run(strategy, operation.label, caller)
    return labels


def _run(strategy: st.SearchStrategy[Any], label: str, caller: Caller) -> None:
    @FUZZ_SETTINGS
    @given(case=strategy)
    def run(case: Any) -> None:
        headers = caller.headers()
        response = case.call(headers=headers)
        caller.seen(label, response.status_code)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


@pytest.mark.timeout(240)
def test_every_operation_answers_as_documented_anonymously(app: Flask):
    caller = Caller(sign_in=None)
    labels = _fuzz(app, caller)
    assert len(labels) >= 50
    assert set(caller.statuses) == set(labels), "every operation was called"
    # Anonymous: protected operations refuse, public ones answer.
    assert set(caller.statuses["GET /api/v1/me"]) == {401}
    assert set(caller.statuses["GET /api/v1/purposes"]) == {200}


@pytest.mark.timeout(240)
def test_every_operation_answers_as_documented_signed_in(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox, runtime: Any
):
    def sign_in() -> World:
        # A new operator account, deciding under the policy in force now: the
        # pass may itself have published a newer one.
        policies = client.get("/api/v1/policies").json["policies"]
        current = next(p["version"] for p in policies if p["current"])
        consent = {**baseline_consent(), "policy_version": current}
        return make_world(client, mailbox, sms, runtime, consent=consent)

    caller = Caller(sign_in=sign_in)
    labels = _fuzz(app, caller)
    assert set(caller.statuses) == set(labels), "every operation was called"
    succeeded = {label for label, seen in caller.statuses.items() if any(s < 300 for s in seen)}
    # Signed in, the reading operations answer with a body the schema checked.
    for label in (
        "GET /api/v1/me",
        "GET /api/v1/me/sessions",
        "GET /api/v1/me/consent",
        "GET /api/v1/me/credentials",
        "GET /api/v1/me/requests",
        "GET /api/v1/admin/requests",
    ):
        assert label in succeeded, (label, caller.statuses.get(label))
    assert len(succeeded) >= 25, sorted(succeeded)
