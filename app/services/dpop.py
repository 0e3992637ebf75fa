"""DPoP proofs as a service: the checks of one proof (app.security.dpop) plus
the replay cache. The cache is the rate-limit storage (Redis in production), so
every worker sees every jti at once and nothing waits on a database transaction:
a proof is spent even when the request it came with fails."""

from __future__ import annotations

import hashlib

from limits.storage import Storage

from app.clock import Clock
from app.errors import ServiceError
from app.security.dpop import SUPPORTED_ALGORITHMS, DpopInvalid, DpopProof, DpopVerifier

DPOP_CHALLENGE = f'DPoP algs="{" ".join(SUPPORTED_ALGORITHMS)}"'


def invalid_dpop_proof(reason: str, *, status: int = 400) -> ServiceError:
    """RFC 9449: 400 at sign-in (section 5), 401 with a DPoP challenge when a
    token is presented (section 7.1). ``reason`` names the failed check only."""
    headers = (
        {"WWW-Authenticate": f'{DPOP_CHALLENGE}, error="invalid_dpop_proof"'}
        if status == 401
        else {}
    )
    return ServiceError(
        "invalid-dpop-proof",
        status,
        "The DPoP proof was not accepted",
        f"Send a fresh DPoP proof for this request: {reason}.",
        headers=headers,
    )


class DpopService:
    def __init__(self, verifier: DpopVerifier, replay_cache: Storage, clock: Clock) -> None:
        self._verifier, self._cache, self._clock = verifier, replay_cache, clock

    def check(
        self,
        proof: str,
        *,
        method: str,
        url: str,
        access_token: str | None = None,
        status: int = 400,
    ) -> DpopProof:
        try:
            checked = self._verifier.verify(
                proof,
                method=method,
                url=url,
                now=self._clock.now(),
                access_token=access_token,
            )
        except DpopInvalid as error:
            raise invalid_dpop_proof(str(error), status=status) from None
        key = hashlib.sha256(f"{checked.jkt}:{checked.jti}".encode()).hexdigest()
        if self._cache.incr(f"privid-dpop-jti:{key}", self._verifier.replay_window_seconds) > 1:
            raise invalid_dpop_proof("this proof was used before", status=status)
        return checked
