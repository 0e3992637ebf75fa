"""What taking away one of the account's sign-in protections needs.

A protection is a passkey, a device bound to the account, the second factor
(TOTP) or its recovery codes. Removing one weakens the account however it
happens: deleting the passkey, revoking the device, turning TOTP off, replacing
the recovery codes, or withdrawing (or refusing) the consent it rests on. Each
kind is declared here once, with the age of proof its removal needs; every path
that removes one asks ``Safeguards.require`` first and ``Safeguards.tell_owner``
after, so no side door needs less than the front door.

Removals of one account also queue on one lock, the account's ``users`` row
(``Safeguards.hold``), taken before anything else they lock: the consent
chain head, device and passkey rows. Concurrent removals then never deadlock,
never act on a row another one has just changed, and each protection is
removed, and reported to the owner, once."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.errors import ServiceError
from app.models import Session, User
from app.services.freshness import Freshness
from app.services.notifications import Notifier
from app.services.sessions import Acr, acr_at_least
from app.services.totp import TotpService
from app.services.vault import PersonalDataVault
from app.settings import Settings


@dataclass(frozen=True)
class Protection:
    """A kind of sign-in protection. Removing one needs a sign-in as recent as
    its ``freshness`` allows, at the account's level (both factors once it has
    TOTP), and the owner is emailed."""

    code: str
    freshness: Freshness
    # How the owner's email names it.
    described: str


PASSKEYS = Protection("passkeys", Freshness.PASSKEY_REMOVAL, "passkeys")
DEVICE_BINDINGS = Protection("device_bindings", Freshness.DEVICE_MANAGEMENT, "bound devices")
SECOND_FACTOR = Protection(
    "second_factor",
    Freshness.SECOND_FACTOR,
    "the authenticator app (TOTP) and its recovery codes",
)
# New codes void the old ones: as fresh a proof as removing the factor.
RECOVERY_CODES = Protection(
    "recovery_codes", SECOND_FACTOR.freshness, "your earlier recovery codes"
)


def insufficient_authentication(level: Acr, max_age: int, *, dpop_bound: bool) -> ServiceError:
    """RFC 9470 section 3: the challenge says which level and age would do."""
    return ServiceError(
        "insufficient-user-authentication",
        401,
        "Confirm it is you",
        f"This needs authentication at {level.value} within the last "
        f"{max(1, max_age // 60)} minutes: step up at /api/v1/me/step-up.",
        headers={
            "WWW-Authenticate": (
                f"{'DPoP' if dpop_bound else 'Bearer'} "
                'error="insufficient_user_authentication", '
                'error_description="A more recent or stronger authentication is required", '
                f'acr_values="{level.value}", max_age={max_age}'
            )
        },
    )


def authenticated_within(session: Session, level: Acr, max_age: int, now: datetime) -> bool:
    fresh = (now - session.auth_time).total_seconds() <= max_age
    return fresh and acr_at_least(session.acr, level)


def require_authentication(session: Session, level: Acr, max_age: int, now: datetime) -> None:
    if not authenticated_within(session, level, max_age, now):
        raise insufficient_authentication(level, max_age, dpop_bound=session.dpop_jkt is not None)


class Safeguards:
    def __init__(
        self,
        db: DbSession,
        clock: Clock,
        totp: TotpService,
        vault: PersonalDataVault,
        notifier: Notifier,
        settings: Settings,
    ) -> None:
        self._db, self._clock, self._totp = db, clock, totp
        self._settings = settings
        self._vault, self._notifier = vault, notifier

    def hold(self, user_id: str) -> None:
        """Lock the account against other removals until the transaction ends.
        Every removal path calls this before it reads what it will remove or
        locks anything else; taking it again in the same transaction is free.
        (SQLite's BEGIN IMMEDIATE already serialises every writer.)"""
        self._db.execute(select(User.id).where(User.id == user_id).with_for_update()).first()

    def account_level(self, user_id: str) -> Acr:
        """Changing what protects an account needs every factor it has."""
        return Acr.MULTI_FACTOR if self._totp.is_enabled(user_id) else Acr.SINGLE_FACTOR

    def require(self, session: Session | None, protections: Collection[Protection]) -> None:
        """Refuse (RFC 9470 challenge) unless ``session`` signed in recently
        enough to remove all of ``protections``: the strictest age wins. Without
        a session nothing can be removed. Holds the account's lock (``hold``)."""
        if not protections:
            return
        max_age = min(p.freshness.seconds(self._settings) for p in protections)
        if session is None:
            raise insufficient_authentication(Acr.MULTI_FACTOR, max_age, dpop_bound=False)
        self.hold(session.user_id)
        level = self.account_level(session.user_id)
        require_authentication(session, level, max_age, self._clock.now())

    def tell_owner(self, user: User, protections: Collection[Protection], how: str) -> None:
        """One email per act, naming what was removed and how."""
        if not protections:
            return
        described = sorted({p.described for p in protections})
        self._notifier.sign_in_protection_removed(
            self._vault.profile(user), described, how, self._clock.now(), user_id=user.id
        )
