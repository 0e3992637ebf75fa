"""The user's privacy rights: export, rectification, deletion, cancellation,
and the record of every request with its due date."""

from __future__ import annotations

from flask import Blueprint, jsonify, make_response
from flask.typing import ResponseReturnValue

from app.api.operations import Link, operation
from app.api.schemas import (
    CancellationIn,
    Cancelled,
    NameChange,
    RequestIn,
    RequestList,
    RequestOut,
)
from app.extensions import limiter
from app.http.access import CANCELLATION, CREDENTIAL_CHANGE, EXPORT, signed_in
from app.http.cookies import clear_session_cookie
from app.http.gate import current_caller
from app.http.limits import caller_key, setting
from app.http.scope import services
from app.models import DataSubjectRequest, RequestKind
from app.services.privacy_acts import export_document, receive_request

bp = Blueprint("rights", __name__, url_prefix="/api/v1/me")
TAG = "privacy rights"


def answer_request_links(request_id: str) -> dict[str, Link]:
    """What an operator does with a request (app/api/admin.py)."""
    return {
        "CompleteRequest": Link("admin.complete_request.post", {"request_id": request_id}),
        "RefuseRequest": Link("admin.refuse_request.post", {"request_id": request_id}),
    }


def request_out(request: DataSubjectRequest) -> RequestOut:
    rights = services().rights
    return RequestOut(
        request_id=request.id,
        kind=request.kind,
        status=request.status,
        received_at=request.received_at,
        due_at=request.due_at,
        completed_at=request.completed_at,
        outcome=request.outcome,
        refusal_reason=request.refusal_reason,
        details=request.details,
        overdue=rights.is_overdue(request),
        working_days_overdue=rights.working_days_overdue(request),
    )


@bp.post("/export")
@signed_in(step_up=EXPORT)
@operation(
    "Everything the service holds about me, decrypted, as one JSON document",
    tag=TAG,
    responses={200: ("The export", None)},
)
def export() -> ResponseReturnValue:
    # Everything about a person in one file: only for a recent sign-in.
    response = jsonify(export_document(services(), current_caller().user))
    response.headers["Content-Disposition"] = 'attachment; filename="privid-export.json"'
    return response


@bp.post("/name")
@signed_in(step_up=CREDENTIAL_CHANGE)
@operation(
    "Correct my full name (needs my password, if I have one)",
    tag=TAG,
    body=NameChange,
    responses={200: ("Corrected", RequestOut)},
)
def change_name(body: NameChange) -> ResponseReturnValue:
    caller = current_caller()
    svc = services()
    request = svc.account.change_full_name(caller.user, body.full_name, body.current_password)
    return jsonify(request_out(request).model_dump(mode="json"))


@bp.post("/requests")
@signed_in(consent_step=True)
@limiter.limit(setting("limit_requests_per_account"), key_func=caller_key)
@operation(
    "Ask for something the service cannot do on the spot; an operator answers by the due date",
    tag=TAG,
    body=RequestIn,
    responses={
        201: ("Received", RequestOut),
        409: ("The same request is already open", None),
        429: ("Too many requests from this account", None),
    },
    links={201: answer_request_links("$response.body#/request_id")},
)
def make_request(body: RequestIn) -> ResponseReturnValue:
    caller = current_caller()
    request = receive_request(services(), caller.user.id, RequestKind(body.kind), body.categories)
    return jsonify(request_out(request).model_dump(mode="json")), 201


@bp.get("/requests")
@signed_in(consent_step=True)
@operation(
    "My requests and their due dates",
    tag=TAG,
    responses={200: ("Newest first", RequestList)},
    links={200: answer_request_links("$response.body#/requests/0/request_id")},
)
def my_requests() -> ResponseReturnValue:
    caller = current_caller()
    items = [request_out(r) for r in services().rights.for_user(caller.user.id)]
    return jsonify(RequestList(requests=items).model_dump(mode="json"))


@bp.post("/cancellation")
@signed_in(consent_step=True, step_up=CANCELLATION)
@operation(
    "Cancel my account: needs a sign-in within the last few minutes",
    tag=TAG,
    body=CancellationIn,
    responses={200: ("Cancelled", Cancelled)},
    # Someone who refuses what the account needs can still end the account.
)
def cancel(body: CancellationIn) -> ResponseReturnValue:
    caller = current_caller()
    archive = services().cancellation.cancel(caller.user)
    response = make_response(
        jsonify(
            Cancelled(legal_archive_retained_until=archive.retain_until).model_dump(mode="json")
        )
    )
    clear_session_cookie(response)
    return response
