"""Turning domain objects into response bodies, in one place."""

from __future__ import annotations

from typing import Any

from flask import jsonify, url_for
from flask.typing import ResponseReturnValue

from app.api.schemas import (
    ConsentRecordOut,
    ConsentStep,
    PolicyNotice,
    PolicyOut,
    PurposeOut,
    SecondFactorNeeded,
    SignedIn,
    Texts,
)
from app.http.cookies import attach_device_cookie, attach_session_cookie
from app.http.gate import session_csrf_token
from app.models import ConsentRecord, PolicyVersion
from app.services.login import SecondFactorRequired
from app.services.purposes import Purpose
from app.services.sessions import IssuedSession, Transport
from app.services.signin import SignInResult


def session_payload(issued: IssuedSession) -> dict[str, Any]:
    session = issued.session
    bearer = session.transport == Transport.BEARER
    return {
        "session_id": session.id,
        "token": issued.token if bearer else None,
        "csrf_token": None if bearer else session_csrf_token(session.id),
        "token_type": (None if not bearer else "DPoP" if session.dpop_jkt else "Bearer"),
        "expires_at": session.expires_at,
        "acr": session.acr,
        "amr": session.amr,
    }


def purpose_out(purpose: Purpose) -> PurposeOut:
    return PurposeOut(
        code=purpose.code,
        title=Texts(zh_cn=purpose.title.zh_cn, en=purpose.title.en),
        description=Texts(zh_cn=purpose.description.zh_cn, en=purpose.description.en),
        legal_basis=purpose.legal_basis.value,
        required=purpose.required,
        sensitive=purpose.sensitive,
        separate_consent=purpose.needs_separate_action,
        per_client=purpose.per_client,
        withdrawable=purpose.withdrawable,
        data_categories=purpose.data_categories,
        retention=purpose.retention,
        recipients=purpose.recipients,
        cross_border=purpose.cross_border,
        depends_on_it=purpose.depends_on_it,
    )


def policy_url(version: str) -> str:
    return url_for("consent.policy", version=version)


def policy_out(policy: PolicyVersion, current_version: str | None) -> PolicyOut:
    return PolicyOut(
        version=policy.version,
        effective_at=policy.effective_at,
        published_at=policy.published_at,
        material=policy.material,
        changes=policy.changes,
        affected_purposes=policy.affected_purposes,
        text_sha256=policy.text_sha256,
        current=policy.version == current_version,
        url=policy_url(policy.version),
    )


def record_out(record: ConsentRecord) -> ConsentRecordOut:
    return ConsentRecordOut(
        record_id=record.id,
        purpose=record.purpose,
        decision=record.decision,
        policy_version=record.policy_version,
        policy_sha256=record.policy_sha256,
        channel=record.channel,
        client_id=record.client_id,
        occurred_at=record.occurred_at,
        ip_prefix=record.ip_prefix,
        user_agent_hash=record.user_agent_hash,
        prev_hash=record.prev_hash,
        hash=record.hash,
    )


def consent_step(result: SignInResult) -> ConsentStep | None:
    if result.complete:
        return None
    return ConsentStep(
        policy_version=result.policy.version,
        policy_url=policy_url(result.policy.version),
        purposes=[purpose_out(p) for p in result.pending],
    )


def signed_in_payload(result: SignInResult) -> dict[str, Any]:
    body = SignedIn.model_validate(
        {
            **session_payload(result.issued),
            "status": "authenticated" if result.complete else "consent_required",
            "consent_required": consent_step(result),
            "policy_notice": (
                PolicyNotice(
                    version=result.notice.version,
                    changes=result.notice.changes,
                    url=policy_url(result.notice.version),
                )
                if result.notice
                else None
            ),
        }
    )
    return body.model_dump(mode="json", by_alias=True)


def signed_in_response(result: SignInResult | SecondFactorRequired) -> ResponseReturnValue:
    """A full or consent-limited session, or 202 when a second factor is due."""
    if isinstance(result, SecondFactorRequired):
        body = SecondFactorNeeded(
            ticket=result.ticket, methods=result.methods, expires_in=result.expires_in
        )
        return jsonify(body.model_dump()), 202
    response = jsonify(signed_in_payload(result))
    attach_session_cookie(response, result.issued)
    attach_device_cookie(response, result.device_cookie)
    return response
