"""Attacks on identity verification (the issue 12 review): limits through the
other door, a guardian who may be the child, and what runs while the
provider answers (a withdrawal, a second verification of the same account)."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from app.clock import FrozenClock
from tests.helpers import (
    HIGH_LIMITS,
    account_form,
    assert_problem,
    bearer,
    https_client,
    race,
    register,
    table_rows,
)
from tests.oidc_helpers import PARTNER, add_client, exchange, get_code, signed_jwt
from tests.verification_helpers import CHILD, ZHANG, ZHANG_NUMBER, grant, verified_browser
from verification.provider import Outcome, Person, Provider
from verification.sandbox import LIVENESS_PASS
from verification.wiring import EXTENSION

URL = "/api/v1/me/identity-verification"
LI_NUMBER = "440305198507120033"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


@pytest.fixture
def consenting(client, mailbox, sms) -> str:
    _, session = register(client, mailbox, sms)
    grant(client, session["token"])
    return str(session["token"])


def verify(client, token: str, **body: object):
    payload = {**ZHANG, "document_number": ZHANG_NUMBER, **body}
    return client.post(URL, json=payload, headers=bearer(token))


def kept(app) -> list[tuple]:
    return table_rows(app)["identity_verifications"]


class During:
    """The app's provider, running ``meanwhile`` while it is being asked (once)."""

    def __init__(self, inner: Provider, meanwhile: Any) -> None:
        self.name, self._inner, self._meanwhile = inner.name, inner, meanwhile

    def verify(self, person: Person, idempotency_key: str) -> Outcome:
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile is not None:
            meanwhile()
        return self._inner.verify(person, idempotency_key)


# -- limits -------------------------------------------------------------------------


class TestTheAttemptLimitPerAccount:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        return {**HIGH_LIMITS, "limit_verification_per_account": "2/day"}

    def test_the_page_counts_against_it(self, client, mailbox, sms):
        """The per-account limit stops the service being an oracle for whether a
        name goes with a number; the page is a second door to the same flow."""
        register(client, mailbox, sms, token_delivery="cookie")
        numbers = [LI_NUMBER, "310115198001010059", "110105199003070017"]
        answers = [
            account_form(
                client,
                "/privacy/identity",
                full_name="某人",
                document_type="cn_resident_id_card",
                document_number=number,
                policy_version="2026-06",
                consent_identity_verification="yes",
            ).status_code
            for number in numbers
        ]
        assert answers == [422, 422, 429]


# -- guardians ----------------------------------------------------------------------


def test_a_guardian_whose_age_the_document_cannot_show_is_refused(app, client, consenting):
    """A passport shows no birth date: the child's own passport (or any
    other) would pass as an adult guardian's."""
    before = table_rows(app)
    passport = {"full_name": "ALICE EXAMPLE", "document_type": "passport"}
    answer = verify(
        client, consenting, **CHILD, guardian={**passport, "document_number": "E12345678"}
    )
    body = assert_problem(answer, 422, "guardian-age-unknown")
    assert body["errors"][0]["pointer"] == "#/guardian/document_type"
    assert table_rows(app) == before


# -- what runs while the provider answers ---------------------------------------------


def test_consent_withdrawn_while_the_provider_answers_keeps_nothing(app, client, consenting):
    withdrawn: list[int] = []

    def withdraw() -> None:
        own = https_client(app)
        answer = own.post(
            "/api/v1/me/consent/identity_verification/withdraw", headers=bearer(consenting)
        )
        withdrawn.append(answer.status_code)

    withdrawal = threading.Thread(target=withdraw)

    def meanwhile() -> None:
        withdrawal.start()
        # Long enough for a withdrawal that nothing holds back to finish.
        withdrawal.join(timeout=3)

    app.extensions[EXTENSION] = During(app.extensions[EXTENSION], meanwhile)
    answer = verify(client, consenting)
    withdrawal.join(timeout=60)
    assert withdrawn == [200]
    # Either order is lawful, but not a result kept after the withdrawal erased nothing.
    if answer.status_code == 201:
        assert kept(app) == []
    else:
        assert_problem(answer, 403, "separate-consent-required")
        assert kept(app) == []


def test_two_verifications_of_one_account_at_once_keep_one_result(app, consenting):
    gate = threading.Barrier(2)

    class BothInFlight:
        name = "sandbox"

        def __init__(self, inner: Provider) -> None:
            self._inner = inner

        def verify(self, person: Person, idempotency_key: str) -> Outcome:
            # Both requests have read "nothing kept yet" before either writes;
            # a second that waits its turn never gets here while the first does.
            with contextlib.suppress(threading.BrokenBarrierError):
                gate.wait(timeout=2)
            return self._inner.verify(person, idempotency_key)

    app.extensions[EXTENSION] = BothInFlight(app.extensions[EXTENSION])
    people = [
        {"document_number": ZHANG_NUMBER},
        {"full_name": "李四", "document_number": LI_NUMBER},
    ]

    def attempt(index: int, own) -> int:
        return verify(own, consenting, **people[index]).status_code

    assert sorted(race(app, 2, attempt)) == [201, 201]
    assert len(kept(app)) == 1


# -- liveness -----------------------------------------------------------------------


