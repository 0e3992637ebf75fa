"""Parsing and normalising what people type as email, phone and full name."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from app.errors import invalid_field

FULL_NAME_MAX = 100
ENCODED_WORD_START = "=?"


@dataclass(frozen=True)
class Phone:
    e164: str
    national: str


def normalise_email(value: str, pointer: str = "#/email") -> str:
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise invalid_field(pointer, f"This is not a valid email address: {exc}") from None
    # RFC 2047 forbids encoded words in an address, yet mail libraries decode
    # them there ("=?x?q?alice?=@example.com" is delivered to alice@...): such
    # an address would name one mailbox to us and another to the mail server.
    if ENCODED_WORD_START in result.local_part:
        raise invalid_field(
            pointer,
            f"An email address may not contain '{ENCODED_WORD_START}' "
            "(it reads as an RFC 2047 encoded word).",
        )
    # Domains are case-insensitive; we also fold the local part, as every large
    # mail provider does, so one person cannot hold two accounts by case alone.
    return result.normalized.lower()


def normalise_phone(value: str, default_region: str, pointer: str = "#/phone") -> Phone:
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        raise invalid_field(pointer, "This is not a phone number.") from None
    if not phonenumbers.is_valid_number(number):
        raise invalid_field(pointer, "This phone number is not valid for its region.")
    return Phone(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        national=str(number.national_number),
    )


def normalise_full_name(value: str, pointer: str = "#/full_name") -> str:
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise invalid_field(pointer, "Enter your full name.")
    if len(name) > FULL_NAME_MAX:
        raise invalid_field(pointer, f"A full name has at most {FULL_NAME_MAX} characters.")
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} for ch in name):
        raise invalid_field(pointer, "The name contains control or unassigned characters.")
    return name


def looks_like_email(identifier: str) -> bool:
    return "@" in identifier
