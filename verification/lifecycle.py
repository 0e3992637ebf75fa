"""What happens to a kept result when the person ends it: withdrawing the
purpose and cancelling the account both erase it, after moving what the legal
archive must keep (who verified, when, at which level, through which provider
and under which reference: enough to find the provider's own record when the
law asks, nothing of the document) into the sealed, pseudonymised archive.
Retention runs delete results past their date. Results are in the export."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import Session as DbSession

from app.db import affected_rows
from app.services.consent import WithdrawalEffects
from app.services.container import Services
from app.services.export import ExportContext, Section, plain
from verification.models import IdentityVerification
from verification.service import PURPOSE

ARCHIVE_CATEGORY = "identity_verification"


def _services(db: DbSession) -> Services:
    return Services(db, current_app.extensions["privid.runtime"])


def erase(db: DbSession, user_id: str) -> None:
    svc = _services(db)
    rows = db.scalars(select(IdentityVerification).where(IdentityVerification.user_id == user_id))
    for row in rows:
        svc.cancellation.archive(
            user_id,
            ARCHIVE_CATEGORY,
            {
                "role": row.role,
                "level": row.level,
                "provider": row.provider,
                "provider_reference": row.provider_reference,
                "document_type": row.document_type,
                "verified_at": row.verified_at.isoformat(),
            },
        )
    db.execute(delete(IdentityVerification).where(IdentityVerification.user_id == user_id))
    db.flush()


def register_withdrawal_effects(effects: WithdrawalEffects) -> None:
    effects.register(PURPOSE, erase)


def purge(db: DbSession, now: datetime) -> dict[str, int]:
    gone = db.execute(delete(IdentityVerification).where(IdentityVerification.retain_until < now))
    return {"identity_verifications": affected_rows(gone)}


def _export(ctx: ExportContext) -> dict[str, Any]:
    rows = ctx.db.scalars(
        select(IdentityVerification).where(IdentityVerification.user_id == ctx.user.id)
    )
    return {
        "about": "Real-name verification results: the document number itself was never "
        "kept, only its masked form (and a keyed hash, left out here: it means nothing "
        "without our key).",
        "results": [plain(row, leave_out=("document_hash", "user_id")) for row in rows],
    }


EXPORT_SECTION = Section("identity_verification", ("identity_verifications",), _export)
