"""Turning the second factor off and replacing its recovery codes: both take
a protection away (app/services/safeguards.py), so both need the recent
sign-in that declares, hold the account's removal lock, and tell the owner.

Kept apart from TotpService because Safeguards reads TotpService (the
account's level depends on whether TOTP is on)."""

from __future__ import annotations

from app.models import Session, User
from app.services.safeguards import RECOVERY_CODES, SECOND_FACTOR, Safeguards
from app.services.totp import TotpService


class SecondFactorChanges:
    def __init__(self, totp: TotpService, safeguards: Safeguards) -> None:
        self._totp, self._safeguards = totp, safeguards

    def turn_totp_off(self, session: Session, user: User) -> None:
        self._safeguards.hold(user.id)
        self._safeguards.require(session, [SECOND_FACTOR])
        if self._totp.disable(user.id):
            self._safeguards.tell_owner(user, [SECOND_FACTOR], "TOTP was turned off")

    def replace_recovery_codes(self, session: Session, user: User) -> list[str]:
        self._safeguards.hold(user.id)
        self._safeguards.require(session, [RECOVERY_CODES])
        codes = self._totp.regenerate_recovery_codes(user.id)
        self._safeguards.tell_owner(user, [RECOVERY_CODES], "new recovery codes were made")
        return codes
