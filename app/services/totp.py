"""TOTP (RFC 6238) as a second factor, with single-use recovery codes.

pyotp computes the codes; this module owns the rules: ±1 time step of drift,
no time step accepted twice, secrets sealed with the user's data key,
recovery codes shown once and stored as keyed hashes."""

from __future__ import annotations

import hmac
import io
import secrets
from dataclasses import dataclass
from datetime import timedelta

import pyotp
import segno
from sqlalchemy import delete, select
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.errors import ServiceError, invalid_code
from app.models import RecoveryCode, TotpFactor, User
from app.security.tokens import CodeHasher
from app.services.audit import AuditTrail
from app.services.export import ExportContext, Section, plain, register_section
from app.services.vault import PersonalDataVault

ISSUER = "privid"
DRIFT_STEPS = 1  # RFC 6238 §5.2: accept one step either side
RECOVERY_CODES = 10
SECRET_FIELD = "totp_secret"
# A pending enrolment younger than this is not replaced: a double click (or a
# second tab) must not hand out a secret that stops working a moment later.
ENROLMENT_IN_PROGRESS = timedelta(seconds=30)


@dataclass(frozen=True)
class Enrolment:
    secret: str
    otpauth_uri: str
    qr_svg: str


def _recovery_code() -> str:
    # 10 characters from an unambiguous alphabet: ~50 bits, typed by hand.
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


