"""Data-subject requests: recorded with a due date three working days out,
answered at once when the service can, queued for an operator otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.errors import ServiceError, invalid_field, not_found
from app.models import DataSubjectRequest, RequestKind, RequestStatus, User
from app.services.audit import AuditTrail
from app.services.working_days import WorkingCalendar


class RightsService:
    def __init__(
        self,
        db: DbSession,
        clock: Clock,
        calendar: WorkingCalendar,
        audit: AuditTrail,
        *,
        working_days: int,
        max_exports_per_day: int,
    ) -> None:
        self._db, self._clock, self._calendar, self._audit = db, clock, calendar, audit
        self._working_days = working_days
        self._max_exports_per_day = max_exports_per_day

    def receive(
        self, user_id: str, kind: RequestKind, details: dict[str, Any] | None = None
    ) -> DataSubjectRequest:
        now = self._clock.now()
        request = DataSubjectRequest(
            user_id=user_id,
            kind=kind,
            status=RequestStatus.OPEN,
            received_at=now,
            due_at=self._calendar.add_working_days(now, self._working_days),
            details=details or {},
        )
        self._db.add(request)
        self._db.flush()
        self._audit.record(
            "request.received", user_id=user_id, request_id=request.id, kind=kind.value
        )
        return request

    def open_request(
        self, user_id: str, kind: RequestKind, details: dict[str, Any]
    ) -> DataSubjectRequest:
        """A request for an operator; the same request while one is open is a duplicate."""
        self._serialise_requests_of(user_id)
        for request in self._db.execute(
            select(DataSubjectRequest).where(
                DataSubjectRequest.user_id == user_id,
                DataSubjectRequest.kind == kind,
                DataSubjectRequest.status == RequestStatus.OPEN,
            )
        ).scalars():
            if request.details == details:
                raise ServiceError(
                    "request-duplicate",
                    409,
                    "Already asked",
                    f"The same request ({request.id}) is open and will be answered by "
                    f"{request.due_at.isoformat()}.",
                )
        return self.receive(user_id, kind, details)

    def answered_at_once(
        self, user_id: str, kind: RequestKind, outcome: str, details: dict[str, Any] | None = None
    ) -> DataSubjectRequest:
        """A request the service fulfils on the spot, recorded like any other."""
        return self.complete(self.receive(user_id, kind, details), outcome)

    def complete(
        self, request: DataSubjectRequest, outcome: str, handled_by: str | None = None
    ) -> DataSubjectRequest:
        self._close(request, RequestStatus.COMPLETED, handled_by)
        request.outcome = outcome
        return request

    def refuse(
        self, request: DataSubjectRequest, reason: str, handled_by: str | None = None
    ) -> DataSubjectRequest:
        """PIPL Art. 50: a refusal always carries its reason."""
        if not reason.strip():
            raise invalid_field("#/reason", "A refusal must say why.")
        self._close(request, RequestStatus.REFUSED, handled_by)
        request.refusal_reason = reason
        return request

    def _close(
        self, request: DataSubjectRequest, status: RequestStatus, handled_by: str | None
    ) -> None:
        # Lock the row and read its status afresh: of two operators (or two
        # clicks) answering at once, the second waits and then sees the answer.
        self._db.refresh(request, with_for_update=True)
        if request.status != RequestStatus.OPEN:
            raise ServiceError(
                "request-closed", 409, "Already answered", "This request was already answered."
            )
        request.status = status
        request.completed_at = self._clock.now()
        request.handled_by = handled_by
        self._db.flush()
        self._audit.record(
            f"request.{status.value}",
            user_id=request.user_id,
            actor_id=handled_by,
            request_id=request.id,
            kind=request.kind,
        )

    def refuse_if_repetitive_export(self, user_id: str) -> DataSubjectRequest | None:
        """More exports in a day than the setting allows are refused, with that reason.

        The count holds until the export is recorded and committed, so
        concurrent exports cannot all see room under the cap."""
        self._serialise_requests_of(user_id)
        since = self._clock.now() - timedelta(days=1)
        done = self._db.execute(
            select(func.count())
            .select_from(DataSubjectRequest)
            .where(
                DataSubjectRequest.user_id == user_id,
                DataSubjectRequest.kind == RequestKind.ACCESS_EXPORT,
                DataSubjectRequest.status == RequestStatus.COMPLETED,
                DataSubjectRequest.received_at > since,
            )
        ).scalar_one()
        if done < self._max_exports_per_day:
            return None
        request = self.receive(user_id, RequestKind.ACCESS_EXPORT)
        return self.refuse(
            request,
            f"Unreasonably repetitive: more than {self._max_exports_per_day} exports in a day. "
            "Try again tomorrow.",
        )

    def _serialise_requests_of(self, user_id: str) -> None:
        """Checks that count or compare a user's requests run one at a time per
        user: the user's row is locked until the transaction ends (SQLite's
        BEGIN IMMEDIATE already serialises every writer)."""
        self._db.execute(select(User.id).where(User.id == user_id).with_for_update())

    def for_user(self, user_id: str) -> Sequence[DataSubjectRequest]:
        return (
            self._db.execute(
                select(DataSubjectRequest)
                .where(DataSubjectRequest.user_id == user_id)
                .order_by(DataSubjectRequest.received_at.desc())
            )
            .scalars()
            .all()
        )

    def queue(
        self, status: RequestStatus | None = RequestStatus.OPEN
    ) -> Sequence[DataSubjectRequest]:
        statement = select(DataSubjectRequest).order_by(DataSubjectRequest.due_at)
        if status is not None:
            statement = statement.where(DataSubjectRequest.status == status)
        return self._db.execute(statement).scalars().all()

    def get(self, request_id: str) -> DataSubjectRequest:
        request = self._db.get(DataSubjectRequest, request_id)
        if request is None:
            raise not_found("The request")
        return request

    def is_overdue(self, request: DataSubjectRequest) -> bool:
        return bool(request.overdue_at(self._clock.now()))

    def working_days_overdue(self, request: DataSubjectRequest) -> int:
        if not self.is_overdue(request):
            return 0
        return self._calendar.working_days_between(request.due_at, self._clock.now())


def overdue_count(db: DbSession, now: datetime) -> int:
    """Open requests past their due date, for the metrics scrape."""
    return int(
        db.execute(select(func.count()).where(DataSubjectRequest.overdue_at(now))).scalar_one()
    )
