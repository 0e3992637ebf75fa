"""The one rule "an account keeps at least one way in": a password, a usable
passkey, or a linked identity (WeChat). The phone is not counted: it is the
account's verified contact and recovery channel, which every account has.

Capabilities that hold ways in (a linked identity) register a counter here
(``Capability.ways_in``, through app/capabilities.py); every removal of a way
in (unlinking, removing the password or a passkey, withdrawing the purpose a
way in rests on) asks ``require_another`` first, in the same unit of work."""

from __future__ import annotations

from collections.abc import Callable, Collection

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.errors import ServiceError
from app.models import User, WebAuthnCredential

PASSWORD = "password"
PASSKEY_PREFIX = "passkey:"

# The ways in a capability holds for an account, each named "kind:id".
WayInCounter = Callable[[DbSession, str], list[str]]
_counters: list[WayInCounter] = []


def register_ways_in(counter: WayInCounter) -> None:
    if counter not in _counters:
        _counters.append(counter)


def last_way_in() -> ServiceError:
    return ServiceError(
        "last-way-in",
        409,
        "This is your last way to sign in",
        "Your account must keep at least one way to sign in (a password, a passkey or "
        "a linked WeChat account). Add another one first.",
    )


def ways_in(db: DbSession, user_id: str) -> list[str]:
    found: list[str] = []
    # Read from the database, not the session's copy of the user: that copy was
    # loaded before the caller took the user row's lock, and a removal that
    # committed meanwhile (the password) would still look present.
    has_password = db.execute(
        select(User.password_hash.is_not(None)).where(User.id == user_id)
    ).scalar()
    if has_password:
        found.append(PASSWORD)
    passkeys = db.execute(
        select(WebAuthnCredential.id).where(
            WebAuthnCredential.user_id == user_id,
            WebAuthnCredential.revoked_at.is_(None),
            WebAuthnCredential.flagged_cloned_at.is_(None),
        )
    ).scalars()
    found.extend(PASSKEY_PREFIX + ref for ref in passkeys)
    for counter in _counters:
        found.extend(counter(db, user_id))
    return found


def require_another(
    db: DbSession, user_id: str, leaving: Collection[str] | Callable[[str], bool]
) -> None:
    """Refuse (``last-way-in``) unless a way in is left once ``leaving`` (names,
    or a test on names) is gone. Callers hold the user row's lock, or the
    removal lock, so two removals at once cannot each see the other's way."""
    goes: Callable[[str], bool] = leaving if callable(leaving) else leaving.__contains__
    if not any(not goes(way) for way in ways_in(db, user_id)):
        raise last_way_in()


def kind_of(prefix: str) -> Callable[[str], bool]:
    """Every way in of one kind ("passkey:", "wechat:")."""
    return lambda way: way.startswith(prefix)
