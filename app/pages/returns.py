"""Where a page may send a person after signing in, stepping up or consenting.

Every ``next`` a page receives goes through ``allowed_return_path``: a
same-site path under one of the pages' own areas, else the account page. The
check is an allow-list of plain paths, not a blocklist of tricks: anything a
browser could read as another origin (``//host``, ``/\\host``, a scheme),
percent-encoded path characters (``%2f``, ``%5c``, ``%2e``), dot segments and
control or non-ASCII characters are refused rather than interpreted."""

from __future__ import annotations

import re

DEFAULT_RETURN = "/account"
# The areas a person returns to. /signin and /signup are not among them (a
# sign-in that returns to a sign-in is a loop); /oauth/authorize is the
# authorisation endpoint a client sends people through.
RETURN_PREFIXES = ("/account", "/privacy", "/policies", "/consent", "/oauth/authorize")
MAX_LENGTH = 2048
# One path segment: RFC 3986 pchar without percent-encoding (our own paths
# never need it, and encoded slashes or dots are how tricks hide).
_SEGMENT = r"[A-Za-z0-9\-_~!$&'()*+,;=:@.]+"
_PATH = re.compile(rf"(?:/{_SEGMENT})+")
# A query: visible ASCII except '#' and '\'; encoded values are fine there
# (an OAuth request carries its redirect_uri encoded).
_QUERY = re.compile(r"[!-\"$-\[\]-~]*")


def allowed_return_path(next: str | None) -> str:
    """``next`` if it is a plain path (with an optional query) under one of
    ``RETURN_PREFIXES``; otherwise ``DEFAULT_RETURN``."""
    path = _plain_path(next)
    if path is None or not any(
        path == prefix or path.startswith(prefix + "/") for prefix in RETURN_PREFIXES
    ):
        return DEFAULT_RETURN
    return str(next)


def same_site_page(next: str | None) -> str:
    """For the language switch, which only shows the page again: any plain
    path of this site (a sign-in page included), else the home page."""
    return str(next) if _plain_path(next) is not None or next == "/" else "/"


def _plain_path(next: str | None) -> str | None:
    """The path part of ``next`` if ``next`` is a plain same-site path with an
    optional query, else None."""
    if not next or len(next) > MAX_LENGTH:
        return None
    path, separator, query = next.partition("?")
    if not _PATH.fullmatch(path) or (separator and not _QUERY.fullmatch(query)):
        return None
    if any(segment in {".", ".."} for segment in path.split("/")):
        return None
    return path
