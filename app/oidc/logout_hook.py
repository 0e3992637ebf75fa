"""The one place that hears when grants are ended in bulk
(``TokenStore.revoke_all``): the user took a partner's approval back,
withdrew partner sharing, cancelled the account, or an operator disabled a
client. Each ended grant's client is sent a back-channel logout token
(app/oidc/backchannel.py) for the session it was granted in. Called before
the rows can go (an account's cancellation deletes them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from app.oidc.grant_models import TokenGrant
from app.services.container import Services

# Gets the grants just ended and why (a revoke reason such as "partner_revoked").
GrantsEnded = Callable[[Sequence[TokenGrant], str], None]


def backchannel_logout(svc: Services) -> GrantsEnded:
    """What to do once grants have ended, in ``svc``'s unit of work."""

    def ended(grants: Sequence[TokenGrant], reason: str) -> None:
        # Imported here: the back-channel module reads tokens through the store.
        from app.oidc.backchannel import BackChannelLogout

        BackChannelLogout.of(svc).notify(grants)

    return ended
