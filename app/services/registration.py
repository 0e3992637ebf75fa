"""Registration: typed details wait in a flow until both email and phone are proven.

An address that already has an account gets a notice instead of a code, and the
flow answers exactly like any other but can never finish: the response never
tells a stranger whether an address is registered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.errors import FieldError, ServiceError, invalid_code, invalid_field, not_found
from app.models import Channel, CodePurpose, Decision, OneTimeCode, RegistrationFlow, User
from app.models.base import new_id
from app.security.envelope import FieldCipher, KeyRing, WrappedKey
from app.security.passwords import (
    Argon2Passwords,
    PasswordPolicy,
    PasswordRejected,
    PersonalData,
)
from app.services.audit import AuditTrail
from app.services.codes import CodeService
from app.services.consent import ConsentService, DecisionInput, required_refused
from app.services.context import RequestContext
from app.services.directory import EMAIL, PHONE, Directory, Identifier
from app.services.identifiers import normalise_full_name
from app.services.notifications import Notifier
from app.services.sessions import Acr, Transport
from app.services.signin import SignInCompleter, SignInResult
from app.services.throttle import AccountThrottle
from app.services.vault import PersonalDataVault

CHANNEL_PURPOSE = {EMAIL: CodePurpose.REGISTER_EMAIL, PHONE: CodePurpose.REGISTER_PHONE}


@dataclass(frozen=True)
class VerifyResult:
    flow: RegistrationFlow
    signed_in: SignInResult | None  # set once both codes are proven and the account exists


def check_password(
    policy: PasswordPolicy, password: str, personal: PersonalData, pointer: str = "#/password"
) -> None:
    try:
        policy.check(password, personal)
    except PasswordRejected as exc:
        raise invalid_field(pointer, exc.reason, exc.code) from None


class RegistrationService:
    def __init__(
        self,
        *,
        db: DbSession,
        clock: Clock,
        key_ring: KeyRing,
        directory: Directory,
        passwords: Argon2Passwords,
        policy: PasswordPolicy,
        codes: CodeService,
        vault: PersonalDataVault,
        signin: SignInCompleter,
        consent: ConsentService,
        audit: AuditTrail,
        notifier: Notifier,
        throttle: AccountThrottle,
        flow_ttl_seconds: int,
    ) -> None:
        self._db, self._clock, self._key_ring = db, clock, key_ring
        self._directory, self._passwords, self._policy = directory, passwords, policy
        self._codes, self._vault = codes, vault
        self._signin, self._consent = signin, consent
        self._audit, self._notifier, self._throttle = audit, notifier, throttle
        self._flow_ttl = timedelta(seconds=flow_ttl_seconds)

    def start(
        self,
        *,
        email: str,
        phone: str,
        full_name: str,
        password: str,
        context: RequestContext,
        policy_version: str | None = None,
        decisions: list[DecisionInput] | None = None,
        separate_grants: Sequence[str] = (),
    ) -> RegistrationFlow:
        """``separate_grants``: purposes needing separate consent that the person
        ticked, each on its own, beside the form; kept on the flow and recorded
        one action each once the account exists (``separate_grants_of``)."""
        email_id = self._directory.email(email)
        phone_id = self._directory.phone(phone)
        name = normalise_full_name(full_name)
        assert phone_id.phone is not None
        check_password(
            self._policy,
            password,
            PersonalData(email_id.value, phone_id.value, phone_id.phone.national, name),
        )
        consent = self._consent_at_registration(policy_version, decisions or [])
        if separate_grants:
            consent = self._with_separate_grants(consent, separate_grants)
        now = self._clock.now()
        flow_id = new_id()
        data_key, wrapped = self._key_ring.new_data_key(flow_id)
        payload = {"email": email_id.value, "phone": phone_id.value, "full_name": name}
        flow = RegistrationFlow(
            id=flow_id,
            created_at=now,
            expires_at=now + self._flow_ttl,
            email_index=email_id.index,
            phone_index=phone_id.index,
            key_id=wrapped.key_id,
            wrapped_key=wrapped.wrapped,
            payload_encrypted=FieldCipher(data_key, flow_id).encrypt(
                "payload", json.dumps(payload)
            ),
            # Hashed on both paths, so a taken address costs the same time.
            password_hash=self._passwords.hash(password),
            email_taken=self._directory.find(email_id) is not None,
            phone_taken=self._directory.find(phone_id) is not None,
            consent=consent,
        )
        self._db.add(flow)
        self._db.flush()
        self._send(flow, EMAIL, email_id.value)
        self._send(flow, PHONE, phone_id.value)
        self._audit.record("registration.started", ip_prefix=context.ip_prefix, flow_id=flow.id)
        return flow

    def judge_password(
        self,
        password: str,
        *,
        email: str | None = None,
        phone: str | None = None,
        full_name: str | None = None,
    ) -> PasswordRejected | None:
        """The verdict ``start`` would give on this password, while the form is
        still being typed: details that are not valid yet are left out."""
        personal = PersonalData(
            email=_or_blank(lambda: self._directory.email(email or "").value),
            phone_e164=_or_blank(lambda: self._directory.phone(phone or "").value),
            phone_national=_or_blank(lambda: _national(self._directory.phone(phone or ""))),
            full_name=_or_blank(lambda: normalise_full_name(full_name or "")),
        )
        try:
            self._policy.check(password, personal)
        except PasswordRejected as exc:
            return exc
        return None

    def flow(self, flow_id: str) -> RegistrationFlow:
        """A registration still under way (which codes are proven); not found
        once it has finished or expired."""
        return self._live_flow(flow_id)

    def resend(self, flow_id: str, channel: str) -> RegistrationFlow:
        flow = self._live_flow(flow_id)
        if self._verified_at(flow, channel) is not None:
            raise invalid_field("#/channel", f"The {channel} is already confirmed.")
        self._send(flow, channel, self._payload(flow)[channel])
        return flow

    def verify(
        self,
        flow_id: str,
        channel: str,
        code: str,
        *,
        transport: Transport,
        context: RequestContext,
    ) -> VerifyResult:
        flow = self._live_flow(flow_id)
        if self._verified_at(flow, channel) is not None:
            raise invalid_field("#/channel", f"The {channel} is already confirmed.")
        # No account yet: the code is bound to this flow (its subject) alone.
        row = self._codes.check(CHANNEL_PURPOSE[channel], flow.id, code, user_id=None)
        if flow.email_taken if channel == EMAIL else flow.phone_taken:
            # No code was ever sent; this can only be a guess. Count it.
            row.failed_attempts += 1
            raise invalid_code()
        self._codes.consume(row)
        now = self._clock.now()
        if channel == EMAIL:
            flow.email_verified_at = now
        else:
            flow.phone_verified_at = now
        if flow.email_verified_at is None or flow.phone_verified_at is None:
            return VerifyResult(flow, None)
        consent = flow.consent
        user = self._create_account(flow)
        current = self._consent.policies.current()
        # Decisions made under a policy that has since changed are not recorded:
        # the consent step at the end of this sign-in asks again.
        stored = _stored_decisions(consent)
        if stored and consent and current and current.version == consent["policy_version"]:
            self._consent.decide(
                user.id,
                str(consent["policy_version"]),
                stored,
                Channel.REGISTRATION,
                context,
            )
        # The consent chain is always locked before the audit chain (no deadlock).
        self._audit.record("registration.completed", user_id=user.id, ip_prefix=context.ip_prefix)
        signed_in = self._signin.complete(
            user,
            transport=transport,
            amr=["pwd", "otp"],
            acr=Acr.SINGLE_FACTOR,
            context=context,
        )
        return VerifyResult(flow, signed_in)

    # -- internals -------------------------------------------------------

    @staticmethod
    def separate_grants_of(flow: RegistrationFlow) -> tuple[str, list[str]]:
        """The policy version read and the separate consents ticked at start."""
        consent = flow.consent or {}
        grants = consent.get("separate_grants")
        codes = [str(code) for code in grants] if isinstance(grants, list) else []
        return str(consent.get("policy_version", "")), codes

    def _consent_at_registration(
        self, policy_version: str | None, decisions: list[DecisionInput]
    ) -> dict[str, object] | None:
        """Decisions made on the registration form, checked now, recorded when
        the account exists. Refusing a required purpose ends registration here."""
        if policy_version is None:
            if decisions:
                raise invalid_field("#/consent/policy_version", "Say which policy you read.")
            return None
        try:
            self._consent.validate(policy_version, decisions)
        except ServiceError as error:
            # The decisions sit under "consent" in the registration body.
            error.errors = [FieldError("#/consent" + e.pointer[1:], e.detail) for e in error.errors]
            raise
        refused = [
            p
            for d in decisions
            if d.decision == Decision.REFUSED
            and (p := self._consent.catalogue.get(d.purpose))
            and p.required
        ]
        if refused:
            refusal = required_refused(refused)
            refusal.keep_changes = False
            refusal.detail = (
                f"{', '.join(p.title.en for p in refused)}: without it there can be no account."
            )
            raise refusal
        return {
            "policy_version": policy_version,
            "decisions": [{"purpose": d.purpose, "decision": d.decision.value} for d in decisions],
        }

    def _with_separate_grants(
        self, consent: dict[str, object] | None, codes: Sequence[str]
    ) -> dict[str, object]:
        if consent is None:
            raise invalid_field("#/consent/policy_version", "Say which policy you read.")
        catalogue = self._consent.catalogue
        for code in codes:
            purpose = catalogue.get(code)
            if purpose is None or not purpose.needs_separate_action or purpose.per_client:
                raise invalid_field(f"#/purpose-{code}", "Not a purpose granted on its own here.")
        return {**consent, "separate_grants": list(dict.fromkeys(codes))}

    def _send(self, flow: RegistrationFlow, channel: str, address: str) -> None:
        taken = flow.email_taken if channel == EMAIL else flow.phone_taken
        index = flow.email_index if channel == EMAIL else flow.phone_index
        code = self._codes.issue(CHANNEL_PURPOSE[channel], flow.id, index, user_id=None)
        minutes = self._codes.ttl_minutes
        # A taken address belongs to an account, and so does the notice to it.
        # Looked up on both paths, so a taken address costs the same time.
        holder = self._directory.find_by_index(channel, index)
        if taken and holder is not None:
            if channel == EMAIL:
                self._notifier.registration_attempt_by_email(address, user_id=holder.id)
            else:
                self._notifier.registration_attempt_by_sms(address, user_id=holder.id)
        elif taken:
            # The holder left since the flow began: nobody to tell.
            if channel == EMAIL:
                self._notifier.nothing_by_email()
            else:
                self._notifier.nothing_by_sms()
        elif channel == EMAIL:
            self._notifier.code_by_email(
                address, code, CodePurpose.REGISTER_EMAIL, minutes, user_id=None
            )
        else:
            self._notifier.code_by_sms(
                address, code, CodePurpose.REGISTER_PHONE, minutes, user_id=None
            )

    def _live_flow(self, flow_id: str) -> RegistrationFlow:
        flow = self._db.execute(
            select(RegistrationFlow).where(RegistrationFlow.id == flow_id).with_for_update()
        ).scalar_one_or_none()
        if flow is None or flow.completed_at is not None or flow.expires_at <= self._clock.now():
            raise not_found("The registration (it may have expired)")
        return flow

    @staticmethod
    def _verified_at(flow: RegistrationFlow, channel: str) -> object:
        return flow.email_verified_at if channel == EMAIL else flow.phone_verified_at

    def _payload(self, flow: RegistrationFlow) -> dict[str, str]:
        data_key = self._key_ring.unwrap(WrappedKey(flow.key_id, flow.wrapped_key), flow.id)
        return dict(
            json.loads(FieldCipher(data_key, flow.id).decrypt("payload", flow.payload_encrypted))
        )

    def _create_account(self, flow: RegistrationFlow) -> User:
        payload = self._payload(flow)
        now = self._clock.now()
        user = User(
            email_index=flow.email_index,
            phone_index=flow.phone_index,
            password_hash=flow.password_hash,
            created_at=now,
            password_changed_at=now,
            email_verified_at=flow.email_verified_at,
            phone_verified_at=flow.phone_verified_at,
        )
        try:
            with self._db.begin_nested():
                user.id = new_id()
                cipher = self._vault.create_key(user.id)
                user.email_encrypted = cipher.encrypt("email", payload["email"])
                user.phone_encrypted = cipher.encrypt("phone", payload["phone"])
                user.full_name_encrypted = cipher.encrypt("full_name", payload["full_name"])
                self._db.add(user)
                self._db.flush()
        except IntegrityError:
            raise ServiceError(
                "account-exists",
                409,
                "An account already exists",
                "An account with this email or phone number was created meanwhile. "
                "Sign in or reset your password instead.",
            ) from None
        # The flow held personal data; it has done its job.
        self._db.execute(delete(OneTimeCode).where(OneTimeCode.subject == flow.id))
        # Guesses at these addresses before they had an account were aimed at no
        # password: the new account starts with none of them (and its export
        # shows nobody else's).
        for index in (flow.email_index, flow.phone_index):
            self._throttle.forget_identifier(index)
        self._db.delete(flow)
        self._db.flush()
        return user


def _or_blank(value: Callable[[], str]) -> str:
    try:
        return value()
    except ServiceError:
        return ""


def _national(identifier: Identifier) -> str:
    assert identifier.phone is not None
    return identifier.phone.national


def _stored_decisions(consent: dict[str, object] | None) -> list[DecisionInput]:
    """The decisions _consent_at_registration kept on the flow (a JSON column)."""
    rows = consent.get("decisions") if consent else None
    if not isinstance(rows, list):
        return []
    return [DecisionInput(str(d["purpose"]), Decision(d["decision"])) for d in rows]
