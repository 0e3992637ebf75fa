"""The ticket between the first and the second step of a sign-in.

A ticket is signed and short-lived (app/security/tickets.py). Here it also
becomes single use (its id is written to ``spent_tickets`` when it finishes a
sign-in; the primary key settles two finishes at once) and void once the
account's credentials change (it carries their digest, compared under the
user row's lock)."""

from __future__ import annotations

import hmac
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.errors import ServiceError
from app.models import SpentTicket, User
from app.security.tickets import TicketInvalid, Tickets
from app.services.credentials import CredentialState


def ticket_invalid() -> ServiceError:
    return ServiceError(
        "mfa-ticket-invalid",
        401,
        "Sign in again",
        "The sign-in step has expired or is not valid. Start again.",
    )


class SignInTickets:
    def __init__(
        self, db: DbSession, clock: Clock, tickets: Tickets, credentials: CredentialState
    ) -> None:
        self._db, self._clock, self._tickets = db, clock, tickets
        self._credentials = credentials

    @property
    def max_age_seconds(self) -> int:
        return self._tickets.max_age_seconds

    def issue(self, user: User, claims: dict[str, Any]) -> str:
        return self._tickets.issue({**claims, "uid": user.id, "cs": self._credentials.digest(user)})

    def open(self, ticket: str) -> tuple[User, dict[str, Any]]:
        """The user (row locked) and the claims of a live, unspent ticket whose
        account has not changed since; otherwise ``mfa-ticket-invalid``."""
        try:
            claims = self._tickets.open(ticket)
        except TicketInvalid:
            raise ticket_invalid() from None
        user = self._credentials.lock(str(claims.get("uid")))
        if user is None or not user.is_active:
            raise ticket_invalid()
        if not hmac.compare_digest(str(claims.get("cs", "")), self._credentials.digest(user)):
            raise ticket_invalid()
        spent = self._db.execute(
            select(SpentTicket.jti).where(SpentTicket.jti == str(claims.get("jti")))
        ).first()
        if spent is not None:
            raise ticket_invalid()
        return user, claims

    def spend(self, claims: dict[str, Any]) -> None:
        """Marks the ticket used; a second finish racing this one loses here."""
        # No ticket outlives its maximum age from now; retention drops the row then.
        expires = self._clock.now() + timedelta(seconds=self._tickets.max_age_seconds)
        try:
            with self._db.begin_nested():
                self._db.add(SpentTicket(jti=str(claims["jti"]), expires_at=expires))
                self._db.flush()
        except IntegrityError:
            raise ticket_invalid() from None
