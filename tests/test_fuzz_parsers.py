"""Property-based fuzzing of the parsers that take hostile text: email and
phone normalisation, full names, identity document numbers and DPoP proofs.

The property for each: any input either parses to a valid value or raises the
parser's own documented error (ServiceError, DocumentError, DpopInvalid),
never another exception; where a value is normalised, normalising it again
changes nothing; and a valid value altered in one place is refused. Example
counts come from the hypothesis profile (tests/conftest.py: "ci" by default,
PRIVID_HYPOTHESIS_PROFILE=long for a longer run).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import assume, example, given
from hypothesis import strategies as st
from joserfc import jws
from joserfc.util import urlsafe_b64encode
from stdnum.cn import ric

from app.errors import ServiceError
from app.security.dpop import DpopInvalid, DpopVerifier, access_token_hash
from app.services.identifiers import normalise_email, normalise_full_name, normalise_phone
from tests.dpop_client import DpopKey
from verification.documents import Document, DocumentError, DocumentType, parse

# Text as typed, pasted or forged: any code point, plus the characters that
# matter to these parsers more often than chance would give them.
HOSTILE_TEXT = st.one_of(
    st.text(max_size=80),
    st.text(
        alphabet=st.sampled_from("0123456789Xx+-() @.=?\x00\u3000０１２３ＸｘıſK\u200b"),
        max_size=40,
    ),
)


# -- email ---------------------------------------------------------------------------


@given(HOSTILE_TEXT | st.emails())
def test_an_email_normalises_or_is_refused_and_normalising_again_changes_nothing(raw: str):
    try:
        email = normalise_email(raw)
    except ServiceError as refused:
        assert refused.status == 422
        return
    assert email == email.lower() and "@" in email
    assert normalise_email(email) == email


# -- phone ---------------------------------------------------------------------------


PHONES = st.one_of(
    HOSTILE_TEXT,
    st.from_regex(r"\+?(86)?1[3-9][0-9]{9}", fullmatch=True),
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
)


@given(PHONES, st.sampled_from(["CN", "HK", "US", "ZZ"]))
def test_a_phone_normalises_or_is_refused_and_its_e164_form_is_stable(raw: str, region: str):
    try:
        phone = normalise_phone(raw, region)
    except ServiceError as refused:
        assert refused.status == 422
        return
    assert phone.e164.startswith("+") and phone.e164[1:].isdigit()
    # The stored form reads back as itself, whatever the default region.
    assert normalise_phone(phone.e164, region) == phone
    assert normalise_phone(phone.e164, "CN") == phone


# -- full name -----------------------------------------------------------------------


@given(HOSTILE_TEXT)
def test_a_full_name_normalises_or_is_refused_and_normalising_again_changes_nothing(raw: str):
    try:
        name = normalise_full_name(raw)
    except ServiceError as refused:
        assert refused.status == 422
        return
    assert normalise_full_name(name) == name


# -- identity document numbers -------------------------------------------------------

TODAY = date(2026, 11, 30)


@given(st.sampled_from(list(DocumentType)), HOSTILE_TEXT)
def test_a_document_number_parses_or_names_the_rule_it_breaks(kind: DocumentType, raw: str):
    try:
        document = parse(kind, raw, TODAY)
    except DocumentError as refused:
        assert refused.rule  # one documented rule per refusal
        return
    assert isinstance(document, Document)
    assert document.number.isascii() and document.number.isalnum()
    # The normalised number is what the provider sees: it parses as itself.
    assert parse(kind, document.number, TODAY) == document


@st.composite
def resident_card_numbers(draw: st.DrawFn) -> str:
    # Divisions python-stdnum dates to no years, so valid for any birth date.
    region = draw(st.sampled_from(["110101", "110102", "110105", "310101", "120101"]))
    born = draw(st.dates(min_value=date(1950, 1, 1), max_value=TODAY))
    body = f"{region}{born:%Y%m%d}{draw(st.integers(0, 999)):03d}"
    return body + ric.calc_check_digit(body + "?")  # it reads all but the last character


@given(resident_card_numbers(), st.sampled_from("0123456789X"), st.sampled_from(["", " ", "-"]))
def test_a_valid_card_number_typed_with_separators_and_another_check_character_is_refused(
    number: str, check: str, separator: str
):
    assert parse(DocumentType.RESIDENT_ID_CARD, number, TODAY).number == number
    assume(check != number[-1])
    typed = number[:6] + separator + number[6:14] + separator + number[14:17] + check
    with pytest.raises(DocumentError) as refused:
        parse(DocumentType.RESIDENT_ID_CARD, typed, TODAY)
    assert refused.value.rule == "bad-check-character"


# -- DPoP proofs ---------------------------------------------------------------------

URL = "https://localhost/api/v1/login/password"
VERIFIER = DpopVerifier(max_age_seconds=60, future_skew_seconds=5)
KEY = DpopKey("ES256")


def _verify(proof: str, **kwargs: Any) -> Any:
    now = datetime.now(UTC)
    return VERIFIER.verify(proof, method="POST", url=URL, now=now, **kwargs)


@given(
    st.one_of(
        st.text(max_size=200), st.from_regex(r"[A-Za-z0-9_-]{0,60}(\.[A-Za-z0-9_-]{0,60}){2}")
    )
)
@example("e30.e30.")
@example("eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.AA")
def test_any_text_as_a_dpop_proof_is_refused_with_dpop_invalid(proof: str):
    with pytest.raises(DpopInvalid):
        _verify(proof)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(
    st.dictionaries(st.sampled_from(["htm", "htu", "iat", "jti", "ath", "nonce", "x"]), JSON_VALUES)
)
def test_a_signed_proof_with_any_claims_verifies_or_is_refused(claims: dict[str, Any]):
    """The signature is good, so the claims themselves are what is parsed."""
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": KEY.key.as_dict(private=False)}
    proof = jws.serialize_compact(header, json.dumps(claims), KEY.key, algorithms=["ES256"])
    try:
        _verify(proof)
    except DpopInvalid:
        return
    assert claims.get("htm") == "POST"  # only a proof naming this request gets through


ALTERATIONS: dict[str, Any] = {
    "htm": st.sampled_from(["GET", "post", "PUT", "", None, 1]),
    "htu": st.sampled_from(
        [URL + "/x", "https://localhost:8443/api/v1/login/password", "http://localhost/api/v1/login/password",
         "https://evil.example/api/v1/login/password", "", None, ["x"]]
    ),
    "iat": st.one_of(
        st.integers(min_value=61, max_value=10**9).map(lambda d: int(time.time()) - d),
        st.integers(min_value=10, max_value=10**9).map(lambda d: int(time.time()) + d),
        st.sampled_from(["now", None, True, float("nan")]),
    ),
    "jti": st.sampled_from(["", "short", "x" * 257, None, 12345678, ["a" * 10]]),
    "ath": st.text(max_size=50),
}  # fmt: skip


@given(st.sampled_from(sorted(ALTERATIONS)), st.data())
def test_a_dpop_proof_with_any_single_claim_altered_is_refused(claim: str, data: st.DataObject):
    token = "an-access-token"
    good = {"htm": "POST", "htu": URL, "iat": int(time.time()), "jti": "a-unique-jti-1234",
            "ath": access_token_hash(token)}  # fmt: skip
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": KEY.key.as_dict(private=False)}
    proof = jws.serialize_compact(header, json.dumps(good), KEY.key, algorithms=["ES256"])
    assert _verify(proof, access_token=token).jti == good["jti"]  # the unaltered one passes
    value = data.draw(ALTERATIONS[claim], label=claim)
    assume(value != good[claim])
    altered = {**good, claim: value}
    proof = jws.serialize_compact(header, json.dumps(altered), KEY.key, algorithms=["ES256"])
    with pytest.raises(DpopInvalid):
        _verify(proof, access_token=token)


@given(
    st.sampled_from(["typ", "alg", "jwk", "crit"]),
    st.one_of(JSON_VALUES, st.sampled_from(["jwt", "none", "HS256", "RS256"])),
)
def test_a_dpop_proof_with_its_header_altered_is_refused(member: str, value: Any):
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": KEY.key.as_dict(private=False)}
    assume(header.get(member) != value)
    # A crit naming members the header has is sound, and harmless here.
    names = value if isinstance(value, list) and all(isinstance(v, str) for v in value) else []
    assume(not (member == "crit" and names and set(names) <= set(header)))
    claims = {"htm": "POST", "htu": URL, "iat": int(time.time()), "jti": "a-unique-jti-1234"}
    proof = _signed_as_is({**header, member: value}, json.dumps(claims).encode())
    with pytest.raises(DpopInvalid):
        _verify(proof)


def _signed_as_is(header: dict[str, Any], payload: bytes) -> str:
    """A compact JWS whose protected header says anything (joserfc would not
    sign most of these), ES256-signed over exactly those bytes by KEY."""
    signing_input = (
        urlsafe_b64encode(json.dumps(header).encode()) + b"." + urlsafe_b64encode(payload)
    )
    der = KEY.key.private_key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    signature = urlsafe_b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    return (signing_input + b"." + signature).decode()


def test_regression_an_ath_claim_with_non_ascii_text_is_refused_not_a_type_error():
    """Found by the property above (minimal example ath="\\x80"):
    hmac.compare_digest raised TypeError on a non-ASCII str, a 500 at the API."""
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": KEY.key.as_dict(private=False)}
    claims = {"htm": "POST", "htu": URL, "iat": int(time.time()), "jti": "a-unique-jti-1234"}
    proof = jws.serialize_compact(
        header, json.dumps({**claims, "ath": "\x80"}), KEY.key, algorithms=["ES256"]
    )
    with pytest.raises(DpopInvalid, match="ath"):
        _verify(proof, access_token="an-access-token")
