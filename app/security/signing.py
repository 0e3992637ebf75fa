"""Signing what the service vouches for (consent receipts; later ID tokens):
ES256 JWS compact serialisation via joserfc, the only module importing it."""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from app.security.jws_header import check_crit

ALGORITHM = "ES256"
# Order of the P-256 group: a private scalar must lie in [1, n-1].
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class SignatureInvalid(Exception):
    pass


class Signer:
    def __init__(self, key_id: str, seed: bytes) -> None:
        scalar = int.from_bytes(seed, "big") % (P256_ORDER - 1) + 1
        self.key_id = key_id
        self._key = ECKey.import_key(ec.derive_private_key(scalar, ec.SECP256R1()))
        self._public = ECKey.import_key(self._key.as_dict(private=False))

    def sign(self, claims: dict[str, Any]) -> str:
        payload = json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        header = {"alg": ALGORITHM, "kid": self.key_id, "typ": "JWT"}
        return jws.serialize_compact(header, payload.encode("utf-8"), self._key)

    def verify(self, token: str) -> dict[str, Any]:
        try:
            check_crit(jws.extract_compact(token.encode("ascii")).protected)
            obj = jws.deserialize_compact(token, self._public, algorithms=[ALGORITHM])
        except (JoseError, ValueError) as exc:
            raise SignatureInvalid(str(exc)) from None
        claims: dict[str, Any] = json.loads(obj.payload)
        return claims

    def jwks(self) -> dict[str, Any]:
        public = dict(self._public.as_dict(private=False))
        public.update({"kid": self.key_id, "use": "sig", "alg": ALGORITHM})
        return {"keys": [public]}
