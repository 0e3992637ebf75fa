"""What a retention run deletes of the provider's tables. Ended grants and
their tokens stay a while, as ended sessions do, so the person still sees
them (partners page, export); used codes and rotated refresh tokens stay
at least until they expire, since presenting one again is how reuse shows."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.orm import Session as DbSession

from app.db import affected_rows
from app.oidc.grant_models import AuthorizationCode, IssuedToken, TokenGrant

ENDED_GRANT_KEPT = timedelta(days=30)


def purge(db: DbSession, now: datetime) -> dict[str, int]:
    before = now - ENDED_GRANT_KEPT
    codes = db.execute(delete(AuthorizationCode).where(AuthorizationCode.expires_at < before))
    tokens = db.execute(delete(IssuedToken).where(IssuedToken.expires_at < before))
    # A grant's remaining codes and tokens go with it (ON DELETE CASCADE).
    grants = db.execute(
        delete(TokenGrant).where(
            or_(TokenGrant.expires_at < before, TokenGrant.revoked_at < before)
        )
    )
    return {
        "oauth_codes": affected_rows(codes),
        "oauth_tokens": affected_rows(tokens),
        "oauth_grants": affected_rows(grants),
    }
