"""WebAuthn (passkeys): enrolment, username-less sign-in and biometric step-up.

The only module that imports py_webauthn; every failure of the library becomes
one of our problem documents. Challenges live in the database (any worker can
finish a ceremony) and each is answered at most once. Nothing biometric ever
reaches us: the authenticator checks the fingerprint or face locally and
reports a single bit, UV."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession
from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AttestationFormat,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from app import metrics
from app.clock import Clock
from app.errors import ServiceError, invalid_credentials, not_found
from app.models import Session, TotpFactor, User, WebAuthnChallenge, WebAuthnCredential
from app.services.audit import AuditTrail
from app.services.challenges import ChallengeStore
from app.services.consent import ConsentService
from app.services.context import RequestContext
from app.services.devices import DeviceService
from app.services.export import ExportContext, Section, register_section
from app.services.safeguards import DEVICE_BINDINGS, PASSKEYS, Protection, Safeguards
from app.services.sessions import Acr, IssuedSession, SessionService, Transport
from app.services.signin import SignInCompleter, SignInResult
from app.services.throttle import AccountThrottle, network, signed_in
from app.services.vault import PersonalDataVault
from app.services.ways_in import PASSKEY_PREFIX, kind_of, require_another
from app.settings import Settings

DEVICE_BIOMETRICS = "device_biometrics"
REGISTRATION = "registration"
AUTHENTICATION = "authentication"
KNOWN_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)
DEFAULT_NICKNAME = "Passkey"
PLATFORM_ATTACHMENT = "platform"


@dataclass(frozen=True)
class Registered:
    credential: WebAuthnCredential
    # Set when registering bound a browser seen for the first time.
    device_cookie: str | None


@dataclass(frozen=True)
class Ceremony:
    """Options for the browser (the JSON shape parse*OptionsFromJSON takes) and
    the id of the stored challenge the answer must name."""

    challenge_id: str
    options: dict[str, Any]


# -- problems ----------------------------------------------------------------------


def purpose_not_granted() -> ServiceError:
    return ServiceError(
        "purpose-not-granted",
        403,
        "Device biometrics is not switched on",
        "Passkeys and fingerprint or face sign-in need your consent to the "
        "'device_biometrics' purpose. Grant it at POST /api/v1/me/consent/device_biometrics/grant.",
    )


def challenge_invalid() -> ServiceError:
    # Unknown, expired, already used, or issued for another ceremony or user: one answer.
    return ServiceError(
        "webauthn-challenge-invalid",
        400,
        "The passkey request has expired",
        "This passkey request is not valid any more. Ask for new options and try again.",
    )


def registration_refused(detail: str) -> ServiceError:
    # keep_changes: the challenge stays spent even though the answer was refused.
    return ServiceError(
        "webauthn-registration-refused", 400, "The passkey was not accepted", detail,
        keep_changes=True,
    )  # fmt: skip


def user_verification_required() -> ServiceError:
    return ServiceError(
        "user-verification-required",
        401,
        "Confirm it is you on the device",
        "The authenticator did not verify you (fingerprint, face or device PIN), so the "
        "session was not raised. Try again and complete the check on your device.",
        keep_changes=True,
    )


def possibly_cloned() -> ServiceError:
    return ServiceError(
        "passkey-possibly-cloned",
        401,
        "This passkey has been blocked",
        "The passkey's use counter went backwards, which can mean it was copied. It can no "
        "longer be used; sign in another way, remove it and register a new one.",
        keep_changes=True,
    )


def not_discoverable() -> ServiceError:
    return ServiceError(
        "passkey-not-discoverable",
        400,
        "This passkey could not sign you in",
        "The authenticator made a credential it does not store on the device (no resident "
        "key), so it could never offer it when you sign in with a passkey, which asks for no "
        "username here. Nothing was registered. Use an authenticator that stores passkeys "
        "(most phones, computers and recent security keys do).",
        keep_changes=True,
    )


def already_registered() -> ServiceError:
    return ServiceError(
        "passkey-already-registered",
        409,
        "This passkey is registered already",
        "This passkey is already registered. Ask for new options to create another one.",
        keep_changes=True,  # the challenge stays spent
    )


def no_passkey() -> ServiceError:
    return ServiceError(
        "no-passkey", 409, "No passkey registered", "Register a passkey before using it."
    )


# -- helpers -----------------------------------------------------------------------


def _options_dict(options: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(options_to_json(options))
    return loaded


def _masked(email: str) -> str:
    """What the passkey prompt shows: enough to tell accounts apart, without
    copying the full address into a passkey provider's cloud."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "privid account"


