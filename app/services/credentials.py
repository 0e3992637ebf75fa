"""What signs an account in, as one keyed digest.

Anything issued between two steps of a sign-in (the second-factor ticket)
carries the digest taken when it was issued and is void once it differs: a
new password (reset or change), TOTP turned on or off, new recovery codes, a
passkey added or removed, a device bound or revoked, the email or phone
changed, the account disabled. The state is read, not versioned, so no writer
can forget to bump a counter; a new kind of factor is added here, once."""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.models import Device, RecoveryCode, TotpFactor, TrustState, User, WebAuthnCredential


class CredentialState:
    def __init__(self, db: DbSession, key: bytes) -> None:
        self._db, self._key = db, key

    def lock(self, user_id: str) -> User | None:
        """The user row, locked and read fresh: a password reset or factor
        change committing meanwhile is either seen here or waits for us."""
        return self._db.execute(
            select(User)
            .where(User.id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()

    def digest(self, user: User) -> str:
        factor = self._db.execute(
            select(TotpFactor.created_at, TotpFactor.confirmed_at).where(
                TotpFactor.user_id == user.id
            )
        ).first()
        recovery = self._db.execute(
            select(RecoveryCode.id).where(RecoveryCode.user_id == user.id)
        ).scalars()
        passkeys = self._db.execute(
            select(WebAuthnCredential.id).where(
                WebAuthnCredential.user_id == user.id,
                WebAuthnCredential.revoked_at.is_(None),
                WebAuthnCredential.flagged_cloned_at.is_(None),
            )
        ).scalars()
        bound = self._db.execute(
            select(Device.id).where(
                Device.user_id == user.id,
                Device.trust_state == TrustState.BOUND,
                Device.revoked_at.is_(None),
            )
        ).scalars()
        parts = [
            user.status,
            user.password_hash or "-",
            user.email_index or "-",
            user.phone_index,
            "totp:" + ("-" if factor is None else f"{factor[0]}/{factor[1]}"),
            "recovery:" + ",".join(sorted(recovery)),
            "passkeys:" + ",".join(sorted(passkeys)),
            "bound:" + ",".join(sorted(bound)),
        ]
        message = "\x1f".join(parts).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
