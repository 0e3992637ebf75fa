"""What every page response carries: the headers of the page surface (a
strict CSP with a per-request script nonce) and HTML error pages.

The lead wires these into the per-surface handlers; for now they apply to the
pages' own blueprint (app/pages/views.py).
"""

from __future__ import annotations

import secrets

from flask import Response, g, render_template
from flask_babel import gettext
from werkzeug.exceptions import HTTPException

from app.errors import ServiceError


def csp_nonce() -> str:
    """This request's nonce for <script nonce=...> (same-origin files only)."""
    if "privid_csp_nonce" not in g:
        g.privid_csp_nonce = secrets.token_urlsafe(18)
    nonce: str = g.privid_csp_nonce
    return nonce


def content_security_policy(nonce: str) -> str:
    return (
        "default-src 'none'; "
        f"script-src 'self' 'nonce-{nonce}'; "
        "style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def apply_page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = content_security_policy(csp_nonce())
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    # Same-origin referrers let a page send the visitor back where they came from.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    # The language depends on these two.
    response.vary.update(("Accept-Language", "Cookie"))
    return response


def render_error_page(status: int, title: str, detail: str) -> Response:
    """An error as a page in the site's layout; title and detail are already
    in the visitor's language (see ``standard_error_page``)."""
    body = render_template("error.html", status=status, title=title, detail=detail)
    return Response(body, status=status, mimetype="text/html")


def standard_error_page(status: int) -> Response:
    """The error page for a status, in the visitor's language."""
    title, detail = _standard_texts(status)
    return render_error_page(status, title, detail)


def _standard_texts(status: int) -> tuple[str, str]:
    # gettext with literals, so the extractor finds every message.
    if status == 400:
        return gettext("Bad request"), gettext("The page could not understand what was sent.")
    if status == 403:
        return gettext("Not allowed"), gettext("You cannot see or do this.")
    if status == 404:
        return gettext("Page not found"), gettext("There is nothing at this address.")
    if status == 405:
        return gettext("Not allowed"), gettext("This address does not accept that kind of request.")
    if status == 429:
        return gettext("Too many requests"), gettext(
            "Too many requests of this kind. Wait a while and try again."
        )
    if 400 <= status < 500:
        return gettext("Request not completed"), gettext(
            "This request could not be completed. Check what you entered and try again."
        )
    return gettext("Something went wrong"), gettext(
        "Something went wrong on our side. Please try again later."
    )


def page_http_error(error: HTTPException) -> Response:
    return standard_error_page(error.code or 500)


def page_service_error(error: ServiceError) -> Response:
    # A service's own title and detail are English API prose: a page shows the
    # translated text for the status instead.
    g.keep_changes = error.keep_changes
    return standard_error_page(error.status)
