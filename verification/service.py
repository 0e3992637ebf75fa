"""The verification flow: check the documents, the separate consent and the
limits, ask the provider, keep the result (never the document).

The full name and number live in this call's memory and in the request to the
provider only: they are not logged, audited, hashed into a rate-limit key in
clear, or stored. What is stored is verification/models.py's row."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass

from limits import parse as parse_limit
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import delete, select, text

from app.errors import FieldError, ServiceError, too_many_attempts
from app.models import User
from app.services.cancellation import after
from app.services.container import Services
from app.services.context import RequestContext
from app.services.identifiers import normalise_full_name
from verification.documents import MESSAGES, Document, DocumentError, DocumentType, parse
from verification.models import IdentityVerification
from verification.provider import (
    Outcome,
    Person,
    Provider,
    ProviderAnswerRejected,
    ProviderError,
    ProviderUnavailable,
)

PURPOSE = "identity_verification"
CROSS_BORDER = "cross_border"
# PIPL Art. 31: a child under 14 needs a guardian's consent.
GUARDIAN_AGE = 14
ADULT_AGE = 18
SELF, GUARDIAN = "self", "guardian"
VERIFIED = "verified"
AUDIT_EVENT = "identity_verification.attempt"
# How long a liveness token is remembered as spent (providers' tokens live minutes).
LIVENESS_TOKEN_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Submitted:
    """One person's details as typed (the account holder's or the guardian's)."""

    full_name: str
    document_type: DocumentType
    document_number: str
    liveness_token: str | None = None


@dataclass(frozen=True)
class Checked:
    person: Person
    role: str
    document_hash: str


def document_problem(rule_error: DocumentError, pointer: str) -> ServiceError:
    detail = MESSAGES[rule_error.rule]
    return ServiceError(
        rule_error.rule.value,
        422,
        "The document number is not valid",
        detail,
        errors=[FieldError(pointer, detail, rule_error.rule.value)],
    )


