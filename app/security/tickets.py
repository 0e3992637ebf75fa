"""Short-lived signed tickets between two steps of one sign-in (password, then
the second factor). The second step still needs its own proof, so a stolen
ticket alone signs nobody in. Each ticket has a random ``jti`` so that the
service can spend it once (app/services/sign_in_tickets.py)."""

from __future__ import annotations

import secrets
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

from app.clock import Clock


class TicketInvalid(Exception):
    pass


class Tickets:
    def __init__(self, key: bytes, purpose: str, max_age_seconds: int, clock: Clock) -> None:
        self._serializer = URLSafeSerializer(key, salt=f"privid:{purpose}")
        self.max_age_seconds = max_age_seconds
        self._clock = clock  # expiry is the service's clock, so tests can pin it

    def issue(self, claims: dict[str, Any]) -> str:
        expires = self._clock.now().timestamp() + self.max_age_seconds
        jti = secrets.token_urlsafe(18)
        return str(self._serializer.dumps({**claims, "jti": jti, "exp": expires}))

    def open(self, ticket: str) -> dict[str, Any]:
        try:
            claims = self._serializer.loads(ticket)
        except BadData:
            raise TicketInvalid from None
        if not isinstance(claims, dict) or claims.get("exp", 0) < self._clock.now().timestamp():
            raise TicketInvalid
        if not isinstance(claims.get("jti"), str):
            raise TicketInvalid
        return claims
