"""Account cancellation: sessions end, the user's data key is destroyed
(crypto-shredding), what has no legal hold is deleted, and what the law makes
us keep moves to the legal archive under a keyed pseudonym."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.db import scrub_after_commit
from app.models import (
    LegalArchiveRecord,
    LoginThrottle,
    OneTimeCode,
    RequestKind,
    Session,
    User,
    UserDataKey,
)
from app.models.base import new_id
from app.security.envelope import FieldCipher, KeyRing
from app.services.audit import AuditTrail
from app.services.outbox import abandon_pending
from app.services.purposes import Catalogue
from app.services.rights import RightsService
from app.services.sessions import SessionService
from app.services.throttle import rows_of as throttle_rows_of
from app.services.vault import PersonalDataVault

LEGAL_ARCHIVE = "legal_archive"
# What a capability ends when an account is cancelled, before its rows go
# (the OIDC provider revokes the user's grants). Each gets the user id.
AccountEnding = Callable[[DbSession, str], None]
_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?$")


def after(start: datetime, iso_duration: str) -> datetime:
    """``start`` plus an ISO 8601 duration of years, months and days (a year
    counts 366 days and a month 31: a legal period is never cut short)."""
    match = _DURATION.match(iso_duration)
    if not match:
        raise ValueError(f"not a duration: {iso_duration!r}")
    years, months, days = (int(g or 0) for g in match.groups())
    return start + timedelta(days=366 * years + 31 * months + days)


class CancellationService:
    def __init__(
        self,
        *,
        db: DbSession,
        clock: Clock,
        key_ring: KeyRing,
        vault: PersonalDataVault,
        rights: RightsService,
        audit: AuditTrail,
        catalogue: Catalogue,
        pseudonym_key: bytes,
        sessions: SessionService,
        endings: Sequence[AccountEnding] = (),
    ) -> None:
        self._db, self._clock, self._key_ring, self._vault = db, clock, key_ring, vault
        self._rights, self._audit, self._catalogue = rights, audit, catalogue
        self._pseudonym_key, self._endings = pseudonym_key, endings
        self._sessions = sessions

    def pseudonym(self, user_id: str) -> str:
        return hmac.new(self._pseudonym_key, user_id.encode(), hashlib.sha256).hexdigest()

    def cancel(self, user: User) -> LegalArchiveRecord:
        request = self._rights.receive(user.id, RequestKind.ACCOUNT_CANCELLATION)
        archive = self._archive_identity(user)
        user_id = user.id
        # Capabilities end what they hold for the account first, while its
        # rows still say which clients and sessions to tell.
        for end in self._endings:
            end(self._db, user_id)
        # Crypto-shredding: without the data key every copy of the user's
        # encrypted fields is noise. The rest of the account goes with it.
        self._db.execute(delete(UserDataKey).where(UserDataKey.user_id == user_id))
        # Ended before they are deleted, so whoever listens for sessions ending
        # (partners' back-channel logout) hears of these too.
        self._sessions.revoke_all(user_id, "account_cancelled")
        self._db.execute(delete(Session).where(Session.user_id == user_id))
        # Every code issued for the account, including those keyed by its email,
        # phone or a flow (reset, SMS sign-in), which would otherwise outlive it.
        self._db.execute(delete(OneTimeCode).where(OneTimeCode.user_id == user_id))
        self._db.execute(delete(LoginThrottle).where(throttle_rows_of(user)))
        # Messages still queued for the account go unsent and are erased. The
        # cancellation sends none of its own: the answer to the request is the
        # confirmation, and a notice would keep the address openable after the
        # data key is gone.
        self._db.flush()
        abandon_pending(self._db, user_id, self._clock.now())
        self._db.delete(user)
        self._db.flush()
        scrub_after_commit(self._db)
        self._rights.complete(
            request, "Account cancelled; identity kept in the legal archive until its date."
        )
        # The trail keeps the fact, with the random user id only.
        self._audit.record(
            "account.cancelled",
            user_id=user_id,
            archive_record=archive.id,
            retain_until=archive.retain_until.isoformat(),
        )
        return archive

    def _archive_identity(self, user: User) -> LegalArchiveRecord:
        profile = self._vault.profile(user)
        return self.archive(
            user.id,
            "identity",
            {
                "full_name": profile.full_name,
                "phone": profile.phone,
                "email": profile.email,
                "registered_at": user.created_at.isoformat(),
            },
        )

    def archive(self, user_id: str, category: str, payload: dict[str, Any]) -> LegalArchiveRecord:
        """Keep ``payload`` in the legal archive for its legal period: sealed
        under a data key of its own, linked to the account by pseudonym only.
        Capabilities archive what the law makes them keep through this too."""
        purpose = self._catalogue.get(LEGAL_ARCHIVE)
        retention = purpose.retention if purpose else "P3Y"
        now = self._clock.now()
        record = LegalArchiveRecord(
            subject_pseudonym=self.pseudonym(user_id),
            category=category,
            created_at=now,
            retain_until=after(now, retention),
        )
        record.id = record_id = new_id()
        data_key, wrapped = self._key_ring.new_data_key(f"archive:{record_id}")
        record.key_id, record.wrapped_key = wrapped.key_id, wrapped.wrapped
        record.payload_encrypted = FieldCipher(data_key, f"archive:{record_id}").encrypt(
            category, json.dumps(payload)
        )
        self._db.add(record)
        self._db.flush()
        return record
