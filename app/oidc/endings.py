"""What the provider ends when the core ends something: withdrawing partner
sharing as a whole, and cancelling the account. The core calls these with its
database session and the user id (app/services/consent.py WithdrawalEffect,
app/services/cancellation.py AccountEnding); they run in the same unit of
work, so the services are built over that very session."""

from __future__ import annotations

from flask import current_app
from sqlalchemy.orm import Session as DbSession

from app.oidc.partners import PARTNER_PURPOSE, PartnerAuthorizations
from app.oidc.token_store import TokenStore
from app.services.consent import WithdrawalEffects
from app.services.container import Services


def _services(db: DbSession) -> Services:
    # Requests and CLI commands both run in an app context: its runtime.
    return Services(db, current_app.extensions["privid.runtime"])


def end_partner_sharing(db: DbSession, user_id: str) -> None:
    """partner_sharing withdrawn: every partner's approval and grants end."""
    PartnerAuthorizations.of(_services(db)).forget(user_id)


def end_account_grants(db: DbSession, user_id: str) -> None:
    """Account cancelled: every grant ends now, the platform's own apps' too,
    before the rows cascade away with the user."""
    TokenStore.of(_services(db)).revoke_all("account_cancelled", user_id=user_id)


def register_withdrawal_effects(effects: WithdrawalEffects) -> None:
    effects.register(PARTNER_PURPOSE, end_partner_sharing)
