"""Envelope encryption of personal data fields (AES-256-GCM).

Each user has a data key; it is stored only wrapped by a key-encryption key
(KEK) from settings, tagged with the KEK's id so KEKs can rotate. Destroying the
wrapped data key makes every field encrypted under it unreadable
(crypto-shredding), wherever copies of the ciphertext live.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12  # 96-bit nonces, as NIST SP 800-38D recommends for GCM
DATA_KEY_BYTES = 32  # AES-256
FORMAT_V1 = b"\x01"


class DecryptionError(Exception):
    """Ciphertext could not be opened: wrong key, tampered data, or shredded key."""


@dataclass(frozen=True)
class WrappedKey:
    key_id: str
    wrapped: bytes


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_V1 + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if not sealed.startswith(FORMAT_V1) or len(sealed) < 1 + NONCE_BYTES + 16:
        raise DecryptionError("unknown ciphertext format")
    nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except InvalidTag as exc:
        raise DecryptionError("ciphertext does not authenticate") from exc


class KeyRing:
    """Key-encryption keys by id; new data keys are wrapped with the active one."""

    def __init__(self, keys: dict[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            raise ValueError(f"active key id {active_key_id!r} is not in the key ring")
        self._keys = dict(keys)
        self.active_key_id = active_key_id

    def new_data_key(self, owner: str) -> tuple[bytes, WrappedKey]:
        data_key = AESGCM.generate_key(bit_length=DATA_KEY_BYTES * 8)
        return data_key, self.wrap(data_key, owner)

    def wrap(self, data_key: bytes, owner: str) -> WrappedKey:
        kek = self._keys[self.active_key_id]
        return WrappedKey(self.active_key_id, _seal(kek, data_key, b"dek:" + owner.encode()))

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys

    def unwrap(self, wrapped: WrappedKey, owner: str) -> bytes:
        kek = self._keys.get(wrapped.key_id)
        if kek is None:
            raise DecryptionError(f"key-encryption key {wrapped.key_id!r} is not configured")
        return _open(kek, wrapped.wrapped, b"dek:" + owner.encode())


class FieldCipher:
    """Encrypts one owner's fields; the field name is bound in as associated data."""

    def __init__(self, data_key: bytes, owner: str) -> None:
        self._key = data_key
        self._owner = owner.encode()

    def _aad(self, field: str) -> bytes:
        return self._owner + b"|" + field.encode()

    def encrypt(self, field: str, value: str) -> bytes:
        return _seal(self._key, value.encode("utf-8"), self._aad(field))

    def decrypt(self, field: str, sealed: bytes) -> str:
        return _open(self._key, sealed, self._aad(field)).decode("utf-8")
