"""The one place log text is redacted: emails, phone numbers (CN mobiles and
E.164), bearer/DPoP/Basic credentials, JWTs, opaque tokens and full IP
addresses become placeholders. A backstop: the code does not log these in the
first place; this catches what slips through (a library's message, an
exception's text)."""

from __future__ import annotations

import ipaddress
import re

_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_CREDENTIAL = re.compile(r"(?i)\b(bearer|dpop|basic)(\s+)[A-Za-z0-9._~+/=-]+")
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
# E.164 (+ and 7 to 15 digits, spaces or dashes allowed between them), and a
# mainland mobile number written without its country code.
_E164 = re.compile(r"\+[1-9](?:[ -]?\d){6,14}(?!\d)")
_CN_MOBILE = re.compile(r"(?<!\d)(?:86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])")
# A run of 20+ token characters mixing upper case, lower case and digits (a
# random token), or 40+ hex digits (a hex secret or digest). Words, ids made of
# lower-case hex (a 32-digit request id, a UUID) and numbers stay readable.
_OPAQUE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])")
_HEX = frozenset("0123456789abcdefABCDEF")


def _ip(match: re.Match[str]) -> str:
    text = match.group(0)
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    return "<ip>"


def _opaque(match: re.Match[str]) -> str:
    text = match.group(0)
    mixed = (
        any(c.isupper() for c in text)
        and any(c.islower() for c in text)
        and any(c.isdigit() for c in text)
    )
    if mixed or (len(text) >= 40 and set(text) <= _HEX):
        return "<token>"
    return text


def redact(text: str) -> str:
    """``text`` with personal data and credentials replaced by placeholders.
    (Each pattern runs only when the character it needs is there: cheap for
    the common line that holds none.)"""
    if "eyJ" in text:
        text = _JWT.sub("<jwt>", text)
    if " " in text:
        text = _CREDENTIAL.sub(r"\1\2<token>", text)
    if "@" in text:
        text = _EMAIL.sub("<email>", text)
    if "." in text:
        text = _IPV4.sub(_ip, text)
    if "::" in text or text.count(":") >= 3:
        text = _IPV6.sub(_ip, text)
    if "+" in text:
        text = _E164.sub("<phone>", text)
    text = _CN_MOBILE.sub("<phone>", text)
    return _OPAQUE.sub(_opaque, text)