class VerificationService:
    def __init__(self, svc: Services, provider: Provider, abroad: bool) -> None:
        self._svc, self._provider, self._abroad = svc, provider, abroad
        self._settings = svc.runtime.settings
        self._clock = svc.runtime.clock

    # -- checks before anything leaves the service ---------------------------

    def check(self, submitted: Submitted, role: str, prefix: str = "#") -> Checked:
        try:
            document = parse(
                submitted.document_type, submitted.document_number, self._clock.now().date()
            )
        except DocumentError as exc:
            raise document_problem(exc, f"{prefix}/document_number") from None
        name = normalise_full_name(submitted.full_name, f"{prefix}/full_name")
        person = Person(name, document, submitted.liveness_token)
        return Checked(person, role, self.document_hash(document))

    def document_hash(self, document: Document) -> str:
        return self._svc.runtime.blind_index(
            "identity_document", f"{document.type.value}:{document.number}"
        )

    def needed_purposes(self) -> list[str]:
        return [PURPOSE, CROSS_BORDER] if self._abroad else [PURPOSE]

    def grant_ticked(
        self, user_id: str, ticked: Collection[str], policy_version: str, context: RequestContext
    ) -> None:
        """The separate consent given with its own box on the page's form,
        recorded in the ledger before the provider sees anything."""
        for purpose in self.needed_purposes():
            if purpose in ticked and not self._svc.consent.is_granted(user_id, purpose):
                self._svc.consent.grant(user_id, purpose, policy_version, context)

    def require_consent(self, user_id: str) -> None:
        """The purpose (and cross_border, for a provider abroad) granted on
        its own, as separate consent, before the provider sees anything."""
        for purpose in self.needed_purposes():
            if not self._svc.consent.is_granted(user_id, purpose):
                raise ServiceError(
                    "separate-consent-required",
                    403,
                    "Separate consent required",
                    f"Grant '{purpose}' on its own (POST /api/v1/me/consent/{purpose}/grant) "
                    "first: the provider receives your document only with it.",
                )

    def _require_guardian_if_minor(self, subject: Checked, guardian: Checked | None) -> None:
        today = self._clock.now().date()
        age = subject.person.document.age_on(today)
        if age is not None and age < GUARDIAN_AGE and guardian is None:
            raise ServiceError(
                "guardian-required",
                422,
                "A guardian must verify too",
                "The document shows an age under 14: a parent or guardian verifies "
                "their own identity and consents for the child.",
                errors=[FieldError("#/guardian", "Add the guardian's details.")],
            )
        if guardian is not None and (age is None or age >= GUARDIAN_AGE):
            # A guardian's details are processed only when the law asks for them.
            raise ServiceError(
                "guardian-not-needed",
                422,
                "No guardian is needed",
                "A guardian verifies only for a child under 14 (from the document's birth date).",
                errors=[FieldError("#/guardian", "Leave the guardian out.")],
            )
        if guardian is not None:
            guardian_age = guardian.person.document.age_on(today)
            if guardian_age is None:
                # A passport or travel permit shows no birth date: anyone's,
                # the child's own included, would pass as an adult's.
                raise ServiceError(
                    "guardian-age-unknown",
                    422,
                    "The guardian's document must show their age",
                    "The guardian verifies with a document that carries their birth date: "
                    "a resident identity card, a residence permit or a permanent residence card.",
                    errors=[
                        FieldError(
                            "#/guardian/document_type", "Choose a document with a birth date."
                        )
                    ],
                )
            if guardian_age < ADULT_AGE:
                raise ServiceError(
                    "guardian-not-adult",
                    422,
                    "The guardian must be an adult",
                    "The guardian's document shows an age under 18.",
                    errors=[FieldError("#/guardian/document_number", "Not an adult's document.")],
                )

    def _lock_document(self, subject: Checked) -> None:
        if not self._settings.verification_one_account_per_identity:
            return
        if self._svc.db.get_bind().dialect.name == "postgresql":
            # Two accounts verifying one document take turns until commit, so
            # the second sees the first's row. (SQLite's BEGIN IMMEDIATE
            # already serialises every writer.)
            self._svc.db.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                {"k": f"identity-document:{subject.document_hash}"},
            )

    def _require_unbound(self, user_id: str, subject: Checked) -> None:
        """Under the document's lock (_lock_document)."""
        if not self._settings.verification_one_account_per_identity:
            return
        other = self._svc.db.scalar(
            select(IdentityVerification.user_id).where(
                IdentityVerification.document_hash == subject.document_hash,
                IdentityVerification.role == SELF,
                IdentityVerification.user_id != user_id,
            )
        )
        if other is not None:
            raise ServiceError(
                "identity-already-bound",
                409,
                "This identity belongs to another account",
                "This document already verified another account; one identity, one account.",
            )

    def _count_attempt(self, checked: Checked) -> None:
        """Per document (its keyed hash: the limiter's storage never sees the
        number), whichever account tries it."""
        limiter = MovingWindowRateLimiter(self._svc.runtime.replay_cache)
        limit = parse_limit(self._settings.limit_verification_per_document)
        if not limiter.hit(limit, "identity-document", checked.document_hash):
            raise too_many_attempts(
                3600, "This document was tried too often today; try again tomorrow."
            )

    def _spend_liveness_token(self, checked: Checked) -> None:
        """A liveness token proves one check on one device, so it vouches for
        one verification: a token seen before (a replay) never reaches the
        provider. The cache holds a keyed hash of it, for a day."""
        token = checked.person.liveness_token
        if token is None:
            return
        key = "identity-liveness:" + self._svc.runtime.blind_index("liveness_token", token)
        if int(self._svc.runtime.replay_cache.incr(key, LIVENESS_TOKEN_SECONDS)) != 1:
            raise ServiceError(
                "liveness-token-used",
                409,
                "This liveness check was already used",
                "Each liveness check vouches for one verification: do the check on your "
                "device again and send its new token.",
            )

    # -- the flow ------------------------------------------------------------------

    def verify(
        self, user: User, subject: Checked, guardian: Checked | None, context: RequestContext
    ) -> list[IdentityVerification]:
        self._require_guardian_if_minor(subject, guardian)
        # The account's removal lock (what a withdrawal takes first) until
        # commit: a withdrawal during the provider's answer would otherwise
        # erase nothing and the result be kept without consent, and two
        # verifications of one account would both insert their row.
        self._svc.safeguards.hold(user.id)
        self.require_consent(user.id)
        people = [guardian, subject] if guardian is not None else [subject]
        try:
            self._lock_document(subject)
            for checked in people:
                self._count_attempt(checked)
                self._spend_liveness_token(checked)
        except ServiceError as refused:
            raise self._refused(user, subject, context, refused) from None
        outcomes = []
        if guardian is not None:
            # The guardian first, and their consent in the ledger, before
            # anything about the child goes to the provider.
            outcomes.append((guardian, self._ask(user, guardian, context)))
            self._svc.consent.grant_by_guardian(user.id, PURPOSE, context)
        outcomes.append((subject, self._ask(user, subject, context)))
        try:
            # Only once the provider confirmed the name and the number: told
            # any earlier, anyone with an account could type ID numbers and
            # learn which belong to an account here.
            self._require_unbound(user.id, subject)
        except ServiceError as refused:
            raise self._refused(user, subject, context, refused) from None
        return [self._keep(user.id, checked, outcome) for checked, outcome in outcomes]

    def _refused(
        self, user: User, subject: Checked, context: RequestContext, refused: ServiceError
    ) -> ServiceError:
        """Someone trying a document bound elsewhere, or trying one too often,
        is worth a trace (without the document): kept with the refusal."""
        self._audit(user, subject, context, refused.slug.replace("-", "_"))
        refused.keep_changes = True
        return refused

    def _audit(
        self, user: User, checked: Checked, context: RequestContext, result: str, **details: str
    ) -> None:
        """One attempt in the audit trail: its result, never the name or number,
        nor the provider's reference (it outlives a withdrawal here, and the
        attempt id, the provider's Idempotency-Key, finds its record anyway)."""
        self._svc.audit.record(
            AUDIT_EVENT,
            outcome="success" if result == "confirmed" else "failure",
            result=result,
            user_id=user.id,
            ip_prefix=context.ip_prefix,
            role=checked.role,
            document_type=checked.person.document.type.value,
            provider=self._provider.name,
            **details,
        )

    def _ask(self, user: User, checked: Checked, context: RequestContext) -> Outcome:
        attempt = str(uuid.uuid4())

        def audit(result: str, **details: str) -> None:
            self._audit(user, checked, context, result, attempt=attempt, **details)

        try:
            outcome = self._provider.verify(checked.person, attempt)
        except ProviderUnavailable:
            audit("provider_unavailable")
            raise ServiceError(
                "provider-unavailable",
                503,
                "Verification is unavailable",
                "The verification provider cannot be reached; nothing was kept. Try again later.",
                keep_changes=True,
                headers={"Retry-After": "60"},
            ) from None
        except ProviderAnswerRejected:
            audit("provider_answer_rejected")
            raise ServiceError(
                "provider-answer-rejected",
                502,
                "The provider's answer was not trusted",
                "The verification provider's answer failed its checks; nothing was kept.",
                keep_changes=True,
            ) from None
        except ProviderError:
            audit("provider_error")
            raise ServiceError(
                "provider-error",
                502,
                "Verification failed",
                "The verification provider could not check the document; nothing was kept.",
                keep_changes=True,
            ) from None
        if outcome.level is None:
            audit("not_confirmed")
            raise ServiceError(
                "identity-not-confirmed",
                422,
                "The identity was not confirmed",
                "The name and document number do not match the issuing institution's record.",
                keep_changes=True,
            )
        audit("confirmed", level=outcome.level.value)
        return outcome

    def _keep(self, user_id: str, checked: Checked, outcome: Outcome) -> IdentityVerification:
        assert outcome.level is not None
        db = self._svc.db
        db.execute(
            delete(IdentityVerification).where(
                IdentityVerification.user_id == user_id, IdentityVerification.role == checked.role
            )
        )
        purpose = self._svc.runtime.catalogue.get(PURPOSE)
        verified_at = self._clock.now()
        row = IdentityVerification(
            user_id=user_id,
            role=checked.role,
            status=VERIFIED,
            level=outcome.level.value,
            provider=self._provider.name,
            provider_reference=outcome.reference,
            document_type=checked.person.document.type.value,
            document_hash=checked.document_hash,
            document_masked=checked.person.document.masked(),
            verified_at=verified_at,
            retain_until=after(verified_at, purpose.retention if purpose else "P3Y"),
        )
        db.add(row)
        db.flush()
        return row


def results_of(svc: Services, user_id: str) -> list[IdentityVerification]:
    return list(
        svc.db.scalars(
            select(IdentityVerification)
            .where(IdentityVerification.user_id == user_id)
            .order_by(IdentityVerification.role.desc())
        )
    )
