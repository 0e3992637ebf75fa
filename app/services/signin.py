"""The one step every sign-in ends in (password, SMS code, registration, passkey;
WeChat and OAuth authorization later): open the session, note the device it was
opened on, then see what consent the user still owes under the current policy.
A session that owes decisions is limited to the consent step until they arrive."""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import ServiceError
from app.models import Channel, PolicyVersion, Session, User
from app.services.consent import (
    REQUIRED_REFUSED,
    SECURITY_PURPOSE,
    ConsentService,
    DecisionInput,
)
from app.services.context import RequestContext
from app.services.device_details import allowed_by
from app.services.devices import DeviceService
from app.services.policies import PolicyService
from app.services.purposes import Purpose
from app.services.sessions import Acr, IssuedSession, SessionService, Transport


@dataclass(frozen=True)
class SignInResult:
    issued: IssuedSession
    policy: PolicyVersion
    pending: list[Purpose]
    # A policy that took effect since the user last signed in and asks for no
    # new decision: shown once, as a notice.
    notice: PolicyVersion | None = None
    # A browser seen for the first time: the device cookie to set.
    device_cookie: str | None = None

    @property
    def complete(self) -> bool:
        return not self.pending


class SignInCompleter:
    def __init__(
        self,
        sessions: SessionService,
        consent: ConsentService,
        policies: PolicyService,
        devices: DeviceService,
    ) -> None:
        self._sessions, self._consent, self._policies = sessions, consent, policies
        self._devices = devices

    def complete(
        self,
        user: User,
        *,
        transport: Transport,
        amr: list[str],
        acr: Acr,
        context: RequestContext,
    ) -> SignInResult:
        policy = self._policies.require_current()
        previous_sign_in = self._sessions.last_sign_in(user.id)
        # Device model and network address are security data: kept only with consent.
        current = self._consent.current(user.id)
        security_granted = allowed_by(current.get((SECURITY_PURPOSE, None)))
        if not security_granted:
            context = context.without_device_details()
        issued = self._sessions.issue(user, transport=transport, amr=amr, acr=acr, context=context)
        # Devices are recorded only with the security purpose, read once above.
        sighting = self._devices.sight(user, issued.session, context) if security_granted else None
        pending = self._consent.pending(user.id, current)
        issued.session.consent_pending = bool(pending)
        changed_since = previous_sign_in is not None and previous_sign_in < policy.effective_at
        notice = policy if changed_since and not pending else None
        cookie = sighting.new_cookie if sighting else None
        return SignInResult(issued, policy, pending, notice, cookie)

    def decide(
        self,
        session: Session,
        policy_version: str,
        decisions: list[DecisionInput],
        context: RequestContext,
    ) -> list[Purpose]:
        """Record decisions from a session; lift its limit once nothing is owed.
        Refusing a purpose the account cannot exist without ends every session."""
        channel = Channel.LOGIN if session.consent_pending else Channel.API
        try:
            self._consent.decide(
                session.user_id, policy_version, decisions, channel, context, session=session
            )
        except ServiceError as error:
            if error.slug == REQUIRED_REFUSED:
                self._sessions.revoke_all(session.user_id, "required_purpose_refused")
            raise
        pending = self._consent.pending(session.user_id)
        session.consent_pending = bool(pending)
        return pending
