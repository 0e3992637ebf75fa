"""Devices: which browser or app installation a session was opened on, and
which of them the user has bound to the account.

Everything here is security processing, so it happens only while the user
grants the security purpose: no record, no device cookie, no new-device notice
without it. A device is *recognised* when we have seen it before (its device
cookie, its DPoP key or its passkey) and *bound* when the user tied it to the
account on purpose: a platform passkey created on it, or an app key registered
by signing our challenge. Once an account has a bound device, signing in from
any other needs a second proof."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import Session as DbSession
from webauthn.helpers import bytes_to_base64url

from app.clock import Clock
from app.errors import ServiceError, not_found
from app.models import BindingMethod, Device, Session, TrustState, User, WebAuthnCredential
from app.security.dpop import DpopProof
from app.security.tokens import hash_token, new_token
from app.services.audit import AuditTrail
from app.services.challenges import ChallengeStore
from app.services.consent import SECURITY_PURPOSE, ConsentService
from app.services.context import DeviceHints, RequestContext
from app.services.device_details import NO_ACCOUNT
from app.services.dpop import invalid_dpop_proof
from app.services.export import ExportContext, Section, plain, register_section
from app.services.notifications import Notifier
from app.services.safeguards import DEVICE_BINDINGS, PASSKEYS, Protection, Safeguards
from app.services.sessions import SessionService, Transport
from app.services.throttle import device, network
from app.services.vault import PersonalDataVault

BINDING_CEREMONY = "device_binding"


@dataclass(frozen=True)
class Sighting:
    device: Device
    # A browser seen for the first time gets a device cookie with this value.
    new_cookie: str | None


@dataclass(frozen=True)
class BindingChallenge:
    challenge_id: str
    nonce: str
    expires_in: int


def security_not_granted() -> ServiceError:
    return ServiceError(
        "purpose-not-granted",
        403,
        "Security processing is not switched on",
        "Binding a device needs your consent to the 'security' purpose. Grant it at "
        "POST /api/v1/me/consent/security/grant.",
    )


def binding_challenge_invalid() -> ServiceError:
    return ServiceError(
        "binding-challenge-invalid",
        400,
        "The binding request has expired",
        "This binding challenge is not valid any more. Ask for a new one and sign it.",
        keep_changes=True,
    )


def platform_of(device_summary: str) -> str:
    """ "Chrome on Android" -> "Android"."""
    _, on, system = device_summary.rpartition(" on ")
    return (system if on else "unknown")[:32]


class DeviceService:
    def __init__(
        self,
        *,
        db: DbSession,
        clock: Clock,
        consent: ConsentService,
        challenges: ChallengeStore,
        vault: PersonalDataVault,
        notifier: Notifier,
        audit: AuditTrail,
        safeguards: Safeguards,
        sessions: SessionService,
    ) -> None:
        self._db, self._clock, self._consent = db, clock, consent
        self._challenges, self._vault = challenges, vault
        self._notifier, self._audit = notifier, audit
        self._safeguards, self._sessions = safeguards, sessions

    # -- recognising ----------------------------------------------------------------

    def identify(
        self, user_id: str, hints: DeviceHints, *, proven_only: bool = False, lock: bool = False
    ) -> Device | None:
        """The user's live device these hints point to: the passkey used, the
        DPoP key, or (unless ``proven_only``) the device cookie, strongest first.
        A cookie can be copied off a device; a key cannot."""
        candidates = [
            (Device.credential_ref, hints.credential_ref),
            (Device.key_thumbprint, hints.dpop_jkt),
        ]
        if not proven_only:
            candidates.append((Device.cookie_hash, hints.cookie_hash))
        for column, value in candidates:
            if value is None:
                continue
            query = (
                select(Device)
                .where(Device.user_id == user_id, column == value, Device.revoked_at.is_(None))
                .order_by(Device.last_seen_at.desc(), Device.id)
                .limit(1)
            )
            # Locked at sign-in, so a revoke running at the same time waits or wins.
            device = self._db.execute(query.with_for_update() if lock else query).scalar()
            if device is not None:
                return device
        return None

    def recognised(self, user: User | None, hints: DeviceHints) -> Device | None:
        """The device of ``user`` these hints point to, if there is an account:
        the lookups are the same when there is none (enumeration by timing)."""
        found = self.identify(user.id if user is not None else NO_ACCOUNT, hints)
        return found if user is not None else None

    def source_of(self, user: User | None, context: RequestContext) -> str:
        """Where an attempt comes from, as sign-in limits count it: the
        account's recognised device it shows (passkey, DPoP key or device
        cookie), else the client's network. A made-up cookie is no source, so
        it buys no budget of its own."""
        found = self.recognised(user, context.device)
        return device(found.id) if found is not None else network(context.source)

    def has_bound(self, user_id: str) -> bool:
        found = self._db.execute(
            select(Device.id).where(
                Device.user_id == user_id, Device.trust_state == TrustState.BOUND
            )
        ).first()
        return found is not None

    def requires_step_up(self, user_id: str, hints: DeviceHints) -> bool:
        """An account with bound devices accepts a single factor only from one of
        them, shown by its key or its passkey: the device cookie is not enough."""
        if not self.has_bound(user_id):
            return False
        device = self.identify(user_id, hints, proven_only=True)
        return device is None or device.trust_state != TrustState.BOUND

    def sight(self, user: User, session: Session, context: RequestContext) -> Sighting:
        """At sign-in: tie the session to its device, recording a new one (and
        telling the user) if we have not seen it. The caller has checked that
        the security purpose is granted (SignInCompleter reads the ledger once)."""
        now = self._clock.now()
        device = self.identify(user.id, context.device, lock=True)
        new_cookie = None
        if device is None:
            known_elsewhere = self._has_devices(user.id)
            device, new_cookie = self._new_device(user.id, context)
            self._audit.record(
                "device.first_seen", user_id=user.id, ip_prefix=context.ip_prefix,
                device_ref=device.id,
            )  # fmt: skip
            if known_elsewhere:
                self._notifier.new_device_sign_in(
                    self._vault.profile(user),
                    device.label,
                    context.ip_prefix,
                    now,
                    user_id=user.id,
                )
        else:
            device.last_seen_at = now
        session.device_id = device.id
        self._db.flush()
        return Sighting(device, new_cookie)

    # -- binding --------------------------------------------------------------------

    def binding_challenge(self, session: Session) -> BindingChallenge:
        """A nonce for the app to sign with its key: the DPoP proof of the binding
        request carries it (RFC 9449 section 8)."""
        self.require_app_session(session)
        raw = secrets.token_bytes(32)
        row = self._challenges.issue(raw, BINDING_CEREMONY, session.user_id, session.id)
        return BindingChallenge(row.id, bytes_to_base64url(raw), self._challenges.ttl_seconds)

    def require_app_session(self, session: Session) -> None:
        """App keys bind app sessions (bearer tokens), with the security purpose."""
        self._require_security(session.user_id)
        if session.transport != Transport.BEARER:
            raise ServiceError(
                "app-key-needs-bearer",
                409,
                "App keys bind app sessions",
                "Binding an app key needs a session signed in with token_delivery 'bearer'. "
                "Browsers are bound by creating a passkey on the device.",
            )

    def bind_app_key(
        self,
        session: Session,
        challenge_id: str,
        proof: DpopProof,
        *,
        label: str,
        platform: str,
        context: RequestContext,
    ) -> Device:
        self.require_app_session(session)
        row = self._challenges.consume(challenge_id, BINDING_CEREMONY, session.user_id, session.id)
        if row is None:
            raise binding_challenge_invalid()
        if proof.nonce != bytes_to_base64url(row.challenge):
            error = invalid_dpop_proof("its nonce is not the binding challenge")
            error.keep_changes = True  # the challenge stays spent
            raise error
        device = self.identify(session.user_id, DeviceHints(dpop_jkt=proof.jkt))
        if device is not None and device.trust_state == TrustState.BOUND:
            raise ServiceError(
                "device-already-bound", 409, "Already bound", "This app key is bound already."
            )
        if device is None:
            device = self._session_device(session)
        if device is None or device.trust_state == TrustState.BOUND:
            device, _ = self._new_device(session.user_id, context)
        device.label, device.platform = label, platform
        device.binding_method, device.trust_state = BindingMethod.APP_KEY, TrustState.BOUND
        device.key_thumbprint, device.public_jwk = proof.jkt, proof.public_jwk
        # The key is the identifier from now on; a cookie is easier to copy.
        device.cookie_hash = None
        device.last_seen_at = self._clock.now()
        session.device_id = device.id
        # From now on this session's token is useless without the key.
        session.dpop_jkt = proof.jkt
        self._db.flush()
        self._audit.record(
            "device.bound", user_id=session.user_id, ip_prefix=context.ip_prefix,
            device_ref=device.id, method=BindingMethod.APP_KEY.value,
        )  # fmt: skip
        return device

    def bind_passkey(
        self, session: Session, credential_ref: str, context: RequestContext
    ) -> Sighting | None:
        """A platform passkey was just created on this browser or phone: the
        device it lives on becomes bound (with the security purpose granted)."""
        if not self._consent.is_granted(session.user_id, SECURITY_PURPOSE):
            return None
        device = self._session_device(session)
        new_cookie = None
        if device is None:
            device, new_cookie = self._new_device(session.user_id, context)
        session.device_id = device.id
        if device.trust_state == TrustState.BOUND:
            # Bound already (by an app key or an earlier passkey): nothing changes.
            self._db.flush()
            return Sighting(device, new_cookie)
        device.binding_method, device.trust_state = BindingMethod.WEBAUTHN, TrustState.BOUND
        device.credential_ref = credential_ref
        self._db.flush()
        self._audit.record(
            "device.bound", user_id=session.user_id, ip_prefix=context.ip_prefix,
            device_ref=device.id, method=BindingMethod.WEBAUTHN.value,
        )  # fmt: skip
        return Sighting(device, new_cookie)

    def bound_by_passkey(self, credential_ref: str) -> bool:
        found = self._db.execute(
            select(Device.id).where(
                Device.credential_ref == credential_ref, Device.trust_state == TrustState.BOUND
            )
        ).first()
        return found is not None

    def passkey_removed(self, credential_ref: str) -> None:
        """A device bound only by this passkey goes back to merely recognised."""
        unbind_passkeys(self._db, Device.credential_ref == credential_ref)

    # -- managing -------------------------------------------------------------------

    def devices_of(self, user_id: str) -> Sequence[Device]:
        return (
            self._db.execute(
                select(Device)
                .where(Device.user_id == user_id)
                .order_by(Device.last_seen_at.desc(), Device.id)
            )
            .scalars()
            .all()
        )

    def rename(self, user_id: str, device_ref: str, label: str) -> Device:
        device = self._owned(user_id, device_ref)
        device.label = label
        self._db.flush()
        return device

    def revoke(self, session: Session, device_ref: str, ip_prefix: str) -> int:
        """Unbind and forget the device's identifiers; its sessions end at once,
        both those opened on it and those bound to its key. A platform passkey
        that bound it lives on that device, so it goes too: revoking a lost
        phone must stop the phone signing in. Needs the recent sign-in that
        removing a binding (and that passkey) needs."""
        user_id = session.user_id
        # The account's removal lock before the device row (see safeguards.py).
        self._safeguards.hold(user_id)
        device = self._owned(user_id, device_ref, lock=True)
        removed: list[Protection] = []
        if device.trust_state == TrustState.BOUND:
            removed.append(DEVICE_BINDINGS)
        if device.credential_ref is not None:
            removed.append(PASSKEYS)
        # Forgetting even a merely recognised device ends sessions: as fresh a proof.
        self._safeguards.require(session, removed or [DEVICE_BINDINGS])
        now = self._clock.now()
        on_device = Session.device_id == device.id
        if device.key_thumbprint is not None:
            on_device = on_device | (Session.dpop_jkt == device.key_thumbprint)
        ended = self._sessions.end_where(user_id, "device_revoked", on_device)
        passkey = device.credential_ref
        if passkey is not None:
            self._db.execute(
                update(WebAuthnCredential)
                .where(WebAuthnCredential.id == passkey, WebAuthnCredential.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        device.trust_state = TrustState.REVOKED
        device.revoked_at = now
        _erase_identifiers(device)
        self._db.flush()
        if passkey is not None:
            self._audit.record(
                "webauthn.revoked", user_id=user_id, ip_prefix=ip_prefix,
                credential_ref=passkey, reason="device_revoked",
            )  # fmt: skip
        self._audit.record(
            "device.revoked", user_id=user_id, ip_prefix=ip_prefix, device_ref=device.id,
            sessions_ended=int(ended or 0),
        )  # fmt: skip
        owner = self._db.get(User, user_id)
        if removed and owner is not None:
            self._safeguards.tell_owner(owner, removed, "a device was revoked")
        return int(ended or 0)

    # -- internals ------------------------------------------------------------------

    def _require_security(self, user_id: str) -> None:
        if not self._consent.is_granted(user_id, SECURITY_PURPOSE):
            raise security_not_granted()

    def _has_devices(self, user_id: str) -> bool:
        return (
            self._db.execute(select(Device.id).where(Device.user_id == user_id)).first() is not None
        )

    def _session_device(self, session: Session) -> Device | None:
        if session.device_id is None:
            return None
        device = self._db.get(Device, session.device_id)
        return device if device is not None and device.revoked_at is None else None

    def _new_device(self, user_id: str, context: RequestContext) -> tuple[Device, str]:
        """A recognised device and the cookie value a browser will carry for it."""
        now = self._clock.now()
        cookie = new_token()
        device = Device(
            user_id=user_id,
            label=context.device_summary[:64],
            platform=platform_of(context.device_summary),
            binding_method=BindingMethod.NONE,
            trust_state=TrustState.RECOGNISED,
            first_seen_at=now,
            last_seen_at=now,
            cookie_hash=hash_token(cookie),
            key_thumbprint=context.device.dpop_jkt,
        )
        self._db.add(device)
        self._db.flush()
        return device, cookie

    def _owned(self, user_id: str, device_ref: str, *, lock: bool = False) -> Device:
        device = self._db.get(Device, device_ref, with_for_update=lock, populate_existing=lock)
        if device is None or device.user_id != user_id or device.revoked_at is not None:
            raise not_found("The device")
        return device


def _erase_identifiers(device: Device) -> None:
    device.cookie_hash = device.key_thumbprint = device.credential_ref = None
    device.public_jwk = None


def unbind_passkeys(db: DbSession, condition: ColumnElement[bool]) -> None:
    db.execute(
        update(Device)
        .where(condition, Device.binding_method == BindingMethod.WEBAUTHN)
        .values(
            binding_method=BindingMethod.NONE,
            trust_state=TrustState.RECOGNISED,
            credential_ref=None,
        )
    )


def unbind_passkeys_of(db: DbSession, user_id: str) -> None:
    """Withdrawal effect of device_biometrics: the passkeys go, so do their bindings."""
    unbind_passkeys(db, Device.user_id == user_id)


def _holds_binding(db: DbSession, user_id: str, *methods: BindingMethod) -> bool:
    found = db.execute(
        select(Device.id)
        .where(
            Device.user_id == user_id,
            Device.trust_state == TrustState.BOUND,
            Device.binding_method.in_([m.value for m in methods]),
        )
        .limit(1)
    ).first()
    return found is not None


def holds_passkey_binding(db: DbSession, user_id: str) -> bool:
    """Whether unbind_passkeys_of would unbind anything."""
    return _holds_binding(db, user_id, BindingMethod.WEBAUTHN)


def holds_any_binding(db: DbSession, user_id: str) -> bool:
    """Whether forget_devices would unbind anything."""
    return _holds_binding(db, user_id, BindingMethod.WEBAUTHN, BindingMethod.APP_KEY)


def forget_devices(db: DbSession, user_id: str) -> None:
    """Withdrawal effect of security: every binding ends and every device
    identifier is erased; sessions go on without a device (the foreign key
    clears their device_id)."""
    db.execute(delete(Device).where(Device.user_id == user_id))


def _export(ctx: ExportContext) -> dict[str, Any]:
    rows = ctx.db.execute(
        select(Device).where(Device.user_id == ctx.user.id).order_by(Device.first_seen_at)
    ).scalars()
    return {
        "about": "Devices you signed in from, kept while you grant the security purpose.",
        "devices": [plain(d) for d in rows],
    }


register_section(Section("devices", ("devices",), _export))
