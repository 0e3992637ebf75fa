"""The one place that hears when a user's grants are ended in bulk: the user
took a partner's approval back, withdrew partner sharing, cancelled the
account, or an operator disabled a client (``TokenStore.revoke_all``).

Back-channel logout (OpenID Connect Back-Channel Logout 1.0) plugs in here:
each ended grant names its client and the browser session it was granted in
(``session_id``, the ID token's ``sid`` via ``signed_tokens.session_id_for``),
which is what a logout token carries. Until its delivery exists this hook
only says what it was told; it is called before the rows can go (an
account's cancellation deletes them), so it must read what it needs now."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from app.oidc.grant_models import TokenGrant
from app.services.container import Services

log = logging.getLogger(__name__)

# Gets the grants just ended and why (a revoke reason such as "partner_revoked").
GrantsEnded = Callable[[Sequence[TokenGrant], str], None]


def backchannel_logout(svc: Services) -> GrantsEnded:
    """What to do once grants have ended, in ``svc``'s unit of work."""

    def ended(grants: Sequence[TokenGrant], reason: str) -> None:
        # Back-channel logout delivery goes here (issue 10). Counts only: the
        # grant ids and user ids stay out of the logs.
        log.debug("%d grant(s) ended (%s); no back-channel logout sent yet", len(grants), reason)

    return ended
