"""Security incidents: recording one, choosing whom it affects, queuing their
notices, and what each user is told.

The policy promises a notice with the basic facts and possible impact, the
measures taken or to be taken, advice on protecting oneself, and remedies. The
notice is queued in the outbox (app/services/outbox.py) and rendered from the
incident when it is sent, so the text exists once, here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, insert, select
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.errors import FieldError, ServiceError, invalid_field, not_found
from app.models import (
    AuditEvent,
    Incident,
    IncidentRecipient,
    OutboxChannel,
    OutboxKind,
    OutboxMessage,
    User,
)
from app.models.base import new_id
from app.services.audit import AuditTrail
from app.services.export import ExportContext, Section, plain, register_section

# Keeps IN (...) lists well under SQLite's bound-parameter limit.
_CHUNK = 500
# Unknown ids named in one refusal; the rest are counted.
_NAMED_UNKNOWN = 10


@dataclass(frozen=True)
class IncidentText:
    title: str
    facts: str
    impact: str
    measures: str
    advice: str
    remedies: str
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None


@dataclass(frozen=True)
class ByUserIds:
    """The affected users are known by id (e.g. the rows of a leaked table)."""

    user_ids: Sequence[str]


@dataclass(frozen=True)
class ByActivity:
    """The affected users are those with any of these audit events in the window
    (both ends included), e.g. everyone who signed in while a flaw was live."""

    start: datetime
    end: datetime
    event_types: Sequence[str]


Selection = ByUserIds | ByActivity


@dataclass(frozen=True)
class DeliveryCounts:
    recipients: int
    queued: int  # not sent yet, still to be tried
    retrying: int  # of the queued, those that failed at least once
    sent: int
    failed: int  # abandoned: retries exhausted, or the account is gone


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


class IncidentService:
    def __init__(self, db: DbSession, clock: Clock, audit: AuditTrail) -> None:
        self._db, self._clock, self._audit = db, clock, audit

    def record(
        self,
        text: IncidentText,
        selection: Selection,
        channels: Sequence[str],
        *,
        operator_id: str,
    ) -> Incident:
        """Store the incident and queue one message per affected user and channel."""
        if text.occurred_from and text.occurred_to and text.occurred_from > text.occurred_to:
            raise invalid_field("#/occurred_to", "The incident cannot end before it began.")
        channels = _unique(OutboxChannel(c).value for c in channels)
        recipients, pointer = self._select(selection)
        if not recipients:
            # Most likely a mistyped event type or window: say so rather than
            # record an incident that tells nobody.
            raise invalid_field(pointer, "No account matches this selection; nothing was recorded.")

        now = self._clock.now()
        occurred_from, occurred_to = text.occurred_from, text.occurred_to
        if isinstance(selection, ByActivity) and occurred_from is None and occurred_to is None:
            occurred_from, occurred_to = selection.start, selection.end
        incident = Incident(
            id=new_id(),
            title=text.title,
            facts=text.facts,
            impact=text.impact,
            measures=text.measures,
            advice=text.advice,
            remedies=text.remedies,
            occurred_from=occurred_from,
            occurred_to=occurred_to,
            created_at=now,
            created_by=operator_id,
            notified_at=now,
        )
        self._db.add(incident)
        self._db.flush()
        self._db.execute(
            insert(IncidentRecipient),
            [{"incident_id": incident.id, "user_id": uid} for uid in recipients],
        )
        self._db.execute(
            insert(OutboxMessage),
            [
                {
                    "id": new_id(),
                    "user_id": uid,
                    "channel": channel,
                    "kind": OutboxKind.INCIDENT.value,
                    "reference_id": incident.id,
                    "created_at": now,
                    "attempts": 0,
                    "next_attempt_at": now,
                }
                for uid in recipients
                for channel in channels
            ],
        )
        self._audit.record(
            "incident.recorded",
            actor_id=operator_id,
            incident_id=incident.id,
            recipients=len(recipients),
            channels=channels,
            **self._describe(selection),
        )
        return incident

    def get(self, incident_id: str) -> Incident:
        incident = self._db.get(Incident, incident_id)
        if incident is None:
            raise not_found("The incident")
        return incident

    def counts(self, incident_id: str) -> DeliveryCounts:
        pending = OutboxMessage.sent_at.is_(None) & OutboxMessage.abandoned_at.is_(None)
        row = self._db.execute(
            select(
                func.count(),
                func.sum(case((pending, 1), else_=0)),
                func.sum(case((pending & (OutboxMessage.attempts > 0), 1), else_=0)),
                func.sum(case((OutboxMessage.sent_at.is_not(None), 1), else_=0)),
                func.sum(case((OutboxMessage.abandoned_at.is_not(None), 1), else_=0)),
            ).where(
                OutboxMessage.kind == OutboxKind.INCIDENT,
                OutboxMessage.reference_id == incident_id,
            )
        ).one()
        recipients = self._db.execute(
            select(func.count()).where(IncidentRecipient.incident_id == incident_id)
        ).scalar_one()
        _total, queued, retrying, sent, failed = (int(v or 0) for v in row)
        return DeliveryCounts(int(recipients), queued, retrying, sent, failed)

    def notices_for(self, user_id: str) -> Sequence[Incident]:
        """The incidents this user was told about, newest first."""
        return (
            self._db.execute(
                select(Incident)
                .join(IncidentRecipient, IncidentRecipient.incident_id == Incident.id)
                .where(IncidentRecipient.user_id == user_id)
                .order_by(Incident.created_at.desc(), Incident.id)
            )
            .scalars()
            .all()
        )

    # -- choosing the affected users ------------------------------------------

    def _select(self, selection: Selection) -> tuple[list[str], str]:
        """The affected user ids, and where in the request the selection was made."""
        if isinstance(selection, ByUserIds):
            return self._existing(selection.user_ids), "#/user_ids"
        if selection.start > selection.end:
            raise invalid_field("#/window/to", "The window cannot end before it begins.")
        active = (
            select(AuditEvent.user_id)
            .where(
                AuditEvent.event_type.in_(_unique(selection.event_types)),
                AuditEvent.occurred_at >= selection.start,
                AuditEvent.occurred_at <= selection.end,
                AuditEvent.user_id.is_not(None),
            )
            .distinct()
        )
        # Only accounts that still exist: the trail also names cancelled ones.
        found = self._db.execute(select(User.id).where(User.id.in_(active)).order_by(User.id))
        return list(found.scalars()), "#/window"

    def _existing(self, user_ids: Sequence[str]) -> list[str]:
        wanted = _unique(user_ids)
        found: set[str] = set()
        for chunk in _chunks(wanted):
            found.update(self._db.execute(select(User.id).where(User.id.in_(chunk))).scalars())
        unknown = [(i, uid) for i, uid in enumerate(user_ids) if uid not in found]
        if unknown:
            more = len(unknown) - _NAMED_UNKNOWN
            detail = f"{len(unknown)} of the user ids are not accounts" + (
                f" (the first {_NAMED_UNKNOWN} are pointed at)." if more > 0 else "."
            )
            raise ServiceError(
                "validation-error",
                422,
                "Your request has invalid fields",
                detail,
                errors=[
                    FieldError(f"#/user_ids/{i}", "No account has this id.")
                    for i, _ in unknown[:_NAMED_UNKNOWN]
                ],
            )
        return wanted

    @staticmethod
    def _describe(selection: Selection) -> dict[str, Any]:
        """How recipients were chosen, for the audit trail (ids are not repeated there)."""
        if isinstance(selection, ByUserIds):
            return {"selection": "user_ids"}
        return {
            "selection": "window",
            "window_from": selection.start.isoformat(),
            "window_to": selection.end.isoformat(),
            "event_types": _unique(selection.event_types),
        }


# -- what the user is told ----------------------------------------------------


def _when(incident: Incident) -> str | None:
    def fmt(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M UTC")

    start, end = incident.occurred_from, incident.occurred_to
    if start and end:
        return f"{fmt(start)} to {fmt(end)}"
    if start:
        return f"from {fmt(start)}"
    if end:
        return f"until {fmt(end)}"
    return None


def render_incident_email(incident: Incident) -> tuple[str, str]:
    """(subject, body) of the notice; headings in Chinese and English."""
    parts = [
        "We are writing to tell you about a personal-information security incident "
        "that may affect your privid account.",
        "",
    ]
    when = _when(incident)
    sections = [
        ("事件经过 / What happened", incident.facts + (f"\n\nWhen: {when}" if when else "")),
        ("可能的影响 / What it may mean for you", incident.impact),
        ("我们已采取和将要采取的措施 / What we have done and will do", incident.measures),
        ("您可以采取的措施 / What you can do to protect yourself", incident.advice),
        ("补救措施 / Remedies available to you", incident.remedies),
    ]
    for heading, text in sections:
        parts += [heading, "-" * 40, text, ""]
    parts.append("You can read this notice again at any time in your account (security notices).")
    return f"privid security notice: {incident.title}", "\n".join(parts)


def render_incident_push(incident: Incident) -> tuple[str, str]:
    """(title, text) of the push: short, pointing at the full notice in the account."""
    return (
        "privid security notice",
        f"{incident.title}. Read what happened and what you can do in your account.",
    )


# -- the user's data export -------------------------------------------------------


def _notices_section(ctx: ExportContext) -> list[dict[str, Any]]:
    rows = ctx.db.execute(
        select(Incident)
        .join(IncidentRecipient, IncidentRecipient.incident_id == Incident.id)
        .where(IncidentRecipient.user_id == ctx.user.id)
        .order_by(Incident.created_at)
    ).scalars()
    return [plain(i, leave_out=("created_by",)) for i in rows]


register_section(Section("security_notices", ("incident_recipients",), _notices_section))
