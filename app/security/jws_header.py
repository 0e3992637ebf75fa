"""One check on the protected header of a JWS from outside, before joserfc
verifies it.

joserfc walks ``crit`` before it checks its type and before the signature:
``"crit": null`` (or a number, or a list holding anything but strings) makes
it raise TypeError, so an unsigned token could turn a refusal into a 500
(found by fuzzing, tests/test_fuzz_hostile_http.py). RFC 7515 4.1.11: when
present, crit is a non-empty array of header parameter names.
"""

from __future__ import annotations

from collections.abc import Mapping


def check_crit(header: Mapping[str, object]) -> None:
    """Raise ValueError unless ``crit`` is absent or a non-empty list of names."""
    if "crit" not in header:
        return
    crit = header["crit"]
    if not isinstance(crit, list) or not crit or not all(isinstance(n, str) for n in crit):
        raise ValueError("crit must be a non-empty list of header parameter names")
