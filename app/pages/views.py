"""The pages' own views: the language switch, the policy archive, and ``/``.

The archive reads the same PolicyService the JSON API's /api/v1/policies uses.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from flask import (
    Blueprint,
    abort,
    has_request_context,
    redirect,
    render_template,
    request,
)
from flask.typing import ResponseReturnValue

from app.http.access import public
from app.http.cookies import set_browser_cookie
from app.http.gate import csrf_token, optional_caller
from app.http.scope import runtime, services
from app.models import PolicyVersion
from app.pages.i18n import LANG_COOKIE, LANG_COOKIE_MAX_AGE, LANGUAGES, html_lang
from app.pages.returns import same_site_page
from app.pages.surface import csp_nonce

bp = Blueprint(
    "pages",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)


@bp.app_context_processor
def _page_globals() -> dict[str, object]:
    if not has_request_context():
        return {}
    # The language links send the visitor back to the page they are on.
    here = request.full_path if request.query_string else request.path
    # The same nonce goes into the CSP header (apply_page_headers).
    return {
        "csp_nonce": csp_nonce(),
        "here": here,
        "csrf_token": csrf_token,
        "signed_in_person": lambda: optional_caller() is not None,
    }


@bp.get("/")
@public()
def home() -> ResponseReturnValue:
    return redirect("/account", code=303)


@bp.get("/lang/<lang>")
@public()
def switch_language(lang: str) -> ResponseReturnValue:
    if lang not in LANGUAGES:
        abort(404)
    response = redirect(same_site_page(request.args.get("next")), code=303)
    set_browser_cookie(response, LANG_COOKIE, lang, LANG_COOKIE_MAX_AGE)
    return response


@bp.get("/policies")
@public()
def policy_archive() -> ResponseReturnValue:
    svc = services().policies
    current = svc.current()
    return render_template(
        "policies/archive.html",
        policies=svc.all(),
        current_version=current.version if current else None,
        now=runtime().clock.now(),
        purpose_title=purpose_title,
    )


@bp.get("/policies/<code:version>")
@public()
def policy_version(version: str) -> ResponseReturnValue:
    svc = services().policies
    found, current = svc.get(version), svc.current()
    previous = _previous(svc.all(), found) if found.material else None
    return render_template(
        "policies/version.html",
        policy=found,
        current_version=current.version if current else None,
        now=runtime().clock.now(),
        purpose_title=purpose_title,
        previous=previous,
        differences=text_differences(previous.text, found.text) if previous else [],
    )


def _previous(versions: Sequence[PolicyVersion], policy: PolicyVersion) -> PolicyVersion | None:
    """The version in force before ``policy`` took effect."""
    earlier = [v for v in versions if v.effective_at < policy.effective_at]
    return max(earlier, key=lambda v: v.effective_at) if earlier else None


@dataclass(frozen=True)
class LineChange:
    kind: str  # "added", "removed" or "same"
    text: str


def text_differences(before: str, after: str) -> list[LineChange]:
    """The lines of ``after`` against ``before``: removed, added and unchanged."""
    old, new = before.splitlines(), after.splitlines()
    changes: list[LineChange] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            changes.extend(LineChange("same", line) for line in old[i1:i2])
            continue
        changes.extend(LineChange("removed", line) for line in old[i1:i2])
        changes.extend(LineChange("added", line) for line in new[j1:j2])
    return changes


def purpose_title(code: str) -> str:
    """A purpose's name from the catalogue, in the page's language."""
    purpose = runtime().catalogue.get(code)
    if purpose is None:
        return code
    return purpose.title.zh_cn if html_lang() == "zh-CN" else purpose.title.en
