"""DPoP proofs (RFC 9449): a client shows it holds the private key its tokens
are bound to by signing a small JWT for every request.

This module checks one proof (section 4.3): its shape, its signature with the
key it carries, the method and URL it names, its age and its access-token hash.
A nonce it carries is returned for whoever issued it to compare, and whether its
``jti`` was seen before is app.services.dpop's question (a cache shared by workers)."""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry
from joserfc.util import urlsafe_b64decode, urlsafe_b64encode

from app.json_object import json_object
from app.security.jws_header import check_crit

# Asymmetric algorithms only (section 4.3, check 5); "none" and MACs never.
# Ed25519 is the fully specified name RFC 9864 gives what "EdDSA" meant.
SUPPORTED_ALGORITHMS = ("ES256", "Ed25519", "RS256", "PS256")
PROOF_TYPE = "dpop+jwt"
# A proof is small; anything larger is not one.
MAX_PROOF_LENGTH = 8192
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_KEY_TYPES = {"EC": ECKey, "OKP": OKPKey, "RSA": RSAKey}
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 7518 3.3/3.5: RSA keys of 2048 bits at least.
MIN_RSA_BITS = 2048


def _registry() -> JWSRegistry:
    """joserfc caps a protected header at 512 bytes; a proof's header carries
    its public key, and a 4096-bit RSA key alone is about 700. The whole proof
    is still capped by MAX_PROOF_LENGTH."""
    registry = JWSRegistry(algorithms=list(SUPPORTED_ALGORITHMS))
    registry.max_header_length = MAX_PROOF_LENGTH
    return registry


_REGISTRY = _registry()


class DpopInvalid(Exception):
    """The proof is not acceptable; the message says why, without echoing it."""


@dataclass(frozen=True)
class DpopProof:
    jkt: str  # RFC 7638 SHA-256 thumbprint of the proof's public key
    jti: str
    issued_at: datetime
    public_jwk: dict[str, Any]
    # A server-provided nonce, if the proof carries one; whoever issued it compares.
    nonce: str | None


def access_token_hash(token: str) -> str:
    """The ``ath`` claim: base64url SHA-256 of the access token (section 4.2)."""
    return urlsafe_b64encode(hashlib.sha256(token.encode("ascii")).digest()).decode("ascii")


def normalise_url(url: str) -> str:
    """``htu`` compares without query and fragment (section 4.3, check 9), with
    scheme and host case-folded and a default port dropped (RFC 3986 6.2.3)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DpopInvalid("htu is not a URL") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


class DpopVerifier:
    def __init__(self, *, max_age_seconds: int, future_skew_seconds: int) -> None:
        self._max_age = max_age_seconds
        self._skew = future_skew_seconds

    @property
    def replay_window_seconds(self) -> int:
        """How long a ``jti`` must be remembered: as long as its proof is fresh."""
        return self._max_age + self._skew

    def verify(
        self,
        proof: str,
        *,
        method: str,
        url: str,
        now: datetime,
        access_token: str | None = None,
    ) -> DpopProof:
        if not proof or len(proof) > MAX_PROOF_LENGTH or not proof.isascii():
            raise DpopInvalid("the proof is missing or too large")
        try:
            compact = jws.extract_compact(proof.encode("ascii"), registry=_REGISTRY)
        except (JoseError, ValueError):
            raise DpopInvalid("the proof is not a compact JWS") from None
        header = compact.protected
        try:
            check_crit(header)
        except ValueError:
            raise DpopInvalid("crit is malformed") from None
        if header.get("typ") != PROOF_TYPE:
            raise DpopInvalid(f"typ must be {PROOF_TYPE}")
        if header.get("alg") not in SUPPORTED_ALGORITHMS:
            raise DpopInvalid("alg must be one of " + " ".join(SUPPORTED_ALGORITHMS))
        key = _public_key(header.get("jwk"))
        try:
            verified = jws.deserialize_compact(
                proof, key, algorithms=[header["alg"]], registry=_REGISTRY
            )
        except (JoseError, ValueError):
            raise DpopInvalid("the signature does not verify with the proof's key") from None
        claims = _claims(verified.payload)
        if claims.get("htm") != method:
            raise DpopInvalid("htm does not match the request method")
        htu = claims.get("htu")
        if not isinstance(htu, str) or normalise_url(htu) != normalise_url(url):
            raise DpopInvalid("htu does not match the request URL")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 8 <= len(jti) <= 256:
            raise DpopInvalid("jti must be a unique string")
        iat = claims.get("iat")
        if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
            raise DpopInvalid("iat must be a number")
        age = now.timestamp() - iat
        if age > self._max_age or age < -self._skew:
            raise DpopInvalid("iat is outside the accepted window")
        _check_ath(claims.get("ath"), access_token)
        nonce = claims.get("nonce")
        if nonce is not None and not isinstance(nonce, str):
            raise DpopInvalid("nonce must be a string")
        issued_at = datetime.fromtimestamp(iat, tz=now.tzinfo)
        public_jwk = dict(key.as_dict(private=False))
        return DpopProof(key.thumbprint(), jti, issued_at, public_jwk, nonce)


def _public_key(jwk: object) -> ECKey | OKPKey | RSAKey:
    if not isinstance(jwk, dict) or not jwk.keys().isdisjoint(_PRIVATE_MEMBERS):
        raise DpopInvalid("jwk must be a public key")
    key_type = _KEY_TYPES.get(str(jwk.get("kty")))
    if key_type is None:
        raise DpopInvalid("jwk has an unsupported key type")
    if key_type is RSAKey and _modulus_bits(jwk.get("n")) < MIN_RSA_BITS:
        raise DpopInvalid(f"RSA keys must have at least {MIN_RSA_BITS} bits")
    try:
        return key_type.import_key(jwk)  # type: ignore[attr-defined,no-any-return]
    except (JoseError, ValueError, TypeError):
        raise DpopInvalid("jwk is not a valid public key") from None


def _modulus_bits(n: object) -> int:
    """Checked before import, so a weak key is refused without a library warning."""
    if not isinstance(n, str):
        return 0
    try:
        return int.from_bytes(urlsafe_b64decode(n.encode("ascii"))).bit_length()
    except (ValueError, UnicodeEncodeError):
        return 0


def _claims(payload: bytes) -> dict[str, object]:
    claims = json_object(payload)
    if claims is None:
        raise DpopInvalid("the proof's payload is not a JSON object")
    return claims


def _check_ath(sent: object, access_token: str | None) -> None:
    if access_token is None:
        return
    expected = access_token_hash(access_token)
    # compare_digest takes str only when both are ASCII: anything else is a
    # TypeError, and a hash is base64url anyway.
    if not isinstance(sent, str) or not sent.isascii() or not hmac.compare_digest(sent, expected):
        raise DpopInvalid("ath does not match the access token")
