"""A software WebAuthn authenticator (and the browser around it) for tests.

It builds real attestation objects and assertions with `cryptography` and
CBOR, so py_webauthn verifies them exactly as it would a security key's: ES256,
EdDSA and RS256 keys; "none" or "packed" self attestation; the UP, UV, BE and
BS flags; a signature counter. It answers with the JSON a browser's
PublicKeyCredential.toJSON() gives, and refuses as a browser would: a
credential listed in excludeCredentials raises InvalidStateError, and a
resident key asked of an authenticator without resident-key storage (or a
username-less sign-in with no discoverable credential) raises NotAllowedError."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40
COSE_ALG = {"ES256": -7, "EdDSA": -8, "RS256": -257}


class InvalidStateError(Exception):
    """The DOMException a browser raises when the authenticator already holds
    a credential the options exclude."""


class NotAllowedError(Exception):
    """The DOMException a browser raises when no authenticator can do what was
    asked (here: store a resident key, or offer a discoverable credential)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class KeyPair:
    alg: str
    private: Any

    @classmethod
    def generate(cls, alg: str) -> KeyPair:
        if alg == "ES256":
            return cls(alg, ec.generate_private_key(ec.SECP256R1()))
        if alg == "EdDSA":
            return cls(alg, ed25519.Ed25519PrivateKey.generate())
        if alg == "RS256":
            return cls(alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        raise ValueError(alg)

    def cose(self) -> bytes:
        """The public key as a COSE_Key (RFC 9052/9053)."""
        public = self.private.public_key()
        if self.alg == "ES256":
            numbers = public.public_numbers()
            key = {
                1: 2,  # kty: EC2
                3: -7,
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        elif self.alg == "EdDSA":
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

            key = {1: 1, 3: -8, -1: 6, -2: public.public_bytes(Encoding.Raw, PublicFormat.Raw)}
        else:
            numbers = public.public_numbers()
            n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
            e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
            key = {1: 3, 3: -257, -1: n, -2: e}
        return cbor2.dumps(key)

    def sign(self, data: bytes) -> bytes:
        if self.alg == "ES256":
            return self.private.sign(data, ec.ECDSA(hashes.SHA256()))
        if self.alg == "EdDSA":
            return self.private.sign(data)
        return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())


@dataclass
class StoredCredential:
    credential_id: bytes
    key: KeyPair
    user_handle: bytes
    rp_id: str
    sign_count: int = 0
    # A resident key: offered at a username-less sign-in (empty allowCredentials).
    discoverable: bool = True


@dataclass
class SoftAuthenticator:
    alg: str = "ES256"
    attestation: str = "none"  # none | packed (self attestation)
    aaguid: bytes = field(default_factory=lambda: bytes(16))
    origin: str = "https://localhost"
    user_verifying: bool = True  # UV: the device checked a fingerprint, face or PIN
    backup_eligible: bool = False  # BE: a synced passkey
    backed_up: bool = False  # BS
    counter_step: int = 1  # 0: an authenticator without a signature counter
    resident_keys: bool = True  # False: a security key without resident-key storage
    attachment: str = "platform"  # or "cross-platform" (a roaming security key)
    credentials: list[StoredCredential] = field(default_factory=list)

    # -- navigator.credentials.create() ------------------------------------------

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
        attestation_object: bytes | None = None,
    ) -> dict[str, Any]:
        rp = rp_id or options["rp"]["id"]
        excluded = {from_b64url(c["id"]) for c in options.get("excludeCredentials", [])}
        if excluded & {c.credential_id for c in self.credentials}:
            raise InvalidStateError("the authenticator holds an excluded credential")
        discoverable = self._resident_key(options.get("authenticatorSelection") or {})
        key = KeyPair.generate(self.alg)
        credential_id = os.urandom(32)
        stored = StoredCredential(credential_id, key, from_b64url(options["user"]["id"]), rp)
        stored.discoverable = discoverable
        stored.sign_count = self.counter_step
        client_data = self._client_data(
            "webauthn.create", challenge or options["challenge"], origin
        )
        attested = self.aaguid + struct.pack(">H", len(credential_id)) + credential_id + key.cose()
        auth_data = self._auth_data(rp, AT, stored.sign_count) + attested
        if self.attestation == "packed":
            signature = key.sign(auth_data + hashlib.sha256(client_data).digest())
            statement: dict[str, Any] = {"alg": COSE_ALG[self.alg], "sig": signature}
        else:
            statement = {}
        built = cbor2.dumps({"fmt": self.attestation, "attStmt": statement, "authData": auth_data})
        self.credentials.append(stored)
        # A browser reports credProps only when the options asked for it.
        asked = (options.get("extensions") or {}).get("credProps") is True
        return {
            "id": b64url(credential_id),
            "rawId": b64url(credential_id),
            "type": "public-key",
            "authenticatorAttachment": self.attachment,
            "clientExtensionResults": {"credProps": {"rk": discoverable}} if asked else {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object or built),
                "transports": ["internal", "hybrid"],
                "publicKeyAlgorithm": COSE_ALG[self.alg],
            },
        }

    # -- navigator.credentials.get() ---------------------------------------------

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        sign_count: int | None = None,
        credential: StoredCredential | None = None,
    ) -> dict[str, Any]:
        allowed = {from_b64url(c["id"]) for c in options.get("allowCredentials", [])}
        # Username-less (no allowCredentials): only resident keys can be offered.
        offered = [
            c
            for c in self.credentials
            if (c.credential_id in allowed if allowed else c.discoverable)
        ]
        if credential is None and not offered:
            raise NotAllowedError("no credential on this authenticator can answer")
        chosen = credential or offered[0]
        if sign_count is None:
            chosen.sign_count += self.counter_step
            count = chosen.sign_count
        else:
            count = sign_count
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        auth_data = self._auth_data(rp_id or options["rpId"], 0, count)
        signature = chosen.key.sign(auth_data + hashlib.sha256(client_data).digest())
        return {
            "id": b64url(chosen.credential_id),
            "rawId": b64url(chosen.credential_id),
            "type": "public-key",
            "authenticatorAttachment": self.attachment,
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(chosen.user_handle),
            },
        }

    def answer_again(self, answer: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        """The same credential (id, key, attestation) sent to another registration
        challenge: with "none" attestation nothing signs the client data, so a
        client can replay one credential against several ceremonies."""
        client_data = self._client_data("webauthn.create", options["challenge"], None)
        return {**answer, "response": {**answer["response"], "clientDataJSON": b64url(client_data)}}

    # -- internals -----------------------------------------------------------------

    def _resident_key(self, selection: dict[str, Any]) -> bool:
        """WebAuthn L3 5.4.4: residentKey, else requireResidentKey, decides."""
        wanted = selection.get("residentKey") or (
            "required" if selection.get("requireResidentKey") else "discouraged"
        )
        if wanted == "required" and not self.resident_keys:
            raise NotAllowedError("the authenticator cannot store a resident key")
        return self.resident_keys and wanted in ("required", "preferred")

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        data = {"type": kind, "challenge": challenge, "origin": origin or self.origin}
        return json.dumps({**data, "crossOrigin": False}).encode()

    def _auth_data(self, rp_id: str, extra_flags: int, count: int) -> bytes:
        flags = UP | extra_flags
        flags |= UV if self.user_verifying else 0
        flags |= BE if self.backup_eligible else 0
        flags |= BS if self.backed_up else 0
        rp_hash = hashlib.sha256(rp_id.encode()).digest()
        return rp_hash + bytes([flags]) + struct.pack(">I", count)
