"""Which language a page speaks: the visitor's explicit choice (a cookie set
by the language switch), else the best match for Accept-Language, else English.

Catalogues: every ``translations/`` folder under app/ (one per page area or
capability) and those capabilities outside app/ name (``Capability.translations``),
compiled to .mo when the package is installed (setup.py).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from flask import Flask, request
from flask_babel import Babel, get_locale

from app.capabilities import capability_translations

PAGES_DIR = Path(__file__).resolve().parent
LANG_COOKIE = "__Host-privid_lang"
LANG_COOKIE_MAX_AGE = 365 * 86400
# The tags people see and send (BCP 47) and the locales Babel uses. Babel's
# name for zh-CN is zh_Hans_CN, so that is the catalogue folder gettext looks
# in (translations/zh_Hans_CN/LC_MESSAGES/messages.po): a zh_CN folder is
# never read.
LANGUAGES = {"zh-CN": "zh_Hans_CN", "en": "en"}
DEFAULT_LANGUAGE = "en"

babel = Babel()


def translation_directories() -> list[str]:
    # Other capabilities with pages (the OIDC provider's) keep theirs too.
    found = {str(p) for p in PAGES_DIR.parent.rglob("translations") if p.is_dir()}
    found.update(capability_translations())
    return sorted(found)


def chosen_language() -> str | None:
    """The language tag the visitor picked with the switch, if it is one we speak."""
    value = request.cookies.get(LANG_COOKIE)
    return value if value in LANGUAGES else None


def select_locale() -> str:
    tag = (
        chosen_language()
        or requested_language()
        or request.accept_languages.best_match(list(LANGUAGES), default=DEFAULT_LANGUAGE)
    )
    return LANGUAGES[tag]


def requested_language() -> str | None:
    """OIDC's ui_locales (space-separated, in order of preference) on an
    authorisation request, or on a page it sent the person to (its ``next``)."""
    wanted = request.args.get("ui_locales", "")
    if not wanted and "ui_locales=" in request.args.get("next", ""):
        wanted = parse_qs(urlsplit(request.args["next"]).query).get("ui_locales", [""])[0]
    for tag in wanted.split():
        match = next((known for known in LANGUAGES if known.lower() == tag.lower()), None)
        match = match or next((k for k in LANGUAGES if k.split("-")[0] == tag.lower()), None)
        if match:
            return match
    return None


def html_lang() -> str:
    """The current locale as a BCP 47 tag, for <html lang> and hreflang."""
    locale = get_locale()
    if locale is None:
        return DEFAULT_LANGUAGE
    # Not locale.script: pages say zh-CN, as the switch and Accept-Language do.
    return "-".join(filter(None, (locale.language, locale.territory)))


def init_babel(app: Flask) -> None:
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = ";".join(translation_directories())
    app.config.setdefault("BABEL_DEFAULT_LOCALE", LANGUAGES[DEFAULT_LANGUAGE])
    # Every page shows times in one zone: the one working days are counted in
    # (a request's due day is a local day), not the server's UTC.
    calendar = app.extensions["privid.runtime"].calendar
    app.config["BABEL_DEFAULT_TIMEZONE"] = calendar.tz.key
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals["html_lang"] = html_lang
