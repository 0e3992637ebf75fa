"""Grants, codes and tokens: issued, found, rotated and revoked here, and
nowhere else. Every check that decides whether a presented code or token
still works is in ``find`` and the two ``claim`` methods; single use is a
conditional UPDATE, so of two concurrent redemptions exactly one wins."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, inspect, select, update
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm.attributes import set_committed_value

from app.clock import Clock
from app.db import affected_rows, insert_together
from app.models import Session, User
from app.models.base import new_id
from app.models.user import UserStatus
from app.oidc.client_models import CLIENT_COLUMNS, ClientRecord, ClientView, OAuthClient
from app.oidc.grant_models import AuthorizationCode, IssuedToken, TokenGrant
from app.oidc.logout_hook import GrantsEnded, backchannel_logout
from app.plain_reads import PlainRead
from app.security.tokens import hash_token
from app.services.audit import AuditTrail
from app.services.container import Services


class TokenKind(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"


class Claim(StrEnum):
    """How a single-use credential's redemption went."""

    WON = "won"
    # Never existed, expired, another client's, or its grant has ended.
    INVALID = "invalid"
    # Used before: the grant it belongs to has just been revoked.
    REUSED = "reused"


@dataclass(frozen=True)
class Lifetimes:
    code: timedelta
    access: timedelta
    refresh: timedelta
    grant: timedelta


@dataclass
class LiveToken:
    token: IssuedToken
    grant: TokenGrant
    client: ClientRecord
    db: DbSession = field(repr=False)
    # Loaded with the token when the caller said it would need it, else on first use.
    loaded_user: User | None = None

    @property
    def user(self) -> User | None:
        """The person the grant is for; None for a client's own token."""
        if self.loaded_user is None and self.grant.user_id is not None:
            self.loaded_user = self.db.get(User, self.grant.user_id)
        return self.loaded_user


@dataclass(frozen=True)
class TokenFacts:
    """A token that still works, as introspection reads it: plain values of
    one statement (``TokenStore.describe``), nothing loaded into the session."""

    kind: str
    scopes: list[str]
    issued_at: datetime
    expires_at: datetime
    dpop_jkt: str | None
    user_id: str | None
    auth_time: datetime | None
    acr: str | None
    client: ClientRecord


