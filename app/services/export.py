"""Everything the service holds about one person, in one JSON document.

Each section names the tables it covers, and ``NOT_EXPORTED`` names the tables
deliberately left out, each with its reason. tests/test_export_coverage.py
walks every table with a column that can identify a user (see
app/models/identifying.py) and fails when a table is in neither, so a new
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
    CodePurpose,
    ConsentRecord,
    DataSubjectRequest,
    LoginThrottle,
    OneTimeCode,
    OutboxMessage,
    Session,
    User,
)
from app.services.throttle import rows_of as throttle_rows_of
from app.services.vault import PersonalDataVault


@dataclass(frozen=True)
class ExportContext:
    db: DbSession
    user: User
    vault: PersonalDataVault
    now: datetime


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
        "email_verified_at": _when(user.email_verified_at),
        "phone_verified_at": user.phone_verified_at.isoformat(),
        # Credentials' metadata only: the password itself exists nowhere, its hash stays.
        "credentials": (
            [{"type": "password", "changed_at": _when(user.password_changed_at)}]
            if user.password_hash is not None
            else []
        ),
        "encryption": "email, phone and full name are stored encrypted under your own key",
    }


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


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


def _sent_to(ctx: ExportContext, index: str) -> str:
    """Where a code went, in words: the blind index itself means nothing to anyone."""
    if ctx.user.email_index is not None and index == ctx.user.email_index:
        return "your email address"
    if index == ctx.user.phone_index:
        return "your phone number"
    return "the new address below"


# The field a pending contact change is sealed under (AccountService.start_contact_change).
_PENDING_FIELD: dict[str, str] = {
    CodePurpose.CHANGE_EMAIL.value: "pending_email",
    CodePurpose.CHANGE_PHONE.value: "pending_phone",
}


def user_codes(ctx: ExportContext) -> list[OneTimeCode]:
    """The user's one-time codes: every code names the account it was issued for."""
    about = OneTimeCode.user_id == ctx.user.id
    rows = ctx.db.execute(select(OneTimeCode).where(about).order_by(OneTimeCode.sent_at)).scalars()
    return [row for row in rows if row.code_hash]  # a row never issued holds nothing


def _codes(ctx: ExportContext) -> list[dict[str, Any]]:
    out = []
    for row in user_codes(ctx):
        if row.consumed_at is not None:
            status = "used"
        elif row.expires_at <= ctx.now:
            status = "expired"
        else:
            status = "pending"
        entry: dict[str, Any] = {
            "purpose": row.purpose,
            "status": status,
            "sent_to": _sent_to(ctx, row.destination_index),
            "sent_at": row.sent_at.isoformat(),
            "expires_at": row.expires_at.isoformat(),
            "failed_attempts": row.failed_attempts,
            "used_at": row.consumed_at.isoformat() if row.consumed_at else None,
        }
        field = _PENDING_FIELD.get(row.purpose)
        if field and row.pending_value_encrypted is not None:
            cipher = ctx.vault.cipher_for(ctx.user.id)
            entry["pending_value"] = cipher.decrypt(field, row.pending_value_encrypted)
        # Never the code or its hash: the export is not a way to read a code.
        out.append(entry)
    return out


def user_throttles(ctx: ExportContext) -> list[LoginThrottle]:
    """Sign-in throttle rows about the user (the throttle says which: per-source
    keys are hashes, so rows carry their subject)."""
    about = throttle_rows_of(ctx.user)
    return list(
        ctx.db.execute(select(LoginThrottle).where(about).order_by(LoginThrottle.key)).scalars()
    )


