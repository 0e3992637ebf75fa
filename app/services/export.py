"""Everything the service holds about one person, in one JSON document.

Each section names the tables it covers; tests/test_export.py walks every
table that refers to a user and fails when no section covers it, so a new
table cannot be left out of what people get back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.models import (
    AuditEvent,
    ConsentRecord,
    DataSubjectRequest,
    OneTimeCode,
    Session,
    User,
)
from app.services.vault import PersonalDataVault


@dataclass(frozen=True)
class ExportContext:
    db: DbSession
    user: User
    vault: PersonalDataVault


@dataclass(frozen=True)
class Section:
    name: str
    tables: tuple[str, ...]
    collect: Callable[[ExportContext], Any]


def plain(row: object, *, leave_out: Sequence[str] = ()) -> dict[str, Any]:
    """A model row as JSON-ready values; secrets named in ``leave_out`` stay out."""
    table = row.__table__  # type: ignore[attr-defined]
    out: dict[str, Any] = {}
    for column in table.columns:
        if column.key in leave_out:
            continue
        value = getattr(row, column.key)
        out[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _rows(ctx: ExportContext, model: Any, *where: Any) -> list[Any]:
    return list(ctx.db.execute(select(model).where(*where).order_by(model.id)).scalars())


def _profile(ctx: ExportContext) -> dict[str, Any]:
    profile = ctx.vault.profile(ctx.user)
    user = ctx.user
    return {
        "user_id": user.id,
        "email": profile.email,
        "phone": profile.phone,
        "full_name": profile.full_name,
        "status": user.status,
        "role": user.role,
        "created_at": user.created_at.isoformat(),
        "email_verified_at": user.email_verified_at.isoformat(),
        "phone_verified_at": user.phone_verified_at.isoformat(),
        # Credentials' metadata only: the password itself exists nowhere, its hash stays.
        "credentials": [{"type": "password", "changed_at": user.password_changed_at.isoformat()}],
        "encryption": "email, phone and full name are stored encrypted under your own key",
    }


def _sessions(ctx: ExportContext) -> list[dict[str, Any]]:
    return [
        plain(s, leave_out=("token_hash",))
        for s in _rows(ctx, Session, Session.user_id == ctx.user.id)
    ]


def _consent(ctx: ExportContext) -> list[dict[str, Any]]:
    return [plain(r) for r in _rows(ctx, ConsentRecord, ConsentRecord.user_id == ctx.user.id)]


def _requests(ctx: ExportContext) -> list[dict[str, Any]]:
    rows = ctx.db.execute(
        select(DataSubjectRequest)
        .where(DataSubjectRequest.user_id == ctx.user.id)
        .order_by(DataSubjectRequest.received_at)
    ).scalars()
    return [plain(r) for r in rows]


def _audit(ctx: ExportContext) -> list[dict[str, Any]]:
    about = or_(AuditEvent.user_id == ctx.user.id, AuditEvent.actor_id == ctx.user.id)
    return [plain(e) for e in _rows(ctx, AuditEvent, about)]


def _codes(ctx: ExportContext) -> list[dict[str, Any]]:
    """Codes issued for the account; the code itself exists only as a keyed hash."""
    out = []
    for row in _rows(ctx, OneTimeCode, OneTimeCode.user_id == ctx.user.id):
        item = plain(row, leave_out=("code_hash", "destination_index", "pending_value_encrypted"))
        if row.pending_value_encrypted is not None:
            kind = "email" if row.purpose == "change_email" else "phone"
            cipher = ctx.vault.cipher_for(ctx.user.id)
            item["pending_value"] = cipher.decrypt(f"pending_{kind}", row.pending_value_encrypted)
        out.append(item)
    return out


SECTIONS: list[Section] = [
    Section("profile", ("users", "user_data_keys"), _profile),
    Section("sessions", ("sessions",), _sessions),
    Section("consent_history", ("consent_records",), _consent),
    Section("requests", ("data_subject_requests",), _requests),
    Section("audit_events", ("audit_events",), _audit),
    Section("one_time_codes", ("one_time_codes",), _codes),
]


def register_section(section: Section) -> None:
    """Features with tables of their own add their part of the export here."""
    if any(s.name == section.name for s in SECTIONS):
        raise ValueError(f"export section {section.name!r} exists")
    SECTIONS.append(section)


class ExportService:
    def __init__(self, db: DbSession, clock: Clock, vault: PersonalDataVault) -> None:
        self._db, self._clock, self._vault = db, clock, vault

    def export(self, user: User) -> dict[str, Any]:
        ctx = ExportContext(self._db, user, self._vault)
        document: dict[str, Any] = {
            "format": "privid-export/1",
            "generated_at": self._clock.now().isoformat(),
        }
        for section in SECTIONS:
            document[section.name] = section.collect(ctx)
        return document
