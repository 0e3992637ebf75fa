"""What an OAuth partner learns through the ``identity`` scope: the level
reached and the day it was verified, nothing of the document; and only while
the person shares with that partner (``partner_sharing`` for its client)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from app.models import User
from app.services.container import Services
from verification.models import IdentityVerification
from verification.service import SELF

PARTNER_SHARING = "partner_sharing"


def identity_claims(
    svc: Services, user: User, client_id: str, names: frozenset[str]
) -> Mapping[str, Any]:
    if not svc.consent.is_granted(user.id, PARTNER_SHARING, client_id):
        return {}
    row = svc.db.scalar(
        select(IdentityVerification).where(
            IdentityVerification.user_id == user.id,
            IdentityVerification.role == SELF,
            # Past its date the row waits for the retention run; it is no
            # longer a result to share.
            IdentityVerification.retain_until > svc.runtime.clock.now(),
        )
    )
    if row is None:
        return {}
    values = {
        "identity_level": row.level,
        "identity_verified_on": row.verified_at.date().isoformat(),
    }
    return {name: value for name, value in values.items() if name in names}