class TokenStore:
    def __init__(
        self,
        db: DbSession,
        clock: Clock,
        lifetimes: Lifetimes,
        audit: AuditTrail,
        ended: GrantsEnded | None = None,
    ) -> None:
        self._db, self._clock, self.lifetimes, self._audit = db, clock, lifetimes, audit
        self._ended = ended

    @classmethod
    def of(cls, svc: Services) -> TokenStore:
        s = svc.runtime.settings
        lifetimes = Lifetimes(
            code=timedelta(seconds=s.oidc_code_lifetime_seconds),
            access=timedelta(seconds=s.oidc_access_token_lifetime_seconds),
            refresh=timedelta(seconds=s.oidc_refresh_token_lifetime_seconds),
            grant=timedelta(seconds=s.oidc_grant_lifetime_seconds),
        )
        return cls(svc.db, svc.runtime.clock, lifetimes, svc.audit, backchannel_logout(svc))

    # -- grants and codes ------------------------------------------------------------

    def new_grant(
        self,
        client: ClientView,
        scopes: Sequence[str],
        *,
        user: User | None = None,
        session: Session | None = None,
        dpop_jkt: str | None = None,
    ) -> TokenGrant:
        """A grant not yet recorded: ``save_code`` or ``save`` records it with
        its code or its first tokens, in the same statement."""
        now = self._clock.now()
        grant = TokenGrant(
            id=new_id(),
            user_id=user.id if user else None,
            client_id=client.client_id,
            scopes=list(scopes),
            session_id=session.id if session else None,
            auth_time=session.auth_time if session else None,
            acr=session.acr if session else None,
            amr=list(session.amr) if session else None,
            dpop_jkt=dpop_jkt,
            created_at=now,
            expires_at=now + self.lifetimes.grant,
        )
        return grant

    def save_code(
        self,
        code: str,
        grant: TokenGrant,
        *,
        redirect_uri: str,
        nonce: str | None,
        code_challenge: str | None,
        code_challenge_method: str | None,
        claims: dict[str, object] | None,
    ) -> AuthorizationCode:
        """Record a new grant (``new_grant``) and its authorization code."""
        row = AuthorizationCode(
            code_hash=hash_token(code),
            grant_id=grant.id,
            redirect_uri=redirect_uri,
            nonce=nonce,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
            claims=claims,
            expires_at=self._clock.now() + self.lifetimes.code,
        )
        insert_together(self._db, [grant], [row])
        return row

    def claim_code(self, code: str, client_id: str) -> tuple[Claim, AuthorizationCode | None]:
        """Redeem a code once. A second redemption revokes what the first one
        issued (RFC 6749 section 4.1.2)."""
        row = self._db.get(AuthorizationCode, hash_token(code))
        if row is None:
            return Claim.INVALID, None
        grant = self._db.get(TokenGrant, row.grant_id)
        if grant is None or grant.client_id != client_id:
            return Claim.INVALID, None
        now = self._clock.now()
        won = affected_rows(
            self._db.execute(
                update(AuthorizationCode)
                .where(
                    AuthorizationCode.code_hash == row.code_hash,
                    AuthorizationCode.used_at.is_(None),
                    AuthorizationCode.expires_at > now,
                )
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
        )
        self._db.refresh(row)
        if won:
            if grant.revoked_at is not None:
                return Claim.INVALID, None
            return Claim.WON, row
        if row.used_at is not None:
            self.revoke_grant(grant, "code_reused")
            return Claim.REUSED, None
        return Claim.INVALID, None

    # -- tokens ------------------------------------------------------------------------

    def save(self, grant: TokenGrant, *rows: IssuedToken) -> None:
        """Record the tokens of one answer (``token_row``) of ``grant``, and
        the grant itself if it is not recorded yet (``new_grant``), in one
        round trip."""
        insert_together(self._db, [grant] if inspect(grant).transient else [], rows)

    def token_row(
        self,
        grant: TokenGrant,
        kind: TokenKind,
        token: str,
        scopes: Sequence[str],
        *,
        dpop_jkt: str | None = None,
    ) -> IssuedToken:
        """A token of ``grant``, not yet recorded (``save``)."""
        now = self._clock.now()
        if kind == TokenKind.ACCESS:
            expires = now + self.lifetimes.access
        else:
            expires = min(now + self.lifetimes.refresh, grant.expires_at)
        return IssuedToken(
            id=new_id(),
            grant_id=grant.id,
            kind=kind,
            token_hash=hash_token(token),
            scopes=list(scopes),
            issued_at=now,
            expires_at=expires,
            dpop_jkt=dpop_jkt,
        )

    def find(
        self, token: str, kind: TokenKind | None = None, *, with_user: bool = False
    ) -> LiveToken | None:
        """The token if it still works (``_works``), of ``kind`` if given."""
        if not _presentable(token):
            return None
        live = self._lookup(token, with_user=with_user)
        if live is None or not _usable(live.token.kind, live.token.used_at, kind):
            return None
        return live

    def describe(
        self, token: str, client: ClientRecord, kind: TokenKind | None = None
    ) -> TokenFacts | None:
        """What ``find`` finds, if it is ``client``'s (just authenticated),
        read for answering only (introspection): the same rules, one
        statement, plain values."""
        if not _presentable(token):
            return None
        found = _FACTS_READ.first(self._db, token_hash=hash_token(token))
        if found is None or found[0] != client.client_id:
            return None
        token_kind, scopes, issued_at, expires_at, dpop_jkt, used_at, revoked_at = found[1:8]
        user_id, auth_time, acr, grant_revoked_at, user_status = found[8:]
        works = self._works(
            revoked_at, expires_at, grant_revoked_at, client.disabled, user_id, user_status
        )
        if not works or not _usable(token_kind, used_at, kind):
            return None
        return TokenFacts(
            token_kind, scopes, issued_at, expires_at, dpop_jkt, user_id, auth_time, acr, client
        )

    def claim_refresh(self, token: str, client_id: str) -> tuple[Claim, LiveToken | None]:
        """Rotate a refresh token: it works once. Presenting a rotated one
        again means it leaked: the whole grant is revoked."""
        # The grant's row is locked by the lookup, before the token's, as
        # revoke_grant takes them: PostgreSQL keeps a lock on a row a concurrent
        # UPDATE rechecked and skipped, so racing presentations that each
        # locked the token and then waited on the grant deadlocked with the
        # one revoking the grant's tokens.
        live = self._lookup(token, with_user=True, lock_grant=True)  # the ID token is about them
        if live is None or live.token.kind != TokenKind.REFRESH:
            return Claim.INVALID, None
        if live.client.client_id != client_id:
            return Claim.INVALID, None
        row = live.token
        now = self._clock.now()
        won = affected_rows(
            self._db.execute(
                update(IssuedToken)
                .where(IssuedToken.id == row.id, IssuedToken.used_at.is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
        )
        if won:
            set_committed_value(row, "used_at", now)
            return Claim.WON, live
        self.revoke_grant(live.grant, "refresh_reused")
        return Claim.REUSED, None

    def _lookup(
        self, token: str, *, with_user: bool = False, lock_grant: bool = False
    ) -> LiveToken | None:
        """The token with its grant, client and (``with_user``) user, if each
        still lets it work: not expired, not revoked, its grant not revoked,
        its client not disabled, its user still active. One query, which with
        ``lock_grant`` also takes the grant's row (FOR KEY SHARE: a concurrent
        revocation waits, other readers do not)."""
        query = _token_query(with_user=with_user, lock_grant=lock_grant)
        found = self._db.execute(query, {"token_hash": hash_token(token)}).one_or_none()
        if found is None:
            return None
        row, grant, *client_values, user_found = found
        client = ClientRecord(*client_values)
        user: User | None = user_found if with_user else None
        status = user.status if user is not None else user_found
        works = self._works(
            row.revoked_at, row.expires_at, grant.revoked_at, client.disabled, grant.user_id, status
        )
        return LiveToken(row, grant, client, self._db, user) if works else None

    def _works(
        self,
        revoked_at: datetime | None,
        expires_at: datetime,
        grant_revoked_at: datetime | None,
        client_disabled: bool,
        user_id: str | None,
        user_status: str | None,
    ) -> bool:
        """Whether a token still works: not revoked or expired, its grant not
        revoked, its client not disabled, its user (if any) still active."""
        if revoked_at is not None or expires_at <= self._clock.now():
            return False
        if grant_revoked_at is not None or client_disabled:
            return False
        return user_id is None or user_status == UserStatus.ACTIVE

    # -- revocation ------------------------------------------------------------------------

    def revoke_token(self, row: IssuedToken) -> None:
        """RFC 7009: a refresh token takes its grant with it; an access token
        goes alone."""
        if row.kind == TokenKind.REFRESH:
            grant = self._db.get(TokenGrant, row.grant_id)
            if grant is not None:
                self.revoke_grant(grant, "revoked_by_client")
            return
        if row.revoked_at is None:
            row.revoked_at = self._clock.now()
            self._db.flush()

    def revoke_grant(self, grant: TokenGrant, reason: str) -> None:
        """End the grant and its tokens, once: of concurrent revocations (20
        racing replays of one code) exactly one does it and is audited."""
        if grant.revoked_at is not None:
            return
        now = self._clock.now()
        won = affected_rows(
            self._db.execute(
                update(TokenGrant)
                .where(TokenGrant.id == grant.id, TokenGrant.revoked_at.is_(None))
                .values(revoked_at=now, revoke_reason=reason)
                .execution_options(synchronize_session=False)
            )
        )
        self._db.refresh(grant)
        if not won:
            return
        self._db.execute(
            update(IssuedToken)
            .where(IssuedToken.grant_id == grant.id, IssuedToken.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        self._db.flush()
        self._audit.record(
            "oidc.grant_revoked",
            user_id=grant.user_id,
            client_id=grant.client_id,
            grant_id=grant.id,
            reason=reason,
        )

    def live_grants(
        self, *, user_id: str | None = None, client_id: str | None = None
    ) -> list[TokenGrant]:
        query = select(TokenGrant).where(TokenGrant.revoked_at.is_(None))
        if user_id is not None:
            query = query.where(TokenGrant.user_id == user_id)
        if client_id is not None:
            query = query.where(TokenGrant.client_id == client_id)
        return list(self._db.scalars(query.order_by(TokenGrant.created_at)))

    def revoke_all(
        self, reason: str, *, user_id: str | None = None, client_id: str | None = None
    ) -> list[TokenGrant]:
        """End every live grant of a user, of a client, or of a user with one
        client, and tell the hook that sends back-channel logouts."""
        ended = self.live_grants(user_id=user_id, client_id=client_id)
        for grant in ended:
            self.revoke_grant(grant, reason)
        if ended and self._ended is not None:
            self._ended(ended, reason)
        return ended


def token_store(svc: Services) -> TokenStore:
    return TokenStore.of(svc)


def _presentable(token: str) -> bool:
    return bool(token) and len(token) <= 4096


def _usable(found: str, used_at: datetime | None, wanted: TokenKind | None) -> bool:
    """Of the kind asked for (if any), and a refresh token not yet rotated."""
    if wanted is not None and found != wanted:
        return False
    return found != TokenKind.REFRESH or used_at is None


_FACTS_READ = PlainRead(
    select(
        TokenGrant.client_id,
        IssuedToken.kind,
        IssuedToken.scopes,
        IssuedToken.issued_at,
        IssuedToken.expires_at,
        IssuedToken.dpop_jkt,
        IssuedToken.used_at,
        IssuedToken.revoked_at,
        TokenGrant.user_id,
        TokenGrant.auth_time,
        TokenGrant.acr,
        TokenGrant.revoked_at,
        User.status,
    )
    .join(TokenGrant, TokenGrant.id == IssuedToken.grant_id)
    .outerjoin(User, User.id == TokenGrant.user_id)
    .where(IssuedToken.token_hash == bindparam("token_hash"))
)


@cache
def _token_query(*, with_user: bool, lock_grant: bool) -> Select[Any]:
    """The lookup behind ``TokenStore._lookup``, built once per shape (every
    token request runs one), with the token's hash bound per call."""
    # The client's columns come as plain values (ClientRecord): the token
    # endpoint and introspection only read them.
    user_state: Any = User if with_user else User.status
    query = (
        select(IssuedToken, TokenGrant, *CLIENT_COLUMNS, user_state)
        .join(TokenGrant, TokenGrant.id == IssuedToken.grant_id)
        .join(OAuthClient, OAuthClient.client_id == TokenGrant.client_id)
        .outerjoin(User, User.id == TokenGrant.user_id)
        .where(IssuedToken.token_hash == bindparam("token_hash"))
    )
    if lock_grant:
        query = query.with_for_update(key_share=True, of=TokenGrant)
    return query