def test_a_liveness_token_is_spent_by_the_verification_it_came_with(
    app, client, mailbox, sms, consenting
):
    """One liveness check on a device proves one verification: the same token
    sent again (a replay, by this account or another) is refused before the
    provider sees it."""
    first = verify(client, consenting, liveness_token=LIVENESS_PASS)
    assert first.status_code == 201 and first.json["results"][0]["level"] == "L2"
    again = verify(client, consenting, liveness_token=LIVENESS_PASS)
    assert_problem(again, 409, "liveness-token-used")
    _, other = register(client, mailbox, sms)
    grant(client, other["token"])
    replayed = verify(
        client, other["token"], full_name="李四", document_number=LI_NUMBER,
        liveness_token=LIVENESS_PASS,
    )  # fmt: skip
    assert_problem(replayed, 409, "liveness-token-used")
    assert len(kept(app)) == 1
    # A fresh check on the device gives a fresh token.
    fresh = verify(client, consenting, liveness_token=LIVENESS_PASS + "-2")
    assert fresh.status_code == 201 and fresh.json["results"][0]["level"] == "L2"


# -- OAuth --------------------------------------------------------------------------


def test_the_claims_parameter_is_no_way_around_the_identity_scope(app, client, mailbox, sms):
    """A partner not registered for ``identity`` asks for its claims by name,
    in the ID token and from userinfo: it gets neither."""
    verified_browser(client, mailbox, sms)
    rp = add_client(app, PARTNER)
    wanted = {"identity_level": None, "identity_verified_on": None}
    claims = json.dumps({"userinfo": wanted, "id_token": wanted})
    back = get_code(client, rp, scope="openid", claims=claims)
    tokens = exchange(client, rp, back["code"]).json
    _, id_token = signed_jwt(client, tokens["id_token"])
    info = client.get("/oauth/userinfo", headers=bearer(tokens["access_token"])).json
    for given in (id_token, info):
        assert "identity_level" not in given and "identity_verified_on" not in given


# -- the number in answers and logs, and its variants ---------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"document_number": ZHANG_NUMBER + "0" * 30},  # too long
        {"document_number": int(ZHANG_NUMBER[:-1])},  # not a string
        {"document_type": ZHANG_NUMBER},  # in the wrong field
        {"full_name": ZHANG_NUMBER * 6},  # too long a name
        {"liveness_token": ZHANG_NUMBER + "!"},  # not a token
        {"id_number": ZHANG_NUMBER},  # a field of another name
        {"guardian": {"full_name": "张三", "document_number": ZHANG_NUMBER}},  # incomplete
        {"guardian": [ZHANG_NUMBER]},  # of the wrong shape
    ],
)
def test_a_refused_body_never_echoes_the_number(app, client, consenting, caplog, body):
    before = table_rows(app)
    answer = verify(client, consenting, **body)
    assert_problem(answer, 422)
    for text in (answer.get_data(as_text=True), caplog.text):
        assert ZHANG_NUMBER[:-1] not in text and "张三" not in text
    assert table_rows(app) == before


def test_variants_of_one_number_are_one_identity(client, mailbox, sms, consenting):
    """Full-width digits, a lower-case x, spaces and dashes: the same keyed
    hash, so neither the binding nor the per-document limit is dodged."""
    assert verify(client, consenting).status_code == 201
    _, other = register(client, mailbox, sms)
    grant(client, other["token"])
    for typed in (
        "１１０１０５１９４９１２３１００２ｘ",
        " 110105-19491231-002x ",
        "110105 1949 1231 002X",
    ):
        answer = verify(client, other["token"], document_number=typed)
        assert_problem(answer, 409, "identity-already-bound")


# -- withdrawal ---------------------------------------------------------------------


def test_a_withdrawn_result_lives_on_only_in_the_sealed_archive(app, client, consenting):
    """The provider's reference finds the person's document at the provider:
    after a withdrawal it is kept sealed in the legal archive, not in clear in
    the audit trail (whose attempt id already correlates with the provider)."""
    answer = verify(client, consenting)
    reference = answer.json["results"][0]["provider_reference"]
    withdrawn = client.post(
        "/api/v1/me/consent/identity_verification/withdraw", headers=bearer(consenting)
    )
    assert withdrawn.status_code == 200
    assert reference not in repr(table_rows(app))


# -- what an attempt tells about others -----------------------------------------------


def test_a_number_alone_does_not_tell_whether_it_has_an_account_here(
    app, client, mailbox, sms, consenting
):
    """Anyone with an account could type ID numbers and learn from
    ``identity-already-bound`` which of them belong to an account here: the
    binding is told only to whoever the provider confirmed name and number for."""
    assert verify(client, consenting).status_code == 201
    _, other = register(client, mailbox, sms)
    grant(client, other["token"])
    probe = verify(client, other["token"], full_name="某人")
    assert_problem(probe, 422, "identity-not-confirmed")
    assert_problem(verify(client, other["token"]), 409, "identity-already-bound")
    assert len(kept(app)) == 1


def test_a_result_past_its_retention_date_is_not_shared(app, client, consenting, clock):
    """Retention runs from cron: until it does, a result past its date is
    still a row, but no partner learns of it any more."""
    from app.cli import unit_of_work
    from app.models import Channel, Decision, User
    from app.services.context import RequestContext
    from verification.claims import identity_claims

    assert verify(client, consenting).status_code == 201
    names = frozenset({"identity_level", "identity_verified_on"})
    with app.app_context(), unit_of_work() as svc:
        user = svc.db.query(User).one()
        context = RequestContext("203.0.113.0/24", "test", "x")
        svc.consent.decide_for_client(
            user.id, "partner_sharing", "rp-1", Decision.GRANTED, context, Channel.OAUTH
        )
    with app.app_context(), unit_of_work() as svc:
        user = svc.db.query(User).one()
        assert identity_claims(svc, user, "rp-1", names)["identity_level"] == "L1"
        clock.advance(days=3 * 366 + 1)
        assert identity_claims(svc, user, "rp-1", names) == {}