class TotpService:
    def __init__(
        self,
        db: DbSession,
        clock: Clock,
        vault: PersonalDataVault,
        hasher: CodeHasher,
        audit: AuditTrail,
    ) -> None:
        self._db, self._clock, self._vault, self._hasher = db, clock, vault, hasher
        self._audit = audit

    def is_enabled(self, user_id: str) -> bool:
        factor = self._db.get(TotpFactor, user_id)
        return factor is not None and factor.confirmed_at is not None

    def enrol(self, user: User) -> Enrolment:
        # The user row is the lock: there may be no factor row to lock yet, and
        # parallel enrolments must queue instead of colliding on the primary key.
        self._db.execute(select(User.id).where(User.id == user.id).with_for_update()).scalar_one()
        existing = self._locked_factor(user.id)
        now = self._clock.now()
        if existing is not None and existing.confirmed_at is not None:
            raise ServiceError(
                "totp-already-enabled", 409, "Already enabled", "Disable TOTP first to replace it."
            )
        if existing is not None and now - existing.created_at < ENROLMENT_IN_PROGRESS:
            wait = ENROLMENT_IN_PROGRESS - (now - existing.created_at)
            raise ServiceError(
                "totp-enrolment-in-progress",
                409,
                "Enrolment already started",
                "A TOTP enrolment was started a moment ago: scan the code it showed and confirm "
                "it, or start again in a few seconds.",
                headers={"Retry-After": str(int(wait.total_seconds()) + 1)},
            )
        secret = pyotp.random_base32()
        cipher = self._vault.cipher_for(user.id)
        if existing is not None:
            self._db.delete(existing)
            self._db.flush()
        self._db.add(
            TotpFactor(
                user_id=user.id,
                secret_encrypted=cipher.encrypt(SECRET_FIELD, secret),
                created_at=now,
                last_used_step=0,
            )
        )
        self._db.flush()
        # The label names the service and the account id, not the email: the
        # URI ends up in authenticator apps and their backups.
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.id, issuer_name=ISSUER)
        buffer = io.BytesIO()
        segno.make(uri, error="m").save(buffer, kind="svg", scale=4)
        return Enrolment(secret, uri, buffer.getvalue().decode())

    def confirm(self, user: User, code: str) -> list[str]:
        """The first valid code turns TOTP on; the recovery codes come back once.
        The factor row is locked, so a double submission gets one set of codes
        and a 409, not two sets of which only the last works."""
        factor = self._locked_factor(user.id)
        if factor is None or factor.confirmed_at is not None:
            raise ServiceError(
                "totp-not-pending", 409, "Nothing to confirm", "Start TOTP enrolment first."
            )
        self._accept(factor, code)
        factor.confirmed_at = self._clock.now()
        codes = self._new_recovery_codes(user.id)
        self._audit.record("mfa.totp_enabled", user_id=user.id)
        return codes

    def verify(self, user_id: str, code: str) -> None:
        factor = self._locked_factor(user_id)
        if factor is None or factor.confirmed_at is None:
            raise invalid_code()
        self._accept(factor, code)

    def use_recovery_code(self, user_id: str, code: str) -> None:
        wanted = self._hasher(f"recovery:{user_id}", code.strip().lower())
        rows = self._db.execute(
            select(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
            .with_for_update()
        ).scalars()
        for row in rows:
            if hmac.compare_digest(row.code_hash, wanted):
                row.used_at = self._clock.now()
                self._db.flush()
                self._audit.record("mfa.recovery_code_used", user_id=user_id)
                return
        raise invalid_code()

    def regenerate_recovery_codes(self, user_id: str) -> list[str]:
        factor = self._locked_factor(user_id)  # two regenerations queue: one set survives
        if factor is None or factor.confirmed_at is None:
            raise ServiceError("totp-not-enabled", 409, "TOTP is off", "Enable TOTP first.")
        codes = self._new_recovery_codes(user_id)
        self._audit.record("mfa.recovery_codes_regenerated", user_id=user_id)
        return codes

    def disable(self, user_id: str) -> bool:
        """Turn TOTP off (a pending enrolment goes too); whether it was on."""
        factor = self._locked_factor(user_id)
        was_on = factor is not None and factor.confirmed_at is not None
        self._db.execute(delete(TotpFactor).where(TotpFactor.user_id == user_id))
        self._db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        self._db.flush()
        self._audit.record("mfa.totp_disabled", user_id=user_id)
        return was_on

    def remaining_recovery_codes(self, user_id: str) -> int:
        return len(
            self._db.execute(
                select(RecoveryCode.id).where(
                    RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
                )
            ).all()
        )

    # -- internals -------------------------------------------------------------

    def _locked_factor(self, user_id: str) -> TotpFactor | None:
        """The factor row under a row lock, read fresh: an object loaded earlier
        in this unit of work (is_enabled) must not hide a step another worker
        has just used."""
        return self._db.execute(
            select(TotpFactor)
            .where(TotpFactor.user_id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()

    def _accept(self, factor: TotpFactor, code: str) -> None:
        secret = self._vault.cipher_for(factor.user_id).decrypt(
            SECRET_FIELD, factor.secret_encrypted
        )
        totp = pyotp.TOTP(secret)
        now = self._clock.now()
        current = totp.timecode(now)
        for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
            if step > factor.last_used_step and hmac.compare_digest(totp.generate_otp(step), code):
                factor.last_used_step = step
                self._db.flush()
                return
        raise invalid_code()

    def _new_recovery_codes(self, user_id: str) -> list[str]:
        self._db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
        now = self._clock.now()
        for code in codes:
            self._db.add(
                RecoveryCode(
                    user_id=user_id,
                    code_hash=self._hasher(f"recovery:{user_id}", code),
                    created_at=now,
                )
            )
        self._db.flush()
        return codes


def _export_second_factors(ctx: ExportContext) -> dict[str, object]:
    """Metadata only: the secret and the codes' hashes stay out of the export."""
    factor = ctx.db.get(TotpFactor, ctx.user.id)
    codes = ctx.db.execute(select(RecoveryCode).where(RecoveryCode.user_id == ctx.user.id))
    return {
        "totp": None
        if factor is None
        else plain(factor, leave_out=("secret_encrypted", "last_used_step")),
        "recovery_codes": [plain(c, leave_out=("code_hash",)) for c in codes.scalars()],
    }


register_section(
    Section("second_factors", ("totp_factors", "recovery_codes"), _export_second_factors)
)
