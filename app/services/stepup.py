"""Step-up (RFC 9470): prove it is you again, now, to raise a session's level."""

from __future__ import annotations

from app.errors import invalid_field
from app.models import Session, User
from app.services.account import AccountService
from app.services.sessions import Acr, IssuedSession, SessionService
from app.services.throttle import AccountThrottle, signed_in
from app.services.totp import TotpService


class StepUpService:
    def __init__(
        self,
        account: AccountService,
        totp: TotpService,
        sessions: SessionService,
        throttle: AccountThrottle,
    ) -> None:
        self._account, self._totp, self._sessions = account, totp, sessions
        self._throttle = throttle

    def with_password(
        self, session: Session, user: User, password: str, totp_code: str | None
    ) -> IssuedSession:
        """Password alone gives single-factor; with TOTP enabled its code is
        required too, and the session becomes multi-factor."""
        self._account.require_password(user, password)
        if not self._totp.is_enabled(user.id):
            return self._sessions.step_up(session, acr=Acr.SINGLE_FACTOR, amr=["pwd"])
        if totp_code is None:
            raise invalid_field("#/totp_code", "Your account uses TOTP: enter its code too.")
        # TOTP guesses count on their own budget, as at sign-in.
        source = signed_in(session.id)
        self._throttle.reserve_second_factor(user.id, source)
        self._totp.verify(user.id, totp_code)
        self._throttle.second_factor_proven(user.id, source)
        return self._sessions.step_up(session, acr=Acr.MULTI_FACTOR, amr=["pwd", "otp", "mfa"])
