"""A mobile app's side of DPoP (RFC 9449) for the tests: a key pair and the
proofs it signs, with knobs to get each check wrong on purpose."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

from app.security.dpop import access_token_hash

BASE = "https://localhost"
_GENERATORS = {
    "ES256": lambda: ECKey.generate_key("P-256"),
    "Ed25519": lambda: OKPKey.generate_key("Ed25519"),
    "RS256": lambda: RSAKey.generate_key(2048),
}


@dataclass
class DpopKey:
    alg: str = "ES256"
    key: Any = field(default=None)

    def __post_init__(self) -> None:
        if self.key is None:
            self.key = _GENERATORS[self.alg]()

    @property
    def thumbprint(self) -> str:
        return str(self.key.thumbprint())

    def proof(
        self,
        method: str,
        path_or_url: str,
        *,
        token: str | None = None,
        nonce: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
        typ: str = "dpop+jwt",
        jwk: dict[str, Any] | None = None,
        **extra: Any,
    ) -> str:
        url = path_or_url if "://" in path_or_url else BASE + path_or_url
        claims: dict[str, Any] = {
            "htm": method,
            "htu": url,
            "iat": int(time.time() if iat is None else iat),
            "jti": jti or str(uuid.uuid4()),
            **extra,
        }
        if token is not None:
            claims["ath"] = access_token_hash(token)
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"typ": typ, "alg": self.alg, "jwk": jwk or self.key.as_dict(private=False)}
        return jws.serialize_compact(header, json.dumps(claims), self.key, algorithms=[self.alg])

    def headers(
        self, method: str, path: str, token: str | None = None, **kw: Any
    ) -> dict[str, str]:
        """Headers for a request: the proof, and the token under the DPoP scheme."""
        out = {"DPoP": self.proof(method, path, token=token, **kw)}
        if token is not None:
            out["Authorization"] = f"DPoP {token}"
        return out
