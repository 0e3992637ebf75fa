"""Per-user data keys and the personal fields sealed under them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.models import User, UserDataKey
from app.security.envelope import DecryptionError, FieldCipher, KeyRing, WrappedKey


@dataclass(frozen=True)
class Profile:
    email: str | None  # None: the account has no email address (yet)
    phone: str
    full_name: str


class PersonalDataVault:
    def __init__(self, db: DbSession, key_ring: KeyRing, clock: Clock) -> None:
        self._db = db
        self._key_ring = key_ring
        self._clock = clock

    def create_key(self, user_id: str) -> FieldCipher:
        data_key, wrapped = self._key_ring.new_data_key(user_id)
        self._db.add(
            UserDataKey(
                user_id=user_id,
                key_id=wrapped.key_id,
                wrapped_key=wrapped.wrapped,
                created_at=self._clock.now(),
            )
        )
        return FieldCipher(data_key, user_id)

    def cipher_for(self, user_id: str) -> FieldCipher:
        row = self._db.get(UserDataKey, user_id)
        if row is None:
            # Crypto-shredded: report it as envelope.DecryptionError documents.
            raise DecryptionError("the user's data key is gone")
        data_key = self._key_ring.unwrap(WrappedKey(row.key_id, row.wrapped_key), user_id)
        return FieldCipher(data_key, user_id)

    def profile(self, user: User) -> Profile:
        cipher = self.cipher_for(user.id)
        return Profile(
            email=(
                cipher.decrypt("email", user.email_encrypted)
                if user.email_encrypted is not None
                else None
            ),
            phone=cipher.decrypt("phone", user.phone_encrypted),
            full_name=cipher.decrypt("full_name", user.full_name_encrypted),
        )
