"""Finding accounts by what people type, through blind indexes only."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.models import User
from app.security.blind_index import BlindIndex
from app.services.identifiers import (
    Phone,
    looks_like_email,
    normalise_email,
    normalise_phone,
)

EMAIL = "email"
PHONE = "phone"


@dataclass(frozen=True)
class Identifier:
    """An email or phone number as typed, normalised, with its blind index."""

    kind: str  # EMAIL | PHONE
    value: str  # normalised email, or E.164 phone
    index: str
    phone: Phone | None = None


class Directory:
    def __init__(self, db: DbSession, blind_index: BlindIndex, phone_region: str) -> None:
        self._db, self._blind_index, self._region = db, blind_index, phone_region

    def email(self, raw: str, pointer: str = "#/email") -> Identifier:
        value = normalise_email(raw, pointer)
        return Identifier(EMAIL, value, self._blind_index(EMAIL, value))

    def phone(self, raw: str, pointer: str = "#/phone") -> Identifier:
        phone = normalise_phone(raw, self._region, pointer)
        return Identifier(PHONE, phone.e164, self._blind_index(PHONE, phone.e164), phone)

    def identifier(self, raw: str, pointer: str = "#/identifier") -> Identifier:
        return self.email(raw, pointer) if looks_like_email(raw) else self.phone(raw, pointer)

    def find(self, identifier: Identifier) -> User | None:
        return self.find_by_index(identifier.kind, identifier.index)

    def find_by_index(self, kind: str, index: str) -> User | None:
        """The account whose email (``kind`` EMAIL) or phone has this blind index."""
        column = User.email_index if kind == EMAIL else User.phone_index
        return self._db.execute(select(User).where(column == index)).scalar_one_or_none()
