"""The operators' API. Every call needs the operator role and a recent sign-in,
and every action is audited with who did it."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from app.api.context import require_operator, services
from app.api.operations import operation
from app.api.render import policy_out
from app.api.schemas import PolicyOut, PolicyPublish
from app.services.policies import NewPolicy

bp = Blueprint("admin", __name__, url_prefix="/api/v1/admin")
TAG = "admin"


@bp.post("/policies")
@operation(
    "Publish a new privacy policy version",
    tag=TAG,
    body=PolicyPublish,
    responses={201: ("Published", PolicyOut)},
    auth=True,
    max_body_bytes=2 * 1024 * 1024,
)
def publish_policy(body: PolicyPublish) -> ResponseReturnValue:
    operator = require_operator()
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
