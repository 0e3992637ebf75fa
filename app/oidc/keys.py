"""The OpenID provider's signing keys: one active key per algorithm (RS256, the
default, and ES256), created on first use; rotation retires the active key,
erases its private half and keeps its public half in the JWKS until the
longest-lived token it may have signed has expired."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.oidc.key_models import SigningKey
from app.security.envelope import FieldCipher, KeyRing, WrappedKey
from app.security.signing import SignatureInvalid
from app.services.audit import AuditTrail
from app.services.container import Services

Algorithm = Literal["RS256", "ES256"]
ALGORITHMS: tuple[Algorithm, ...] = ("RS256", "ES256")
# What the OpenID conformance suite and most relying parties expect.
DEFAULT_ALGORITHM: Algorithm = "RS256"
# 2048 bits, as the large providers publish: every token costs one private-key
# operation, and 3072 bits makes that about four times slower.
RSA_BITS = 2048
FIELD = "oidc_private_key"
# Parsed private keys by kid. A kid is the thumbprint of the public key, so it
# names exactly one private key; parsing an RSA PEM costs tens of milliseconds.
_PARSED_LIMIT = 8
_parsed: dict[str, RSAKey | ECKey] = {}
_parsed_lock = threading.Lock()


def _owner(kid: str) -> str:
    # The sealed key and its data key are bound to the kid: a sealed private
    # key copied into another row does not open there.
    return f"oidc-signing-key:{kid}"


def _generate(alg: Algorithm) -> RSAKey | ECKey:
    if alg == "RS256":
        return RSAKey.generate_key(RSA_BITS)
    return ECKey.generate_key("P-256")


def _import(alg: str, pem: bytes) -> RSAKey | ECKey:
    return RSAKey.import_key(pem) if alg == "RS256" else ECKey.import_key(pem)


class RotationRaced(Exception):
    """Another rotation of the same algorithm committed first (PostgreSQL: the
    lock was waited for, then the key it guarded was no longer active)."""

    def __init__(self, alg: str) -> None:
        super().__init__(f"another {alg} rotation finished first; run it again if needed")


@dataclass(frozen=True)
class Rotation:
    new: SigningKey
    retired: SigningKey | None


class SigningKeys:
    def __init__(
        self,
        db: DbSession,
        clock: Clock,
        key_ring: KeyRing,
        publish_for: timedelta,
        audit: AuditTrail,
    ) -> None:
        self._db = db
        self._clock = clock
        self._key_ring = key_ring
        self._publish_for = publish_for
        self._audit = audit

    @classmethod
    def of(cls, svc: Services) -> SigningKeys:
        rt = svc.runtime
        publish_for = timedelta(seconds=rt.settings.oidc_key_publish_seconds)
        return cls(svc.db, rt.clock, rt.key_ring, publish_for, svc.audit)

    # -- keys --------------------------------------------------------------------

    def active(self, alg: Algorithm = DEFAULT_ALGORITHM) -> SigningKey:
        """The key that signs with ``alg`` now; the first one is made here."""
        found = self._active_row(alg)
        if found is not None:
            return found
        made = self._new_row(alg)
        try:
            with self._db.begin_nested():
                self._db.add(made)
                self._db.flush()
        except IntegrityError:
            # Another worker made the first key in the meantime: use that one.
            return self._require_active(alg)
        self._audit.record("oidc.signing_key_created", kid=made.kid, alg=alg)
        return made

    def rotate(self, alg: Algorithm = DEFAULT_ALGORITHM) -> Rotation:
        """A new active key for ``alg``; the old one retired and kept published."""
        made = self._new_row(alg)  # before taking the lock: generating RSA is slow
        now = self._clock.now()
        retired = self._active_row(alg, for_update=True)
        if retired is not None:
            retired.retired_at = now
            retired.published_until = now + self._publish_for
            retired.kek_id = retired.wrapped_key = retired.private_key_sealed = None
            with _parsed_lock:
                _parsed.pop(retired.kid, None)
            # Retired before the insert: the one-active index sees it gone.
            self._db.flush()
        try:
            with self._db.begin_nested():
                self._db.add(made)
                self._db.flush()
        except IntegrityError:
            raise RotationRaced(alg) from None
        self._audit.record(
            "oidc.signing_key_rotated",
            kid=made.kid,
            alg=alg,
            retired_kid=retired.kid if retired else None,
        )
        return Rotation(made, retired)

    def published(self) -> list[SigningKey]:
        """Active keys, and retired ones until their window ends; newest first."""
        now = self._clock.now()
        rows = self._db.scalars(
            select(SigningKey)
            .where(or_(SigningKey.retired_at.is_(None), SigningKey.published_until > now))
            .order_by(SigningKey.activated_at.desc(), SigningKey.kid)
        )
        return list(rows)

    def jwks(self) -> list[dict[str, Any]]:
        return [dict(row.public_jwk) for row in self.published()]

    # -- tokens ------------------------------------------------------------------

    def sign(
        self, claims: Mapping[str, Any], alg: Algorithm = DEFAULT_ALGORITHM, typ: str = "JWT"
    ) -> str:
        """A compact JWS over ``claims`` by the active key, naming it by kid."""
        row = self.active(alg)
        payload = json.dumps(dict(claims), separators=(",", ":"), ensure_ascii=False)
        header = {"alg": alg, "kid": row.kid, "typ": typ}
        return jws.serialize_compact(header, payload.encode("utf-8"), self._private_key(row))

    def verify(self, token: str, algorithms: tuple[Algorithm, ...] = ALGORITHMS) -> dict[str, Any]:
        """The claims of a token signed by a published key (its kid says which).
        Only the signature: expiry, audience and the rest are the caller's."""
        try:
            header = jws.extract_compact(token.encode("ascii")).protected
        except (JoseError, ValueError, UnicodeError):
            raise SignatureInvalid("not a compact JWS") from None
        kid = header.get("kid")
        row = next((r for r in self.published() if r.kid == kid), None)
        if row is None or row.alg not in algorithms or header.get("alg") != row.alg:
            raise SignatureInvalid("no published key signs that way under that kid")
        try:
            keys = KeySet.import_key_set({"keys": [row.public_jwk]})
            found = jws.deserialize_compact(token, keys, algorithms=[row.alg])
            claims = json.loads(found.payload)
        except (JoseError, ValueError) as exc:
            raise SignatureInvalid(str(exc)) from None
        if not isinstance(claims, dict):
            raise SignatureInvalid("the payload is not a JSON object")
        return claims

    # -- inside ------------------------------------------------------------------

    def _active_row(self, alg: str, *, for_update: bool = False) -> SigningKey | None:
        query = select(SigningKey).where(SigningKey.alg == alg, SigningKey.retired_at.is_(None))
        if for_update:
            query = query.with_for_update()
        return self._db.scalars(query).one_or_none()

    def _require_active(self, alg: str) -> SigningKey:
        found = self._active_row(alg)
        if found is None:
            raise RuntimeError(f"no active {alg} signing key after a concurrent insert")
        return found

    def _new_row(self, alg: Algorithm) -> SigningKey:
        if alg not in ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {alg!r}")
        key = _generate(alg)
        kid = key.thumbprint()
        public = dict(key.as_dict(private=False))
        public.update({"kid": kid, "use": "sig", "alg": alg})
        data_key, wrapped = self._key_ring.new_data_key(_owner(kid))
        pem = key.as_pem(private=True).decode("ascii")
        now = self._clock.now()
        return SigningKey(
            kid=kid,
            alg=alg,
            public_jwk=public,
            kek_id=wrapped.key_id,
            wrapped_key=wrapped.wrapped,
            private_key_sealed=FieldCipher(data_key, _owner(kid)).encrypt(FIELD, pem),
            created_at=now,
            activated_at=now,
        )

    def _private_key(self, row: SigningKey) -> RSAKey | ECKey:
        cached = _parsed.get(row.kid)
        if cached is not None:
            return cached
        if row.kek_id is None or row.wrapped_key is None or row.private_key_sealed is None:
            raise RuntimeError(f"signing key {row.kid} has no private part (retired)")
        owner = _owner(row.kid)
        data_key = self._key_ring.unwrap(WrappedKey(row.kek_id, row.wrapped_key), owner)
        pem = FieldCipher(data_key, owner).decrypt(FIELD, row.private_key_sealed)
        key = _import(row.alg, pem.encode("ascii"))
        with _parsed_lock:  # request threads share the cache
            while len(_parsed) >= _PARSED_LIMIT:
                _parsed.pop(next(iter(_parsed)))
            _parsed[row.kid] = key
        return key
