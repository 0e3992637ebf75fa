"""The operators' API. Every call needs the operator role and a recent sign-in,
and every action is audited with who did it."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from app.api.operations import operation
from app.api.render import policy_out
from app.api.rights import answer_request_links, request_out
from app.api.schemas import (
    OperatorOutcome,
    OperatorRefusal,
    PolicyOut,
    PolicyPublish,
    RequestList,
    RequestOut,
)
from app.errors import invalid_field
from app.http.access import operator_only
from app.http.gate import current_caller
from app.http.scope import services
from app.models import RequestStatus
from app.services.policies import NewPolicy

bp = Blueprint("admin", __name__, url_prefix="/api/v1/admin")
TAG = "admin"


@bp.post("/policies")
@operator_only()
@operation(
    "Publish a new privacy policy version",
    tag=TAG,
    body=PolicyPublish,
    responses={201: ("Published", PolicyOut)},
    max_body_bytes=2 * 1024 * 1024,
)
def publish_policy(body: PolicyPublish) -> ResponseReturnValue:
    operator = current_caller()
    svc = services().policies
    published = svc.publish(
        NewPolicy(
            version=body.version,
            effective_at=body.effective_at,
            text=body.text,
            material=body.material,
            changes=body.changes,
            affected_purposes=body.affected_purposes,
        ),
        published_by=operator.user.id,
    )
    current = svc.current()
    payload = policy_out(published, current.version if current else None)
    return jsonify(payload.model_dump(mode="json")), 201


@bp.get("/requests")
@operator_only()
@operation(
    "The queue of data-subject requests, soonest due first, overdue ones flagged",
    tag=TAG,
    responses={200: ("Open requests", RequestList)},
    links={200: answer_request_links("$response.body#/requests/0/request_id")},
)
def request_queue() -> ResponseReturnValue:
    svc = services()
    status = request.args.get("status", RequestStatus.OPEN.value)
    if status not in {s.value for s in RequestStatus} | {"all"}:
        raise invalid_field("#/status", "Use open, completed, refused or all.")
    rows = svc.rights.queue(None if status == "all" else RequestStatus(status))
    body = RequestList(requests=[request_out(r) for r in rows])
    return jsonify(body.model_dump(mode="json"))


@bp.post("/requests/<id:request_id>/complete")
@operator_only()
@operation(
    "Mark a request answered, saying what was done",
    tag=TAG,
    body=OperatorOutcome,
    responses={200: ("Answered", RequestOut)},
)
def complete_request(request_id: str, body: OperatorOutcome) -> ResponseReturnValue:
    operator = current_caller()
    rights = services().rights
    answered = rights.complete(rights.get(request_id), body.outcome, operator.user.id)
    return jsonify(request_out(answered).model_dump(mode="json"))


@bp.post("/requests/<id:request_id>/refuse")
@operator_only()
@operation(
    "Refuse a request, with the reason the user will see (PIPL Art. 50)",
    tag=TAG,
    body=OperatorRefusal,
    responses={200: ("Refused", RequestOut)},
)
def refuse_request(request_id: str, body: OperatorRefusal) -> ResponseReturnValue:
    operator = current_caller()
    rights = services().rights
    refused = rights.refuse(rights.get(request_id), body.reason, operator.user.id)
    return jsonify(request_out(refused).model_dump(mode="json"))