@dataclass(frozen=True)
class ProvenPasskey:
    user: User
    amr: list[str]
    acr: Acr
    context: RequestContext  # with the credential as the device hint, when it binds one
    credential_ref: str


def _masked_phone(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) > 7 else "privid account"


def credential_kind(credential: WebAuthnCredential) -> str:
    return "synced passkey" if credential.backup_eligible else "bound to this device"


def proves_device(credential: WebAuthnCredential) -> bool:
    """Only a device-bound credential (BE flag clear) lives on one device: a
    backup-eligible one can be synced anywhere, so it binds and identifies none."""
    return not credential.backup_eligible


CredentialState = Literal["active", "possibly_cloned"]


def credential_state(credential: WebAuthnCredential) -> CredentialState:
    return "possibly_cloned" if credential.flagged_cloned_at is not None else "active"


def amr_for(*, backup_eligible: bool, user_verified: bool) -> list[str]:
    """RFC 8176: a key that can be synced lives in software, else in hardware."""
    amr = ["swk" if backup_eligible else "hwk"]
    if user_verified:
        amr.append("user")
    amr.append("pop")
    return amr


class WebAuthnService:
    def __init__(
        self,
        *,
        db: DbSession,
        clock: Clock,
        settings: Settings,
        consent: ConsentService,
        vault: PersonalDataVault,
        signin: SignInCompleter,
        sessions: SessionService,
        audit: AuditTrail,
        challenges: ChallengeStore,
        devices: DeviceService,
        throttle: AccountThrottle,
        safeguards: Safeguards,
    ) -> None:
        self._db, self._clock, self._settings = db, clock, settings
        self._consent, self._vault, self._signin = consent, vault, signin
        self._sessions, self._audit, self._challenges = sessions, audit, challenges
        self._devices, self._throttle, self._safeguards = devices, throttle, safeguards

    # -- registration -------------------------------------------------------------

    def registration_options(self, user: User) -> Ceremony:
        self._require_purpose(user.id)
        s = self._settings
        profile = self._vault.profile(user)
        # The label the authenticator shows: the email, else the phone, masked.
        label = _masked(profile.email) if profile.email else _masked_phone(profile.phone)
        options = generate_registration_options(
            rp_id=s.webauthn_rp_id,
            rp_name=s.webauthn_rp_name,
            user_name=label,
            user_display_name=label,
            # The user handle is our random id: no personal data in the authenticator.
            user_id=user.id.encode(),
            timeout=s.webauthn_challenge_ttl_seconds * 1000,
            attestation=(
                AttestationConveyancePreference.DIRECT
                if s.webauthn_require_attestation
                else AttestationConveyancePreference.NONE
            ),
            # Sign-in is username-less only, so a credential the authenticator
            # does not store (no resident key) could never be offered there.
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                require_resident_key=True,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            # Only usable passkeys: a removed or flagged one must not stop the
            # browser from creating a replacement on the same authenticator.
            exclude_credentials=[
                self._descriptor(c) for c in self._credentials(user.id, active_only=True)
            ],
        )
        row = self._new_challenge(options.challenge, REGISTRATION, user.id, None)
        # credProps (WebAuthn L3 10.1.3) tells us whether it really is discoverable.
        return Ceremony(row.id, {**_options_dict(options), "extensions": {"credProps": True}})

    def verify_registration(
        self,
        session: Session,
        user: User,
        challenge_id: str,
        credential: dict[str, Any],
        nickname: str | None,
        context: RequestContext,
    ) -> Registered:
        row = self._consume(challenge_id, REGISTRATION, user.id, None)
        # Consent may have been withdrawn between the options and the answer.
        if not self._consent.is_granted(user.id, DEVICE_BIOMETRICS):
            error = purpose_not_granted()
            error.keep_changes = True
            raise error
        s = self._settings
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=row.challenge,
                expected_rp_id=s.webauthn_rp_id,
                expected_origin=s.webauthn_origin_list,
                require_user_presence=True,
            )
        # Untrusted CBOR and keys can make the parser fail in many ways; each one
        # means the same thing here: not a valid registration.
        except Exception:
            raise registration_refused(
                "The authenticator's answer could not be verified (wrong site, expired "
                "request or malformed data). Try again."
            ) from None
        fmt = AttestationFormat(verified.fmt).value
        if s.webauthn_require_attestation and fmt != AttestationFormat.PACKED.value:
            raise registration_refused("This service accepts only attested authenticators.")
        allowed = s.webauthn_aaguid_list
        if allowed and verified.aaguid.lower() not in allowed:
            raise registration_refused("This kind of authenticator is not accepted here.")
        cred_props = (credential.get("clientExtensionResults") or {}).get("credProps") or {}
        if cred_props.get("rk") is False:
            raise not_discoverable()
        exists = self._db.execute(
            select(WebAuthnCredential.id).where(
                WebAuthnCredential.credential_id == verified.credential_id
            )
        ).first()
        if exists is not None:
            raise already_registered()
        transports = credential.get("response", {}).get("transports") or []
        now = self._clock.now()
        stored = WebAuthnCredential(
            user_id=user.id,
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=sorted({t for t in transports if t in KNOWN_TRANSPORTS}),
            aaguid=verified.aaguid,
            backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            backup_state=verified.credential_backed_up,
            user_verified_at_registration=verified.user_verified,
            nickname=(nickname or DEFAULT_NICKNAME).strip() or DEFAULT_NICKNAME,
            attestation_format=fmt,
            created_at=now,
        )
        # Two ceremonies answered with one credential at once both pass the check
        # above; the unique index decides, and the loser gets the same 409.
        try:
            with self._db.begin_nested():
                self._db.add(stored)
                self._db.flush()
        except IntegrityError:
            raise already_registered() from None
        self._audit.record(
            "webauthn.registered",
            user_id=user.id,
            credential_ref=stored.id,
            attestation_format=fmt,
            kind=credential_kind(stored),
        )
        # A passkey living in this device's own authenticator, and only there,
        # binds the device.
        sighting = None
        on_this_device = credential.get("authenticatorAttachment") == PLATFORM_ATTACHMENT
        if on_this_device and proves_device(stored):
            sighting = self._devices.bind_passkey(session, stored.id, context)
        return Registered(stored, sighting.new_cookie if sighting else None)

    # -- authentication ----------------------------------------------------------

    def sign_in_options(self) -> Ceremony:
        """Username-less: the browser offers whichever passkey the user picks."""
        options = generate_authentication_options(
            rp_id=self._settings.webauthn_rp_id,
            timeout=self._settings.webauthn_challenge_ttl_seconds * 1000,
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        row = self._new_challenge(options.challenge, AUTHENTICATION, None, None)
        return Ceremony(row.id, _options_dict(options))

    def step_up_options(self, session: Session) -> Ceremony:
        """For a signed-in session: the user's own passkeys, with UV required."""
        credentials = self._credentials(session.user_id, active_only=True)
        if not credentials:
            raise no_passkey()
        options = generate_authentication_options(
            rp_id=self._settings.webauthn_rp_id,
            timeout=self._settings.webauthn_challenge_ttl_seconds * 1000,
            allow_credentials=[self._descriptor(c) for c in credentials],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        row = self._new_challenge(options.challenge, AUTHENTICATION, session.user_id, session.id)
        return Ceremony(row.id, _options_dict(options))

    def _has_totp(self, user_id: str) -> bool:
        factor = self._db.get(TotpFactor, user_id)
        return factor is not None and factor.confirmed_at is not None

    def sign_in(
        self,
        challenge_id: str,
        credential: dict[str, Any],
        *,
        transport: Transport,
        context: RequestContext,
    ) -> SignInResult:
        proven = self.prove(challenge_id, credential, context)
        user, context = proven.user, proven.context
        result = self._signin.complete(
            user, transport=transport, amr=proven.amr, acr=proven.acr, context=context
        )
        metrics.sign_in("webauthn", "success")
        self._audit.record(
            "login.succeeded",
            user_id=user.id,
            ip_prefix=context.ip_prefix,
            method="webauthn",
            credential_ref=proven.credential_ref,
            session_id=result.issued.session.id,
            consent_pending=not result.complete,
        )
        return result

    def prove(
        self, challenge_id: str, credential: dict[str, Any], context: RequestContext
    ) -> ProvenPasskey:
        """The account whose passkey answered the username-less challenge, with
        what the answer proves (a sign-in, or linking another way in to it)."""
        # The account whose passkey answered, once known: its failures are its
        # events, kept under its choice about network details.
        account: str | None = None
        try:
            named = self._stored(credential)
            account = named.user_id if named is not None else None
            row = self._consume(challenge_id, AUTHENTICATION, None, None)
            stored, user_verified = self._verify_assertion(
                row, credential, owner=None, source=network(context.source)
            )
            user = self._db.get(User, stored.user_id)
            if user is None or not user.is_active:
                raise invalid_credentials()
            if proves_device(stored):
                hints = replace(context.device, credential_ref=stored.id)
                context = replace(context, device=hints)
            # Without user verification a passkey proves possession only: one
            # factor. It cannot stand in for an account's TOTP, nor sign in on a
            # device the account is not bound to when it has bound ones.
            if not user_verified and (
                self._has_totp(user.id) or self._devices.requires_step_up(user.id, context.device)
            ):
                raise user_verification_required()
        except ServiceError as error:
            # Every failed sign-in leaves its trace, with the reason and no PII.
            metrics.sign_in("webauthn", "failure")
            self._audit.record(
                "login.failed",
                outcome="failure",
                user_id=account,
                ip_prefix=context.ip_prefix,
                method="webauthn",
                reason=error.slug,
            )
            error.keep_changes = True
            raise
        amr = amr_for(backup_eligible=stored.backup_eligible, user_verified=user_verified)
        acr = Acr.PHISHING_RESISTANT if user_verified else Acr.SINGLE_FACTOR
        return ProvenPasskey(user, amr, acr, context, stored.id)

    def step_up(
        self, session: Session, challenge_id: str, credential: dict[str, Any]
    ) -> IssuedSession:
        row = self._consume(challenge_id, AUTHENTICATION, session.user_id, session.id)
        stored, user_verified = self._verify_assertion(
            row, credential, owner=session.user_id, source=signed_in(session.id), require_uv=True
        )
        amr = amr_for(backup_eligible=stored.backup_eligible, user_verified=user_verified)
        return self._sessions.step_up(session, acr=Acr.PHISHING_RESISTANT, amr=amr)

    # -- managing -----------------------------------------------------------------

    def credentials_of(self, user_id: str) -> Sequence[WebAuthnCredential]:
        """Every passkey not removed, flagged ones included: the user must see
        them to remove them."""
        query = select(WebAuthnCredential).where(
            WebAuthnCredential.user_id == user_id, WebAuthnCredential.revoked_at.is_(None)
        )
        return self._db.execute(query.order_by(WebAuthnCredential.created_at)).scalars().all()

    def rename(self, user_id: str, credential_ref: str, nickname: str) -> WebAuthnCredential:
        credential = self._owned(user_id, credential_ref)
        credential.nickname = nickname.strip() or DEFAULT_NICKNAME
        self._db.flush()
        return credential

    def revoke(self, session: Session, credential_ref: str, ip_prefix: str) -> None:
        """Remove a passkey (and the binding it made): needs the recent sign-in
        that removing these protections needs, and the owner is told."""
        user_id = session.user_id
        # The account's removal lock first; then the passkey, read fresh: a
        # second delete of it arriving at once finds it gone (404).
        self._safeguards.hold(user_id)
        credential = self._owned(user_id, credential_ref, lock=True)
        require_another(self._db, user_id, {PASSKEY_PREFIX + credential.id})
        removed: list[Protection] = [PASSKEYS]
        if self._devices.bound_by_passkey(credential.id):
            removed.append(DEVICE_BINDINGS)
        self._safeguards.require(session, removed)
        credential.revoked_at = self._clock.now()
        self._devices.passkey_removed(credential.id)
        self._db.flush()
        self._audit.record(
            "webauthn.revoked", user_id=user_id, ip_prefix=ip_prefix, credential_ref=credential.id
        )
        owner = self._db.get(User, user_id)
        if owner is not None:
            self._safeguards.tell_owner(owner, removed, "a passkey was removed")

    # -- internals ----------------------------------------------------------------

    def _require_purpose(self, user_id: str) -> None:
        if not self._consent.is_granted(user_id, DEVICE_BIOMETRICS):
            raise purpose_not_granted()

    def _credentials(self, user_id: str, *, active_only: bool) -> Sequence[WebAuthnCredential]:
        query = select(WebAuthnCredential).where(WebAuthnCredential.user_id == user_id)
        if active_only:
            query = query.where(
                WebAuthnCredential.revoked_at.is_(None),
                WebAuthnCredential.flagged_cloned_at.is_(None),
            )
        return self._db.execute(query.order_by(WebAuthnCredential.created_at)).scalars().all()

    def _owned(
        self, user_id: str, credential_ref: str, *, lock: bool = False
    ) -> WebAuthnCredential:
        credential = self._db.get(
            WebAuthnCredential, credential_ref, with_for_update=lock, populate_existing=lock
        )
        if credential is None or credential.user_id != user_id or credential.revoked_at:
            raise not_found("The passkey")
        return credential

    def _stored(self, credential: dict[str, Any]) -> WebAuthnCredential | None:
        """The stored passkey an assertion names by its rawId, if any."""
        try:
            raw_id = base64url_to_bytes(str(credential.get("rawId", "")))
        except ValueError:
            return None
        return self._db.execute(
            select(WebAuthnCredential).where(WebAuthnCredential.credential_id == raw_id)
        ).scalar_one_or_none()

    @staticmethod
    def _descriptor(credential: WebAuthnCredential) -> PublicKeyCredentialDescriptor:
        return PublicKeyCredentialDescriptor(
            id=credential.credential_id,
            transports=[AuthenticatorTransport(t) for t in credential.transports] or None,
        )

    def _new_challenge(
        self, challenge: bytes, ceremony: str, user_id: str | None, session_id: str | None
    ) -> WebAuthnChallenge:
        return self._challenges.issue(challenge, ceremony, user_id, session_id)

    def _consume(
        self, challenge_id: str, ceremony: str, user_id: str | None, session_id: str | None
    ) -> WebAuthnChallenge:
        row = self._challenges.consume(challenge_id, ceremony, user_id, session_id)
        if row is None:
            raise challenge_invalid()
        return row

    def _verify_assertion(
        self,
        row: WebAuthnChallenge,
        credential: dict[str, Any],
        *,
        owner: str | None,
        source: str,
        require_uv: bool = False,
    ) -> tuple[WebAuthnCredential, bool]:
        refused = invalid_credentials()  # keep_changes: the spent challenge stays spent
        stored = self._stored(credential)
        if (
            stored is None
            or stored.revoked_at is not None
            or stored.flagged_cloned_at is not None
            or (owner is not None and stored.user_id != owner)
        ):
            raise refused
        handle = credential.get("response", {}).get("userHandle")
        if handle and handle != bytes_to_base64url(stored.user_id.encode()):
            raise refused
        s = self._settings
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=row.challenge,
                expected_rp_id=s.webauthn_rp_id,
                expected_origin=s.webauthn_origin_list,
                credential_public_key=stored.public_key,
                # Zero: the library would refuse a regression before we could flag
                # it. We compare below, once the signature is known to be good.
                credential_current_sign_count=0,
            )
        # As in registration: whatever the parser trips on, the assertion is invalid.
        except Exception:
            # Counted only now, per (credential, source): a signature cannot be
            # guessed, so junk never holds up a valid one, and one source's
            # junk backs off that source only.
            failure: ServiceError = refused
            try:
                self._throttle.passkey_failed(stored.user_id, stored.id, source)
            except ServiceError as backing_off:
                backing_off.keep_changes = True  # the spent challenge stays spent
                failure = backing_off
            raise failure from None
        # Read again under the row's lock before comparing counters: assertions
        # carrying the same counter value (a copied authenticator racing the
        # original) then queue, and the second sees the first's count.
        self._db.refresh(stored, with_for_update=True)
        if stored.revoked_at is not None or stored.flagged_cloned_at is not None:
            raise refused
        received = verified.new_sign_count
        if (received or stored.sign_count) and received <= stored.sign_count:
            stored.flagged_cloned_at = self._clock.now()
            self._audit.record(
                "webauthn.clone_suspected",
                outcome="failure",
                user_id=stored.user_id,
                credential_ref=stored.id,
                stored_count=stored.sign_count,
                received_count=received,
            )
            raise possibly_cloned()
        if require_uv and not verified.user_verified:
            raise user_verification_required()
        stored.sign_count = received
        stored.backup_state = verified.credential_backed_up
        stored.last_used_at = self._clock.now()
        self._throttle.passkey_proven(stored.id, source)
        self._db.flush()
        return stored, verified.user_verified


# -- export --------------------------------------------------------------------------


def _export(ctx: ExportContext) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    credentials = ctx.db.execute(
        select(WebAuthnCredential)
        .where(WebAuthnCredential.user_id == ctx.user.id)
        .order_by(WebAuthnCredential.created_at)
    ).scalars()
    challenges = ctx.db.execute(
        select(WebAuthnChallenge)
        .where(WebAuthnChallenge.user_id == ctx.user.id)
        .order_by(WebAuthnChallenge.expires_at)
    ).scalars()
    return {
        "about": "Passkeys: we hold a public key and these details, never biometric data.",
        "credentials": [
            {
                "credential_id": bytes_to_base64url(c.credential_id),
                "nickname": c.nickname,
                "kind": credential_kind(c),
                "backed_up": c.backup_state,
                "transports": c.transports,
                "aaguid": c.aaguid,
                "attestation_format": c.attestation_format,
                "user_verified_at_registration": c.user_verified_at_registration,
                "sign_count": c.sign_count,
                "created_at": iso(c.created_at),
                "last_used_at": iso(c.last_used_at),
                "revoked_at": iso(c.revoked_at),
                "flagged_cloned_at": iso(c.flagged_cloned_at),
            }
            for c in credentials
        ],
        # Short-lived ceremony challenges addressed to the user, while they exist.
        "challenges": [
            {
                "ceremony": c.ceremony,
                "expires_at": iso(c.expires_at),
                "consumed_at": iso(c.consumed_at),
            }
            for c in challenges
        ],
    }


register_section(Section("passkeys", ("webauthn_credentials", "webauthn_challenges"), _export))


def holds_passkeys(db: DbSession, user_id: str) -> bool:
    """Whether delete_credentials would take a usable passkey away."""
    found = db.execute(
        select(WebAuthnCredential.id)
        .where(
            WebAuthnCredential.user_id == user_id,
            WebAuthnCredential.revoked_at.is_(None),
            WebAuthnCredential.flagged_cloned_at.is_(None),
        )
        .limit(1)
    ).first()
    return found is not None


def keep_a_way_in(db: DbSession, user_id: str) -> None:
    """Withdrawal check of device_biometrics: refused when the passkeys are
    the account's last way in (registered before the effects that remove them)."""
    if holds_passkeys(db, user_id):
        require_another(db, user_id, kind_of(PASSKEY_PREFIX))


def delete_credentials(db: DbSession, user_id: str) -> None:
    """Withdrawal effect of device_biometrics (retention P0D): the passkeys go."""
    db.execute(delete(WebAuthnCredential).where(WebAuthnCredential.user_id == user_id))
