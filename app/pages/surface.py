"""The pages' surface: what every page response carries (a strict CSP with
a per-request script nonce) and how errors reach a person: a sign-in, step-up
or consent step they are sent to, or an HTML error page in their language."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from urllib.parse import urlencode, urlsplit

from flask import g, redirect, render_template, request
from flask_babel import gettext
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from app.capabilities import form_targets as capability_form_targets
from app.http.surfaces import Problem, Surface


def csp_nonce() -> str:
    """This request's nonce for <script nonce=...> (same-origin files only)."""
    if "privid_csp_nonce" not in g:
        g.privid_csp_nonce = secrets.token_urlsafe(18)
    nonce: str = g.privid_csp_nonce
    return nonce


def content_security_policy(nonce: str, form_origins: Iterable[str] = ()) -> str:
    form_sources = " ".join(["'self'", *form_origins])
    return (
        "default-src 'none'; "
        f"script-src 'self' 'nonce-{nonce}'; "
        "style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        f"form-action {form_sources}; frame-ancestors 'none'; base-uri 'none'"
    )


# An origin as a CSP source: scheme, host and port, nothing that could end the directive.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def allow_form_target(url: str) -> None:
    """This page's form ends, through a redirect, at ``url`` (a client's
    registered redirect URI): browsers check form-action on every hop, so
    its origin joins 'self' there."""
    g.setdefault("privid_form_targets", set()).add(url)


def _form_origins() -> list[str]:
    targets = set(g.get("privid_form_targets", ()))
    try:
        next_path = request.values.get("next")
    except HTTPException:  # a body too large or malformed to read: no form
        next_path = None
    if next_path:
        targets.update(capability_form_targets(next_path))
    origins = set()
    for target in targets:
        parts = urlsplit(target)
        origin = f"{parts.scheme}://{parts.netloc}"
        if _ORIGIN.fullmatch(origin):
            origins.add(origin)
    return sorted(origins)


def apply_page_headers(response: Response) -> None:
    response.headers["Content-Security-Policy"] = content_security_policy(
        csp_nonce(), _form_origins()
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    # Same-origin referrers let a page send the visitor back where they came from.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    # The language depends on these two.
    response.vary.update(("Accept-Language", "Cookie"))


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


def _back_here() -> str:
    """Where to return after a sign-in or step-up: this page (a form posts to
    the page that shows it)."""
    return request.full_path if request.query_string else request.path


def render_problem(problem: Problem) -> Response:
    """Errors the gate raises send the person where they can fix them; the
    rest become an error page. A service's own title and detail are English
    API prose: the page shows the translated text for the status instead."""
    if problem.slug == "authentication-required":
        return redirect(f"/signin?{urlencode({'next': _back_here()})}", code=303)
    if problem.slug == "insufficient-user-authentication":
        return step_up_redirect(problem.headers, _back_here())
    if problem.slug == "consent-required":
        return redirect(f"/consent?{urlencode({'next': _back_here()})}", code=303)
    if problem.slug == "csrf-failed":
        return render_error_page(
            403,
            gettext("This form has expired"),
            gettext("Reload the page and send the form again."),
        )
    return standard_error_page(problem.status)


def step_up_redirect(headers: Mapping[str, str], next_path: str) -> Response:
    """To the step-up page, at the level the RFC 9470 challenge asks for, then
    back to ``next_path`` (a view whose own address takes only posts names
    the page to come back to)."""
    acr = _quoted(headers.get("WWW-Authenticate", ""), "acr_values")
    query = {"next": next_path, **({"acr": acr} if acr else {})}
    return redirect(f"/step-up?{urlencode(query)}", code=303)


def _quoted(challenge: str, name: str) -> str | None:
    found = re.search(rf'{name}="([^"]*)"', challenge)
    return found.group(1) if found else None


def _wants_html() -> bool:
    """An address no blueprint owns: a page if a browser asked for one."""
    if request.path.startswith(("/api/", "/.well-known/")):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


PAGES = Surface("pages", render_problem, apply_page_headers, claims=_wants_html)
