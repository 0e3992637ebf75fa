"""The sandbox provider: answers from a fixed table of test identities, in
process, with no network. It is the embedded default (``privid serve`` in
development) and what the pages' and API's own tests run against; production
refuses it (verification/wiring.py).

Test identities (name, document type, number):

====================  ==========================  ====================  ============
name                  document type               number                answer
====================  ==========================  ====================  ============
张三                  cn_resident_id_card         11010519491231002X    match
李四                  cn_resident_id_card         440305198507120033    match
王小明 (aged 8)       cn_resident_id_card         110105201803010047    match
陈大文                hk_mo_tw_residence_permit   810000199001011230    match
ALICE EXAMPLE         passport                    E12345678             match
anyone else           any                         any                   no match
====================  ==========================  ====================  ============

Liveness tokens: ``sandbox-liveness-pass``, alone or followed by anything
(``sandbox-liveness-pass-2``), passes; anything else fails. Each token is
spent by one verification (verification/service.py), as a real one is. The
name ``SANDBOX UNAVAILABLE`` makes the provider unavailable (to try the
"provider down" answer by hand)."""

from __future__ import annotations

import hashlib

from app.clock import Clock
from verification.provider import Outcome, Person, ProviderUnavailable

TEST_IDENTITIES: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("张三", "cn_resident_id_card", "11010519491231002X"),
        ("李四", "cn_resident_id_card", "440305198507120033"),
        ("王小明", "cn_resident_id_card", "110105201803010047"),
        ("陈大文", "hk_mo_tw_residence_permit", "810000199001011230"),
        ("ALICE EXAMPLE", "passport", "E12345678"),
    }
)
LIVENESS_PASS = "sandbox-liveness-pass"
UNAVAILABLE_NAME = "SANDBOX UNAVAILABLE"


class SandboxProvider:
    name = "sandbox"

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def verify(self, person: Person, idempotency_key: str) -> Outcome:
        if person.full_name == UNAVAILABLE_NAME:
            raise ProviderUnavailable("the sandbox provider plays unavailable")
        identity = (person.full_name, person.document.type.value, person.document.number)
        token = person.liveness_token
        liveness = None if token is None else token.startswith(LIVENESS_PASS)
        # A reference derived from the attempt only: it says nothing about the person.
        reference = "sbx-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        return Outcome(identity in TEST_IDENTITIES, liveness, reference, self._clock.now())
