"""Server-side sessions: issue, resolve, list, revoke.

Every way a session ends goes through ``_ended``, which tells the listeners
the container wires in (``on_ended``: other capabilities' follow-ups, such as
OIDC back-channel logout) in the same transaction: a rolled-back sign-out
tells nobody."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, bindparam, delete, func, select, update
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.db import affected_rows
from app.errors import not_found
from app.models import Session, User, UserDataKey
from app.security.tokens import hash_token, new_token
from app.services.audit import AuditTrail
from app.services.context import UNKNOWN_DEVICE, WITHHELD, RequestContext
from app.services.policies import material_change_after

# Writing last_seen on every request would turn every read into a write.
LAST_SEEN_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class LiveSession:
    """A live session and what a request is likely to need with it, read in
    one query: its user, the user's data key row (kept here because the
    ORM's identity map holds rows weakly; while this object lives, the vault
    finds the key in the unit of work without asking the database again) and
    whether a material policy version took effect since the session began."""

    session: Session
    user: User
    data_key: UserDataKey | None
    policy_changed: bool


class Transport(StrEnum):
    COOKIE = "cookie"
    BEARER = "bearer"


class Acr(StrEnum):
    """Authentication context classes, lowest first."""

    SINGLE_FACTOR = "urn:privid:acr:single-factor"
    MULTI_FACTOR = "urn:privid:acr:multi-factor"
    PHISHING_RESISTANT = "urn:privid:acr:phishing-resistant"


ACR_ORDER = [Acr.SINGLE_FACTOR, Acr.MULTI_FACTOR, Acr.PHISHING_RESISTANT]


def acr_at_least(actual: str, required: Acr) -> bool:
    return ACR_ORDER.index(Acr(actual)) >= ACR_ORDER.index(required)


@dataclass(frozen=True)
class SessionRules:
    idle_timeout_seconds: int
    absolute_timeout_seconds: int


@dataclass(frozen=True)
class IssuedSession:
    session: Session
    token: str


def erase_device_details(db: DbSession, user_id: str) -> None:
    """Withdrawal effect of the security purpose: sessions forget the device
    model and network address they recorded."""
    db.execute(
        update(Session)
        .where(Session.user_id == user_id)
        .values(ip_prefix=WITHHELD, device_summary=UNKNOWN_DEVICE)
    )


# Told the ids of sessions that have just ended.
SessionsEnded = Callable[[Sequence[str]], None]


# Every authenticated request runs this; built once, with its values bound per
# call, it costs no statement construction or cache-key walk per request.
_LIVE_SESSION = (
    select(
        Session,
        User,
        UserDataKey,
        material_change_after(Session.created_at, bindparam("now", type_=Session.created_at.type)),
    )
    .join(User, User.id == Session.user_id)
    .outerjoin(UserDataKey, UserDataKey.user_id == User.id)
    .where(Session.token_hash == bindparam("token_hash"))
)


class SessionService:
    def __init__(
        self,
        db: DbSession,
        clock: Clock,
        rules: SessionRules,
        audit: AuditTrail,
        on_ended: SessionsEnded | None = None,
    ) -> None:
        self._db, self._clock, self._rules, self._audit = db, clock, rules, audit
        self._on_ended = on_ended

    def issue(
        self,
        user: User,
        *,
        transport: Transport,
        amr: list[str],
        acr: Acr,
        context: RequestContext,
    ) -> IssuedSession:
        """A new session with a new token: tokens are never reused across sign-ins."""
        now = self._clock.now()
        token = new_token()
        session = Session(
            user_id=user.id,
            token_hash=hash_token(token),
            transport=transport,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=self._rules.absolute_timeout_seconds),
            auth_time=now,
            acr=acr,
            amr=amr,
            ip_prefix=context.ip_prefix,
            device_summary=context.device_summary[:120],
            # RFC 9449: a sign-in that came with a DPoP proof gets a token bound
            # to the proof's key. Only bearer tokens: a cookie is the browser's.
            dpop_jkt=context.device.dpop_jkt if transport == Transport.BEARER else None,
        )
        self._db.add(session)
        self._db.flush()
        return IssuedSession(session, token)

    def resolve(self, token: str, transport: Transport) -> Session | None:
        """The live session for a token presented over ``transport``, or None."""
        found = self.resolve_live(token, transport)
        return found.session if found is not None else None

    def resolve_live(self, token: str, transport: Transport) -> LiveSession | None:
        """The live session for a token presented over ``transport``, with its
        user and what requests read next (``LiveSession``), or None."""
        now = self._clock.now()
        found = self._db.execute(
            _LIVE_SESSION, {"token_hash": hash_token(token), "now": now}
        ).one_or_none()
        if found is None:
            return None
        session, user, data_key, policy_changed = found
        if session.transport != transport or session.revoked_at:
            return None
        idle_limit = session.last_seen_at + timedelta(seconds=self._rules.idle_timeout_seconds)
        if now >= session.expires_at or now >= idle_limit:
            return None
        if not user.is_active:
            return None
        if now - session.last_seen_at >= LAST_SEEN_RESOLUTION:
            session.last_seen_at = now
            self._db.flush()
        return LiveSession(session, user, data_key, bool(policy_changed))

    def active_for(self, user_id: str) -> Sequence[Session]:
        now = self._clock.now()
        idle_cutoff = now - timedelta(seconds=self._rules.idle_timeout_seconds)
        return (
            self._db.execute(
                select(Session)
                .where(
                    Session.user_id == user_id,
                    Session.revoked_at.is_(None),
                    Session.expires_at > now,
                    Session.last_seen_at > idle_cutoff,
                )
                .order_by(Session.last_seen_at.desc())
            )
            .scalars()
            .all()
        )

    def revoke(self, user_id: str, session_id: str, reason: str, ip_prefix: str) -> None:
        # One conditional UPDATE: of two racing revocations exactly one ends the
        # session (and tells the listeners); the other finds nothing to end.
        if not self.end_where(user_id, reason, Session.id == session_id):
            raise not_found("The session")
        self._audit.record(
            "session.revoked",
            user_id=user_id,
            ip_prefix=ip_prefix,
            session_id=session_id,
            reason=reason,
        )

    def sign_out(self, session: Session, ip_prefix: str) -> None:
        """The holder ends this session (the API's logout, the pages' sign-out)."""
        self.revoke(session.user_id, session.id, "logout", ip_prefix)
        self._audit.record("logout", user_id=session.user_id, ip_prefix=ip_prefix)

    def sign_out_elsewhere(self, session: Session, ip_prefix: str) -> int:
        """ "Sign out everywhere else": every other session of the holder ends."""
        count = self.revoke_all(session.user_id, "revoked_by_user", keep=session.id)
        self._audit.record(
            "session.revoked",
            user_id=session.user_id,
            ip_prefix=ip_prefix,
            scope="others",
            count=count,
        )
        return count

    def step_up(self, session: Session, *, acr: Acr, amr: list[str]) -> IssuedSession:
        """A fresh proof raises the session: new auth time, new level, new token
        (the old token stops working at once)."""
        token = new_token()
        session.token_hash = hash_token(token)
        session.auth_time = self._clock.now()
        session.acr = max(Acr(session.acr), acr, key=ACR_ORDER.index)
        session.amr = sorted(set(session.amr) | set(amr))
        self._db.flush()
        self._audit.record(
            "session.stepped_up", user_id=session.user_id, session_id=session.id, acr=acr.value
        )
        return IssuedSession(session, token)

    def last_sign_in(self, user_id: str) -> datetime | None:
        return self._db.execute(
            select(func.max(Session.created_at)).where(Session.user_id == user_id)
        ).scalar_one_or_none()

    def delete_ended(self, user_id: str) -> int:
        """Erase the history of sessions that are over (a deletion request)."""
        now = self._clock.now()
        result = self._db.execute(
            delete(Session).where(
                Session.user_id == user_id,
                (Session.revoked_at.is_not(None))
                | (Session.expires_at <= now)
                | (
                    Session.last_seen_at
                    <= now - timedelta(seconds=self._rules.idle_timeout_seconds)
                ),
            )
        )
        return affected_rows(result)

    def revoke_all(self, user_id: str, reason: str, *, keep: str | None = None) -> int:
        which = Session.id != keep if keep is not None else None
        return self.end_where(user_id, reason, which)

    def end_where(self, user_id: str, reason: str, which: ColumnElement[bool] | None) -> int:
        """End the user's live sessions that match ``which`` (all if None)."""
        statement = (
            update(Session)
            .where(Session.user_id == user_id, Session.revoked_at.is_(None))
            .values(revoked_at=self._clock.now(), revoke_reason=reason)
            .returning(Session.id)
        )
        if which is not None:
            statement = statement.where(which)
        ended = list(self._db.execute(statement).scalars())
        self._db.flush()
        self._ended(ended)
        return len(ended)

    def _ended(self, session_ids: Sequence[str]) -> None:
        if session_ids and self._on_ended is not None:
            self._on_ended(session_ids)
