"""A person's privacy acts that several services answer together, as the JSON
API and the privacy centre both take them: each is also recorded as a
rights request, answered at once where it can be."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.errors import ServiceError
from app.models import ConsentRecord, DataSubjectRequest, RequestKind, Session, User
from app.services.container import Services
from app.services.context import RequestContext


def withdraw_consent(
    svc: Services, session: Session, purpose: str, context: RequestContext
) -> list[ConsentRecord]:
    """Taking away a passkey or a device binding this way needs what removing
    it directly needs; the consent service checks the session and tells the owner."""
    records = svc.consent.withdraw(session.user_id, purpose, context, session=session)
    svc.rights.answered_at_once(
        session.user_id,
        RequestKind.CONSENT_WITHDRAWAL,
        "Consent withdrawn; what depended on it has stopped.",
        {"purpose": records[0].purpose},
    )
    return records


def export_document(svc: Services, user: User) -> dict[str, Any]:
    """Everything held about ``user``; an unreasonably repetitive export is
    refused, and the refusal stays on record."""
    refused = svc.rights.refuse_if_repetitive_export(user.id)
    if refused is not None:
        error = ServiceError(
            "request-refused",
            429,
            "Request refused",
            refused.refusal_reason or "",
            keep_changes=True,
        )
        error.headers["Retry-After"] = str(24 * 3600)
        raise error
    document = svc.export.export(user)
    svc.rights.answered_at_once(user.id, RequestKind.ACCESS_EXPORT, "Export delivered.")
    return document


def receive_request(
    svc: Services, user_id: str, kind: RequestKind, categories: Sequence[str]
) -> DataSubjectRequest:
    """Deleting ended sessions is done at once; anything else waits for an operator."""
    details = {"categories": sorted(set(categories))}
    if kind == RequestKind.DELETION and list(categories) == ["ended_sessions"]:
        deleted = svc.sessions.delete_ended(user_id)
        return svc.rights.answered_at_once(
            user_id, kind, f"Deleted {deleted} ended session(s).", details
        )
    return svc.rights.open_request(user_id, kind, details)
