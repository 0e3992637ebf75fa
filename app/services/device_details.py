"""The one rule for device and network details (device model, network prefix):
they are security data, kept about an account only while it grants the
``security`` purpose. Sessions, device records and the audit trail all ask here."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.models import ConsentRecord, Decision

SECURITY_PURPOSE = "security"
# An id no account has. Where a request may or may not concern an account, the
# same lookups run against this id when there is none, so the time taken does
# not say whether an address is registered.
NO_ACCOUNT = "00000000-0000-0000-0000-000000000000"


def allowed_by(latest_security_decision: ConsentRecord | None) -> bool:
    """Given the account's latest decision on ``security`` (None: never decided)."""
    return (
        latest_security_decision is not None
        and latest_security_decision.decision == Decision.GRANTED
    )


def keeps_device_details(db: DbSession, user_id: str) -> bool:
    latest = db.execute(
        select(ConsentRecord)
        .where(
            ConsentRecord.user_id == user_id,
            ConsentRecord.purpose == SECURITY_PURPOSE,
            ConsentRecord.client_id.is_(None),
        )
        .order_by(ConsentRecord.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return allowed_by(latest)
