"""Identity documents: parse what a person typed into a normalised number, or
say exactly which rule it breaks (one error code per rule).

PRC resident identity card numbers (GB 11643) use python-stdnum's ``cn.ric``
for the check character (ISO 7064 MOD 11-2) and the administrative-division
codes, so no hand-kept list of regions lives here. The old 15-digit number is
*refused*, not converted: converting means guessing the century and making up
a check character for a number printed on no card the person holds (first-
generation cards stopped being valid on 1 January 2013), and the providers
cross-check the 18-character number the current card carries.

Residence permits for Hong Kong, Macao and Taiwan residents share the card's
layout and check character, with the fixed address codes 810000/820000/
830000. The other documents are checked for format only.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from stdnum.cn import ric
from stdnum.exceptions import ValidationError as StdnumError

# Separators people type inside a number; anything else foreign is refused.
_SEPARATORS = re.compile(r"[\s\-]")
PERMIT_REGIONS = {"810000": "HK", "820000": "MO", "830000": "TW"}
RIC_LENGTH = 18
OLD_RIC_LENGTH = 15


class DocumentType(StrEnum):
    RESIDENT_ID_CARD = "cn_resident_id_card"
    RESIDENCE_PERMIT = "hk_mo_tw_residence_permit"
    HK_MO_TRAVEL_PERMIT = "hk_mo_mainland_travel_permit"
    TW_TRAVEL_PERMIT = "tw_mainland_travel_permit"
    FOREIGN_PERMANENT_RESIDENCE = "foreign_permanent_residence_card"
    PASSPORT = "passport"


class Rule(StrEnum):
    """Why a number is refused: each rule its own code (and problem slug)."""

    EMPTY = "empty"
    CHARACTERS = "bad-characters"
    LENGTH = "wrong-length"
    OBSOLETE_15_DIGIT = "obsolete-15-digit-number"
    CHECK_CHARACTER = "bad-check-character"
    BIRTH_DATE = "invalid-birth-date"
    FUTURE_BIRTH_DATE = "future-birth-date"
    REGION = "unknown-region"
    WRONG_TYPE = "wrong-document-type"
    FORMAT = "bad-format"


MESSAGES: dict[Rule, str] = {
    Rule.EMPTY: "Enter the document number.",
    Rule.CHARACTERS: "The number contains characters this document never has.",
    Rule.LENGTH: "The number has the wrong number of characters for this document.",
    Rule.OBSOLETE_15_DIGIT: (
        "15-digit identity card numbers are no longer valid; "
        "enter the 18-character number on your current card."
    ),
    Rule.CHECK_CHARACTER: (
        "The last character does not match the rest of the number: check it for a typo."
    ),
    Rule.BIRTH_DATE: "The birth date inside the number is not a real date.",
    Rule.FUTURE_BIRTH_DATE: "The birth date inside the number is in the future.",
    Rule.REGION: "The first six digits are not a known administrative division.",
    Rule.WRONG_TYPE: "This number belongs to another kind of document: choose that one.",
    Rule.FORMAT: "The number does not have this document's format.",
}


class DocumentError(ValueError):
    def __init__(self, rule: Rule) -> None:
        super().__init__(MESSAGES[rule])
        self.rule = rule


@dataclass(frozen=True)
class Document:
    type: DocumentType
    # Upper case, no separators: what the provider checks and the hash covers.
    number: str
    birth_date: date | None = None

    def __repr__(self) -> str:
        # Keeps the number out of tracebacks and log lines.
        return f"Document(type={self.type.value!r}, masked={self.masked()!r})"

    def masked(self) -> str:
        """What may be shown and stored: ``110105**********1X`` for the
        18-character numbers, else the first and the last two characters."""
        keep_start = 6 if len(self.number) == RIC_LENGTH else 1
        hidden = len(self.number) - keep_start - 2
        return self.number[:keep_start] + "*" * hidden + self.number[-2:]

    def age_on(self, today: date) -> int | None:
        if self.birth_date is None:
            return None
        before_birthday = (today.month, today.day) < (self.birth_date.month, self.birth_date.day)
        return today.year - self.birth_date.year - int(before_birthday)


def _clean(raw: str) -> str:
    # NFKC: full-width digits and letters, as Chinese input methods type them.
    number = _SEPARATORS.sub("", unicodedata.normalize("NFKC", raw)).upper()
    if not number:
        raise DocumentError(Rule.EMPTY)
    if not number.isascii() or not number.isalnum():
        raise DocumentError(Rule.CHARACTERS)
    return number


def _birth_date(number: str, today: date) -> date:
    try:
        born = ric.get_birth_date(number)
    except StdnumError:
        raise DocumentError(Rule.BIRTH_DATE) from None
    if born > today:
        raise DocumentError(Rule.FUTURE_BIRTH_DATE)
    return born


def _mod11_2(number: str) -> None:
    """Length, digits, then the ISO 7064 MOD 11-2 check character."""
    if len(number) != RIC_LENGTH:
        raise DocumentError(Rule.LENGTH)
    if not number[:-1].isdigit() or not (number[-1].isdigit() or number[-1] == "X"):
        raise DocumentError(Rule.CHARACTERS)
    if ric.calc_check_digit(number) != number[-1]:
        raise DocumentError(Rule.CHECK_CHARACTER)


def _resident_id_card(number: str, today: date) -> Document:
    if len(number) == OLD_RIC_LENGTH and number.isdigit():
        raise DocumentError(Rule.OBSOLETE_15_DIGIT)
    _mod11_2(number)
    if number[:6] in PERMIT_REGIONS:
        raise DocumentError(Rule.WRONG_TYPE)
    born = _birth_date(number, today)
    try:
        ric.get_birth_place(number)
    except StdnumError:
        raise DocumentError(Rule.REGION) from None
    return Document(DocumentType.RESIDENT_ID_CARD, number, born)


def _residence_permit(number: str, today: date) -> Document:
    _mod11_2(number)
    if number[:6] not in PERMIT_REGIONS:
        # A mainland card's number typed as a permit, or a made-up prefix.
        raise DocumentError(
            Rule.WRONG_TYPE if number[:2] not in {"81", "82", "83"} else Rule.REGION
        )
    return Document(DocumentType.RESIDENCE_PERMIT, number, _birth_date(number, today))


# Format-only documents: the permits' numbers are H/M + 8 digits (Hong Kong,
# Macao; 10 digits on cards issued before 2013) and 8 digits (Taiwan); the
# 2017 foreign permanent residence card is a 3-letter nationality code and 12
# digits (the 2023 card has the resident card's 18-character layout starting
# with 9, checked as such); passports are ICAO 9303 document numbers.
_FORMATS: dict[DocumentType, tuple[re.Pattern[str], tuple[int, ...]]] = {
    DocumentType.HK_MO_TRAVEL_PERMIT: (re.compile(r"[HM]\d{8}(\d{2})?"), (9, 11)),
    DocumentType.TW_TRAVEL_PERMIT: (re.compile(r"\d{8}"), (8,)),
    DocumentType.FOREIGN_PERMANENT_RESIDENCE: (re.compile(r"[A-Z]{3}\d{12}"), (15,)),
    DocumentType.PASSPORT: (re.compile(r"(?=.*\d)[A-Z0-9]{6,9}"), tuple(range(6, 10))),
}


def _foreign_residence(number: str, today: date) -> Document:
    if len(number) == RIC_LENGTH:
        _mod11_2(number)
        if not number.startswith("9"):
            raise DocumentError(Rule.WRONG_TYPE)
        born = _birth_date(number, today)
        return Document(DocumentType.FOREIGN_PERMANENT_RESIDENCE, number, born)
    return _formatted(DocumentType.FOREIGN_PERMANENT_RESIDENCE, number)


def _formatted(kind: DocumentType, number: str) -> Document:
    pattern, lengths = _FORMATS[kind]
    if len(number) not in lengths:
        if len(number) == RIC_LENGTH:
            # An 18-character number is a resident card's or a permit's.
            raise DocumentError(Rule.WRONG_TYPE)
        raise DocumentError(Rule.LENGTH)
    if not pattern.fullmatch(number):
        raise DocumentError(Rule.FORMAT)
    return Document(kind, number)


def parse(kind: DocumentType, raw: str, today: date) -> Document:
    """The document, normalised, or DocumentError naming the broken rule."""
    number = _clean(raw)
    if kind is DocumentType.RESIDENT_ID_CARD:
        return _resident_id_card(number, today)
    if kind is DocumentType.RESIDENCE_PERMIT:
        return _residence_permit(number, today)
    if kind is DocumentType.FOREIGN_PERMANENT_RESIDENCE:
        return _foreign_residence(number, today)
    return _formatted(kind, number)
