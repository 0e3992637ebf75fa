"""Identity documents: every rule refuses with its own code; valid numbers of
every kind pass, normalised; a property test over generated numbers."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric

from verification.documents import DocumentError, DocumentType, Rule, parse

TODAY = date(2026, 11, 30)
CARD = DocumentType.RESIDENT_ID_CARD
PERMIT = DocumentType.RESIDENCE_PERMIT


def with_check(first17: str) -> str:
    return first17 + ric.calc_check_digit(first17 + "0")


def refused(kind: DocumentType, number: str) -> Rule:
    with pytest.raises(DocumentError) as caught:
        parse(kind, number, TODAY)
    return caught.value.rule


def test_a_valid_card_number_is_normalised_and_masked():
    document = parse(CARD, " 110105-19491231-002x ", TODAY)
    assert document.number == "11010519491231002X"
    assert document.masked() == "110105**********2X"
    assert document.birth_date == date(1949, 12, 31)
    assert document.age_on(TODAY) == 76
    # Full-width, as Chinese input methods type it.
    assert parse(CARD, "１１０１０５１９４９１２３１００２ｘ", TODAY).number == "11010519491231002X"


@pytest.mark.parametrize(
    ("kind", "number", "rule"),
    [
        (CARD, "", Rule.EMPTY),
        (CARD, "  - ", Rule.EMPTY),
        (CARD, "11010519491231002*", Rule.CHARACTERS),
        (CARD, "1101051949123100２九", Rule.CHARACTERS),
        (CARD, "1101051949123100X2", Rule.CHARACTERS),
        (CARD, "1101051949123100", Rule.LENGTH),
        # The first-generation 15-digit number: refused, never converted.
        (CARD, "110105491231002", Rule.OBSOLETE_15_DIGIT),
        (CARD, "110105194912310021", Rule.CHECK_CHARACTER),
        (CARD, with_check("11010519490231002"), Rule.BIRTH_DATE),
        (CARD, with_check("11010520991231002"), Rule.FUTURE_BIRTH_DATE),
        (CARD, with_check("99010519491231002"), Rule.REGION),
        # A permit's number typed as a mainland card.
        (CARD, "810000199001011230", Rule.WRONG_TYPE),
        (PERMIT, "11010519491231002X", Rule.WRONG_TYPE),
        (PERMIT, with_check("84000019900101123"), Rule.WRONG_TYPE),
        (PERMIT, with_check("81010019900101123"), Rule.REGION),
        (PERMIT, "810000199001011231", Rule.CHECK_CHARACTER),
        (PERMIT, with_check("81000020990101123"), Rule.FUTURE_BIRTH_DATE),
        (DocumentType.HK_MO_TRAVEL_PERMIT, "X12345678", Rule.FORMAT),
        (DocumentType.HK_MO_TRAVEL_PERMIT, "H1234567", Rule.LENGTH),
        (DocumentType.HK_MO_TRAVEL_PERMIT, "11010519491231002X", Rule.WRONG_TYPE),
        (DocumentType.TW_TRAVEL_PERMIT, "1234567A", Rule.FORMAT),
        (DocumentType.FOREIGN_PERMANENT_RESIDENCE, "USA1234567890AB", Rule.FORMAT),
        (DocumentType.FOREIGN_PERMANENT_RESIDENCE, "11010519491231002X", Rule.WRONG_TYPE),
        (DocumentType.PASSPORT, "ABCDEFGH", Rule.FORMAT),
        (DocumentType.PASSPORT, "E123", Rule.LENGTH),
        (DocumentType.PASSPORT, "E1234567.", Rule.CHARACTERS),
    ],
)
def test_each_broken_rule_has_its_own_code(kind, number, rule):
    assert refused(kind, number) is rule


def test_every_rule_has_a_distinct_code_and_message():
    from verification.documents import MESSAGES

    assert set(MESSAGES) == set(Rule)
    assert len(set(MESSAGES.values())) == len(Rule)


@pytest.mark.parametrize(
    ("kind", "number", "normalised"),
    [
        (PERMIT, "810000199001011230", "810000199001011230"),
        (PERMIT, with_check("83000019851224004"), with_check("83000019851224004")),
        (DocumentType.HK_MO_TRAVEL_PERMIT, "h12345678", "H12345678"),
        (DocumentType.HK_MO_TRAVEL_PERMIT, "M1234567890", "M1234567890"),
        (DocumentType.TW_TRAVEL_PERMIT, "12345678", "12345678"),
        (DocumentType.FOREIGN_PERMANENT_RESIDENCE, "usa110079021501", "USA110079021501"),
        (
            DocumentType.FOREIGN_PERMANENT_RESIDENCE,
            with_check("93184019900101001"),
            with_check("93184019900101001"),
        ),
        (DocumentType.PASSPORT, "e12345678", "E12345678"),
    ],
)
def test_other_documents_pass_normalised(kind, number, normalised):
    assert parse(kind, number, TODAY).number == normalised


# -- property: generated numbers --------------------------------------------------

# Divisions valid for every birth year generated below (python-stdnum's table
# dates some codes by the years they existed; these carry no dates).
REGIONS = ["110101", "110102", "110105", "310101", "120101"]
birth_dates = st.dates(min_value=date(1950, 1, 1), max_value=TODAY)


@st.composite
def valid_numbers(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(REGIONS))
    born = draw(birth_dates)
    sequence = draw(st.integers(min_value=0, max_value=999))
    return with_check(f"{region}{born:%Y%m%d}{sequence:03d}")


@settings(max_examples=300, deadline=None)
@given(valid_numbers())
def test_every_valid_number_passes(number):
    assert parse(CARD, number, TODAY).number == number
    assert parse(CARD, number.lower(), TODAY).number == number


@settings(max_examples=300, deadline=None)
@given(valid_numbers(), st.sampled_from("0123456789X"))
def test_every_corrupted_check_character_fails(number, replacement):
    corrupted = number[:-1] + replacement
    if corrupted == number:
        return
    assert refused(CARD, corrupted) is Rule.CHECK_CHARACTER


@settings(max_examples=300, deadline=None)
@given(valid_numbers(), st.integers(min_value=0, max_value=16), st.integers(1, 9))
def test_every_single_digit_corruption_is_refused(number, position, shift):
    # MOD 11-2 catches every single substituted digit, whatever else it breaks.
    digit = str((int(number[position]) + shift) % 10)
    corrupted = number[:position] + digit + number[position + 1 :]
    with pytest.raises(DocumentError):
        parse(CARD, corrupted, TODAY)
