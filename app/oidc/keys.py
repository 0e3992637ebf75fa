"""The OpenID provider's signing keys: one signing key per algorithm (RS256,
the default, and ES256), created on first use. A rotation announces the new
key: it is published at once and signs only after ``oidc_key_cache_seconds``,
the longest any worker keeps its copy of the keys, so no relying party meets
a kid the JWKS does not list yet; the old key signs until then, then its
private half is erased and its public half stays in the JWKS until the
longest-lived token it may have signed has expired.

Every worker reads the keys from its copy (one query per worker per cache
period, not one per token or JWKS request)."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import event, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.db import affected_rows
from app.json_object import json_object
from app.oidc.key_models import SigningKey
from app.security.envelope import FieldCipher, KeyRing, WrappedKey
from app.security.jws_header import check_crit
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


@dataclass(frozen=True)
class KeyView:
    """A signing key as a worker keeps it between reads (no database session)."""

    kid: str
    alg: str
    public_jwk: Mapping[str, Any]
    activated_at: datetime
    retired_at: datetime | None
    published_until: datetime | None
    kek_id: str | None
    wrapped_key: bytes | None
    private_key_sealed: bytes | None

    @classmethod
    def of(cls, row: SigningKey) -> KeyView:
        return cls(
            row.kid,
            row.alg,
            dict(row.public_jwk),
            row.activated_at,
            row.retired_at,
            row.published_until,
            row.kek_id,
            row.wrapped_key,
            row.private_key_sealed,
        )

    def signs_at(self, now: datetime) -> bool:
        return self.activated_at <= now and (self.retired_at is None or self.retired_at > now)

    def published_at(self, now: datetime) -> bool:
        return self.retired_at is None or (
            self.published_until is not None and self.published_until > now
        )


@dataclass(frozen=True)
class _Copy:
    keys: tuple[KeyView, ...]
    read_at: datetime


CACHE = "oidc.signing_keys"


class SigningKeys:
    def __init__(
        self,
        db: DbSession,
        clock: Clock,
        key_ring: KeyRing,
        publish_for: timedelta,
        audit: AuditTrail,
        cache_for: timedelta = timedelta(0),
        cache: dict[str, Any] | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._key_ring = key_ring
        self._publish_for = publish_for
        self._audit = audit
        self._cache_for = cache_for
        self._cache: dict[str, Any] = {} if cache is None else cache

    @classmethod
    def of(cls, svc: Services) -> SigningKeys:
        rt = svc.runtime
        s = rt.settings
        publish_for = timedelta(seconds=s.oidc_key_publish_seconds)
        cache_for = timedelta(seconds=s.oidc_key_cache_seconds)
        return cls(svc.db, rt.clock, rt.key_ring, publish_for, svc.audit, cache_for, rt.caches)

    # -- keys --------------------------------------------------------------------

    def active(self, alg: Algorithm = DEFAULT_ALGORITHM) -> KeyView:
        """The key that signs with ``alg`` now; the first one is made here."""
        now = self._clock.now()
        found = self._signing(self._copy().keys, alg, now)
        if found is None:
            # Only the first key of an algorithm can be missing; look again
            # past this worker's copy before making it.
            found = self._signing(self._copy(fresh=True).keys, alg, now)
        if found is not None:
            return found
        made = self._new_row(alg, activated_at=now)
        try:
            with self._db.begin_nested():
                self._db.add(made)
                self._db.flush()
        except IntegrityError:
            # Another worker made the first key in the meantime and has
            # committed it (PostgreSQL made this insert wait for that): use it,
            # and drop the copy read before it existed, or this process would
            # publish a JWKS without it until the copy expires.
            self._forget_copy()
            return KeyView.of(self._require_active(alg))
        self._audit.record("oidc.signing_key_created", kid=made.kid, alg=alg)
        self._forget_copy_at_commit()
        return KeyView.of(made)

    def rotate(self, alg: Algorithm = DEFAULT_ALGORITHM, *, at_once: bool = False) -> Rotation:
        """A new key for ``alg``, published now and signing once every worker
        has seen it (``at_once``: signing now, for a key believed leaked; a
        worker may still sign with the old one until its copy expires). The
        old key signs until the new one takes over, then stays published."""
        made = self._new_row(alg)  # before taking the lock: generating RSA is slow
        now = self._clock.now()
        retired = self._active_row(alg, for_update=True)
        # With no key before it, nothing signs until this one does: at once.
        takes_over = now if at_once or retired is None else now + self._cache_for
        made.activated_at = takes_over
        if retired is not None:
            retired.retired_at = takes_over
            # At once, a worker whose copy predates the rotation may sign with
            # the old key for one more cache period.
            last_signature = takes_over + (self._cache_for if at_once else timedelta(0))
            retired.published_until = last_signature + self._publish_for
            # Retired before the insert: the one-active index sees it gone.
            self._db.flush()
        try:
            with self._db.begin_nested():
                self._db.add(made)
                self._db.flush()
        except IntegrityError:
            raise RotationRaced(alg) from None
        self._erase_retired(now)
        self._audit.record(
            "oidc.signing_key_rotated",
            kid=made.kid,
            alg=alg,
            retired_kid=retired.kid if retired else None,
            takes_over=takes_over.isoformat(),
        )
        self._forget_copy_at_commit()
        return Rotation(made, retired)

    def published(self) -> list[KeyView]:
        """Signing and announced keys, and retired ones until their window
        ends; newest first."""
        return self._published(self._copy().keys)

    def jwks(self) -> list[dict[str, Any]]:
        return [dict(key.public_jwk) for key in self.published()]

    # -- tokens ------------------------------------------------------------------

    def sign(
        self, claims: Mapping[str, Any], alg: Algorithm = DEFAULT_ALGORITHM, typ: str = "JWT"
    ) -> str:
        """A compact JWS over ``claims`` by the active key, naming it by kid."""
        key = self.active(alg)
        payload = json.dumps(dict(claims), separators=(",", ":"), ensure_ascii=False)
        header = {"alg": alg, "kid": key.kid, "typ": typ}
        return jws.serialize_compact(header, payload.encode("utf-8"), self._private_key(key))

    def verify(self, token: str, algorithms: tuple[Algorithm, ...] = ALGORITHMS) -> dict[str, Any]:
        """The claims of a token signed by a published key (its kid says which).
        Only the signature: expiry, audience and the rest are the caller's."""
        try:
            header = jws.extract_compact(token.encode("ascii")).protected
            check_crit(header)
        except (JoseError, ValueError, UnicodeError):
            raise SignatureInvalid("not a compact JWS") from None
        kid = header.get("kid")
        row = self._published_key(kid)
        if row is None or row.alg not in algorithms or header.get("alg") != row.alg:
            raise SignatureInvalid("no published key signs that way under that kid")
        try:
            keys = KeySet.import_key_set({"keys": [dict(row.public_jwk)]})
            found = jws.deserialize_compact(token, keys, algorithms=[row.alg])
        except (JoseError, ValueError) as exc:
            raise SignatureInvalid(str(exc)) from None
        claims = json_object(found.payload)
        if claims is None:
            raise SignatureInvalid("the payload is not a JSON object")
        return claims

    # -- this worker's copy ------------------------------------------------------

    def _copy(self, *, fresh: bool = False) -> _Copy:
        now = self._clock.now()
        kept: _Copy | None = self._cache.get(CACHE)
        if not fresh and kept is not None and timedelta(0) <= now - kept.read_at < self._cache_for:
            return kept
        rows = self._db.scalars(
            select(SigningKey).where(
                or_(SigningKey.retired_at.is_(None), SigningKey.published_until > now)
            )
        )
        keys = tuple(KeyView.of(row) for row in rows)
        ended = [k for k in keys if not self._still_signs(k, now)]
        if any(k.private_key_sealed is not None for k in ended):
            # A key's turn ended since the last look: the first worker to see it erases it.
            self._erase_retired(now)
        with _parsed_lock:
            for key in ended:
                _parsed.pop(key.kid, None)
        copy = _Copy(keys, now)
        self._cache[CACHE] = copy
        return copy

    def _forget_copy(self) -> None:
        self._cache.pop(CACHE, None)

    def _forget_copy_at_commit(self) -> None:
        """After a change to the keys: this unit of work reads them anew at
        once, and so does everyone in this process once the change commits (a
        copy another thread read in between lacks it)."""
        self._forget_copy()
        event.listen(self._db, "after_commit", lambda _session: self._forget_copy(), once=True)

    @staticmethod
    def _still_signs(key: KeyView, now: datetime) -> bool:
        return key.retired_at is None or key.retired_at > now

    @staticmethod
    def _signing(keys: tuple[KeyView, ...], alg: str, now: datetime) -> KeyView | None:
        candidates = [k for k in keys if k.alg == alg and k.signs_at(now)]
        return max(candidates, key=lambda k: k.activated_at, default=None)

    def _published(self, keys: tuple[KeyView, ...]) -> list[KeyView]:
        now = self._clock.now()
        shown = [k for k in keys if k.published_at(now)]
        shown.sort(key=lambda k: k.kid)
        shown.sort(key=lambda k: k.activated_at, reverse=True)
        return shown

    def _published_key(self, kid: object) -> KeyView | None:
        if not isinstance(kid, str):
            return None
        for fresh in (False, True):
            # A kid this worker has not seen yet may be a key made since its
            # last look: look once more before refusing.
            keys = self._published(self._copy(fresh=fresh).keys)
            found = next((k for k in keys if k.kid == kid), None)
            if found is not None:
                return found
        return None

    def _erase_retired(self, now: datetime) -> int:
        erased = self._db.execute(
            update(SigningKey)
            .where(SigningKey.retired_at <= now, SigningKey.private_key_sealed.is_not(None))
            .values(kek_id=None, wrapped_key=None, private_key_sealed=None)
            .execution_options(synchronize_session="fetch")
        )
        return affected_rows(erased)

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

    def _new_row(self, alg: Algorithm, *, activated_at: datetime | None = None) -> SigningKey:
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
            activated_at=activated_at or now,
        )

    def _private_key(self, row: KeyView) -> RSAKey | ECKey:
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
