"""Security-incident notices: operators record an incident and its affected
users are told (by email and/or push, through the outbox); users read the
notices addressed to them. Every operator call is audited with who made it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from flask import Blueprint, jsonify, url_for
from flask.typing import ResponseReturnValue

from app.adapters.push import LoggingPushSender
from app.api.operations import Link, operation
from app.api.schemas import (
    DeliveryCountsOut,
    DeliveryReportOut,
    IncidentCreate,
    IncidentOut,
    NoticeList,
    NoticeOut,
)
from app.errors import FieldError, ServiceError, invalid_field
from app.http.access import operator_only, signed_in
from app.http.gate import current_caller
from app.http.scope import runtime, services
from app.models import Incident
from app.services.incidents import ByActivity, ByUserIds, DeliveryCounts, IncidentText, Selection

bp = Blueprint("incidents", __name__, url_prefix="/api/v1")
TAG = "incidents"
# One pass from the API stays short; `privid worker` sends continuously.
API_DELIVERY_BATCH = 100
# Room for the five texts and up to 10 000 user ids.
MAX_INCIDENT_BODY = 1024 * 1024


def _selection(body: IncidentCreate) -> Selection:
    if body.user_ids is not None and body.window is None:
        return ByUserIds(body.user_ids)
    if body.window is not None and body.user_ids is None:
        window = body.window
        return ByActivity(window.from_, window.to, window.event_types)
    detail = "Choose the affected users by exactly one of user_ids or window."
    raise ServiceError(
        "validation-error",
        422,
        "Your request has invalid fields",
        detail,
        errors=[FieldError("#/user_ids", detail), FieldError("#/window", detail)],
    )


def _check_channels(channels: Sequence[str]) -> None:
    rt = runtime()
    # Like the console senders, the logging push stand-in is for development:
    # in production it would count pushes as sent that nobody received.
    stand_in = isinstance(rt.push_sender, LoggingPushSender)
    if "push" in channels and rt.settings.is_production and stand_in:
        raise invalid_field("#/channels", "No push provider is configured; use email.")


def _incident_out(incident: Incident, counts: DeliveryCounts) -> IncidentOut:
    return IncidentOut(
        incident_id=incident.id,
        title=incident.title,
        facts=incident.facts,
        impact=incident.impact,
        measures=incident.measures,
        advice=incident.advice,
        remedies=incident.remedies,
        occurred_from=incident.occurred_from,
        occurred_to=incident.occurred_to,
        created_at=incident.created_at,
        created_by=incident.created_by,
        notified_at=incident.notified_at,
        counts=DeliveryCountsOut(**asdict(counts)),
    )


@bp.post("/admin/incidents")
@operator_only()
@operation(
    "Record a personal-information security incident and queue notices to the affected users",
    tag=TAG,
    body=IncidentCreate,
    responses={201: ("Recorded; notices queued", IncidentOut)},
    links={
        201: {
            "ReadIncident": Link(
                "incidents.get_incident.get", {"incident_id": "$response.body#/incident_id"}
            )
        }
    },
    max_body_bytes=MAX_INCIDENT_BODY,
)
def record_incident(body: IncidentCreate) -> ResponseReturnValue:
    operator = current_caller()
    selection = _selection(body)
    _check_channels(body.channels)
    svc = services().incidents
    incident = svc.record(
        IncidentText(
            title=body.title,
            facts=body.facts,
            impact=body.impact,
            measures=body.measures,
            advice=body.advice,
            remedies=body.remedies,
            occurred_from=body.occurred_from,
            occurred_to=body.occurred_to,
        ),
        selection,
        body.channels,
        operator_id=operator.user.id,
    )
    payload = _incident_out(incident, svc.counts(incident.id))
    response = jsonify(payload.model_dump(mode="json"))
    response.headers["Location"] = url_for(".get_incident", incident_id=incident.id)
    return response, 201


@bp.get("/admin/incidents/<id:incident_id>")
@operator_only()
@operation(
    "An incident, with how its notices are getting on",
    tag=TAG,
    responses={200: ("The incident", IncidentOut)},
)
def get_incident(incident_id: str) -> ResponseReturnValue:
    operator = current_caller()
    svc = services()
    incident = svc.incidents.get(incident_id)
    svc.audit.record("incident.viewed", actor_id=operator.user.id, incident_id=incident.id)
    payload = _incident_out(incident, svc.incidents.counts(incident.id))
    return jsonify(payload.model_dump(mode="json"))


@bp.post("/admin/outbox/deliver")
@operator_only()
@operation(
    "Run one delivery pass over the outbox now (`privid worker` runs them continuously)",
    tag=TAG,
    responses={200: ("What the pass did", DeliveryReportOut)},
)
def deliver_outbox() -> ResponseReturnValue:
    operator = current_caller()
    svc = services()
    report = svc.outbox.deliver_due(API_DELIVERY_BATCH)
    svc.audit.record("outbox.delivered", actor_id=operator.user.id, **asdict(report))
    return jsonify(DeliveryReportOut(**asdict(report)).model_dump(mode="json"))


@bp.get("/me/notices")
@signed_in(consent_step=True)
@operation(
    "Security-incident notices addressed to me, newest first",
    tag=TAG,
    responses={200: ("My notices", NoticeList)},
    # A security notice must reach people even while consent decisions are owed.
)
def my_notices() -> ResponseReturnValue:
    caller = current_caller()
    notices = [
        NoticeOut(
            incident_id=i.id,
            title=i.title,
            facts=i.facts,
            impact=i.impact,
            measures=i.measures,
            advice=i.advice,
            remedies=i.remedies,
            occurred_from=i.occurred_from,
            occurred_to=i.occurred_to,
            notified_at=i.notified_at,
        )
        for i in services().incidents.notices_for(caller.user.id)
    ]
    return jsonify(NoticeList(notices=notices).model_dump(mode="json"))