def _throttles(ctx: ExportContext) -> list[dict[str, Any]]:
    out = []
    for row in user_throttles(ctx):
        about = f"{row.subject or ''} {row.key}"
        if ctx.user.email_index and ctx.user.email_index in about:
            applies_to = "your email address"
        elif ctx.user.phone_index in about:
            applies_to = "your phone number"
        else:
            applies_to = "your account"
        out.append(
            {
                # The key's first part names the counter (sign-in, second factor, passkey...).
                "counter": row.key.split(":", 1)[0],
                "applies_to": applies_to,
                "failures": row.failures,
                "next_attempt_at": row.next_attempt_at.isoformat(),
                "updated_at": row.updated_at.isoformat(),
            }
        )
    return out


def _message_status(row: OutboxMessage) -> str:
    if row.sent_at is not None:
        return "sent"
    if row.abandoned_at is not None:
        return "abandoned"
    return "pending"


def _messages(ctx: ExportContext) -> list[dict[str, Any]]:
    """Every message about the account, waiting or done (Notifier stores whom a
    message concerns). What it says stays sealed: the export is not a way to
    read a code, and a sent message's text is erased anyway."""
    rows = ctx.db.execute(
        select(OutboxMessage)
        .where(OutboxMessage.user_id == ctx.user.id)
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
    ).scalars()
    return [
        {
            "id": row.id,
            "channel": row.channel,
            "kind": row.kind,
            # An incident notice names its incident (see security_notices).
            "incident_id": row.reference_id,
            "status": _message_status(row),
            "created_at": row.created_at.isoformat(),
            "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at.isoformat(),
            "sent_at": row.sent_at.isoformat() if row.sent_at else None,
            "abandoned_at": row.abandoned_at.isoformat() if row.abandoned_at else None,
            "last_error_class": row.last_error_class,
        }
        for row in rows
    ]


SECTIONS: list[Section] = [
    Section("profile", ("users", "user_data_keys"), _profile),
    Section("sessions", ("sessions",), _sessions),
    Section("consent_history", ("consent_records",), _consent),
    Section("requests", ("data_subject_requests",), _requests),
    Section("audit_events", ("audit_events",), _audit),
    Section("one_time_codes", ("one_time_codes",), _codes),
    Section("sign_in_throttles", ("login_throttles",), _throttles),
    Section("messages", ("outbox_messages",), _messages),
]

# Tables that can identify a user but are not in the export, and why.
NOT_EXPORTED: dict[str, str] = {
    "registration_flows": (
        "a registration in progress belongs to whoever typed the details, not to an "
        "account; it is deleted when the account is created and expires otherwise"
    ),
    "legal_archive_records": (
        "written at cancellation, when the account ends, under a keyed pseudonym; no "
        "signed-in person can ask for it, and a request for it goes to the operator queue"
    ),
    "incidents": (
        "created_by names the operator who recorded an incident: their work record, "
        "not data about them as a user; the incident's notice to affected users is exported"
    ),
    "chain_heads": (
        "ledger bookkeeping: the newest hash and the record count of the user's consent "
        "chain under a keyed MAC, named after the user id; the consent records it vouches "
        "for are exported"
    ),
    "policy_versions": (
        "published_by names the operator who published a policy version; the act is in "
        "audit_events with the operator as actor, which the export covers"
    ),
}


def register_section(section: Section) -> None:
    """Features with tables of their own add their part of the export here.
    The same section again is no change (capabilities are read again when
    their list is)."""
    if section in SECTIONS:
        return
    if any(s.name == section.name for s in SECTIONS):
        raise ValueError(f"export section {section.name!r} exists")
    SECTIONS.append(section)


class ExportService:
    def __init__(self, db: DbSession, clock: Clock, vault: PersonalDataVault) -> None:
        self._db, self._clock, self._vault = db, clock, vault

    def export(self, user: User) -> dict[str, Any]:
        now = self._clock.now()
        ctx = ExportContext(self._db, user, self._vault, now)
        document: dict[str, Any] = {
            "format": "privid-export/1",
            "generated_at": now.isoformat(),
        }
        for section in SECTIONS:
            document[section.name] = section.collect(ctx)
        return document
