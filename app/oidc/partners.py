"""A user's approvals of partners (PIPL Art. 23: a separate consent per
recipient). Each decision goes into the consent ledger as ``partner_sharing``
for that client; the scopes approved are remembered so the page is not shown
again for what was already approved. Revoking ends the partner's tokens at
once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.models import Channel, Decision
from app.oidc.claims import claims_of_scopes
from app.oidc.client_models import ClientView, OAuthClient
from app.oidc.clients import could_be_client_id
from app.oidc.grant_models import ClientAuthorization, IssuedToken, TokenGrant
from app.oidc.token_store import TokenStore
from app.services.consent import ConsentService
from app.services.container import Services
from app.services.context import RequestContext

PARTNER_PURPOSE = "partner_sharing"
# Scopes that release nothing about the user need no partner approval.
SILENT_SCOPES = frozenset({"openid"})


@dataclass(frozen=True)
class PartnerApproval:
    client: OAuthClient
    scopes: list[str]
    granted_at: datetime


@dataclass(frozen=True)
class PartnerUse:
    """An approval as the user reviews it: what it releases and whether the
    partner still holds tokens."""

    approval: PartnerApproval
    claims: list[str]
    live_grants: int
    # When the partner was last issued a token for the user.
    last_used_at: datetime | None


class PartnerAuthorizations:
    def __init__(
        self,
        db: DbSession,
        clock: Clock,
        consent: ConsentService,
        tokens: TokenStore,
    ) -> None:
        self._db, self._clock, self._consent, self._tokens = db, clock, consent, tokens

    @classmethod
    def of(cls, svc: Services) -> PartnerAuthorizations:
        return cls(svc.db, svc.runtime.clock, svc.consent, TokenStore.of(svc))

    def covers(self, user_id: str, client: ClientView, scopes: Sequence[str]) -> bool:
        """Has the user approved this partner for at least these scopes, and
        is the ledger's latest word for it still a grant?"""
        if client.first_party:
            return True
        row = self._db.get(ClientAuthorization, (user_id, client.client_id))
        if row is None:
            return False
        if not set(scopes) - SILENT_SCOPES <= set(row.scopes):
            return False
        return self._consent.is_granted(user_id, PARTNER_PURPOSE, client.client_id)

    def approve(
        self, user_id: str, client: ClientView, scopes: Sequence[str], context: RequestContext
    ) -> None:
        self._consent.decide_for_client(
            user_id, PARTNER_PURPOSE, client.client_id, Decision.GRANTED, context
        )
        row = self._db.get(ClientAuthorization, (user_id, client.client_id))
        now = self._clock.now()
        if row is None:
            self._db.add(
                ClientAuthorization(
                    user_id=user_id, client_id=client.client_id, scopes=sorted(set(scopes)),
                    granted_at=now,
                )
            )  # fmt: skip
        else:
            row.scopes = sorted(set(row.scopes) | set(scopes))
            row.granted_at = now
        self._db.flush()

    def refuse(self, user_id: str, client: ClientView, context: RequestContext) -> None:
        """The person said no on the approval page. Asked again (prompt=consent)
        about a partner approved before, no means no from now on: the ledger's
        latest word is a refusal, so what the partner holds ends with it."""
        self._consent.decide_for_client(
            user_id, PARTNER_PURPOSE, client.client_id, Decision.REFUSED, context
        )
        self.forget(user_id, client.client_id)

    def revoke(
        self,
        user_id: str,
        client_id: str,
        context: RequestContext,
        channel: Channel = Channel.OAUTH,
    ) -> bool:
        """The user takes the approval back: recorded, forgotten, and every
        token the partner holds for the user ends now. False if none was on."""
        if not could_be_client_id(client_id):
            return False
        # Locked: of two revocations at once, the second finds it gone and
        # records nothing.
        row = self._db.execute(
            select(ClientAuthorization)
            .where(
                ClientAuthorization.user_id == user_id, ClientAuthorization.client_id == client_id
            )
            .with_for_update()
        ).scalar_one_or_none()
        granted = self._consent.is_granted(user_id, PARTNER_PURPOSE, client_id)
        if row is None and not granted:
            return False
        if granted:
            self._consent.decide_for_client(
                user_id, PARTNER_PURPOSE, client_id, Decision.WITHDRAWN, context, channel
            )
        self.forget(user_id, client_id)
        return True

    def forget(self, user_id: str, client_id: str | None = None) -> list[TokenGrant]:
        """Drop the remembered approvals (one partner, or all) and end their
        grants. All means every partner: the platform's own apps need no
        partner approval, so their grants stay. The grants ended."""
        query = delete(ClientAuthorization).where(ClientAuthorization.user_id == user_id)
        if client_id is not None:
            query = query.where(ClientAuthorization.client_id == client_id)
        self._db.execute(query)
        clients = [client_id] if client_id is not None else self._partners_holding(user_id)
        ended: list[TokenGrant] = []
        for partner in clients:
            ended += self._tokens.revoke_all("partner_revoked", user_id=user_id, client_id=partner)
        self._db.flush()
        return ended

    def _partners_holding(self, user_id: str) -> list[str]:
        """The partners (not first-party clients) with a live grant for the user."""
        query = (
            select(TokenGrant.client_id)
            .join(OAuthClient, OAuthClient.client_id == TokenGrant.client_id)
            .where(
                TokenGrant.user_id == user_id,
                TokenGrant.revoked_at.is_(None),
                OAuthClient.first_party.is_(False),
            )
            .distinct()
        )
        return sorted(self._db.scalars(query))

    def uses(self, user_id: str) -> list[PartnerUse]:
        """Each approval with the claims its scopes release, the partner's
        live grants for the user, and when it was last issued a token."""
        now = self._clock.now()
        live: dict[str, int] = {
            client_id: count
            for client_id, count in self._db.execute(
                select(TokenGrant.client_id, func.count())
                .where(
                    TokenGrant.user_id == user_id,
                    TokenGrant.revoked_at.is_(None),
                    TokenGrant.expires_at > now,
                )
                .group_by(TokenGrant.client_id)
            )
        }
        last: dict[str, datetime] = {
            client_id: at
            for client_id, at in self._db.execute(
                select(TokenGrant.client_id, func.max(IssuedToken.issued_at))
                .join(IssuedToken, IssuedToken.grant_id == TokenGrant.id)
                .where(TokenGrant.user_id == user_id)
                .group_by(TokenGrant.client_id)
            )
        }
        return [
            PartnerUse(
                approval=approval,
                claims=sorted(claims_of_scopes(approval.scopes)),
                live_grants=live.get(approval.client.client_id, 0),
                last_used_at=last.get(approval.client.client_id),
            )
            for approval in self.approvals(user_id)
        ]

    def approvals(self, user_id: str) -> list[PartnerApproval]:
        rows = self._db.execute(
            select(ClientAuthorization, OAuthClient)
            .join(OAuthClient, OAuthClient.client_id == ClientAuthorization.client_id)
            .where(ClientAuthorization.user_id == user_id)
            .order_by(ClientAuthorization.granted_at)
        ).all()
        return [
            PartnerApproval(client, list(auth.scopes), auth.granted_at) for auth, client in rows
        ]
