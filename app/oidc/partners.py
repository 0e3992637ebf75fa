"""A user's approvals of partners (PIPL Art. 23: a separate consent per
recipient). Each decision goes into the consent ledger as ``partner_sharing``
for that client; the scopes approved are remembered so the page is not shown
again for what was already approved. Revoking ends the partner's tokens at
once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.models import Decision
from app.oidc.backchannel import BackChannelLogout
from app.oidc.client_models import OAuthClient
from app.oidc.grant_models import ClientAuthorization
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
    granted_at: object


class PartnerAuthorizations:
    def __init__(
        self,
        db: DbSession,
        clock: Clock,
        consent: ConsentService,
        tokens: TokenStore,
        logout: BackChannelLogout,
    ) -> None:
        self._db, self._clock, self._consent, self._tokens = db, clock, consent, tokens
        self._logout = logout

    @classmethod
    def of(cls, svc: Services) -> PartnerAuthorizations:
        return cls(
            svc.db, svc.runtime.clock, svc.consent, TokenStore.of(svc), BackChannelLogout.of(svc)
        )

    def covers(self, user_id: str, client: OAuthClient, scopes: Sequence[str]) -> bool:
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
        self, user_id: str, client: OAuthClient, scopes: Sequence[str], context: RequestContext
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

    def refuse(self, user_id: str, client: OAuthClient, context: RequestContext) -> None:
        self._consent.decide_for_client(
            user_id, PARTNER_PURPOSE, client.client_id, Decision.REFUSED, context
        )

    def revoke(self, user_id: str, client_id: str, context: RequestContext) -> bool:
        """The user takes the approval back: recorded, forgotten, and every
        token the partner holds for the user ends now. False if none was on."""
        row = self._db.get(ClientAuthorization, (user_id, client_id))
        granted = self._consent.is_granted(user_id, PARTNER_PURPOSE, client_id)
        if row is None and not granted:
            return False
        if granted:
            self._consent.decide_for_client(
                user_id, PARTNER_PURPOSE, client_id, Decision.WITHDRAWN, context
            )
        self.forget(user_id, client_id)
        return True

    def forget(self, user_id: str, client_id: str | None = None) -> None:
        """Drop the remembered approvals (one partner, or all), end their grants
        and tell the partners (back-channel logout)."""
        query = delete(ClientAuthorization).where(ClientAuthorization.user_id == user_id)
        if client_id is not None:
            query = query.where(ClientAuthorization.client_id == client_id)
        self._db.execute(query)
        ended = self._tokens.revoke_all("partner_revoked", user_id=user_id, client_id=client_id)
        self._logout.notify(ended)
        self._db.flush()

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
