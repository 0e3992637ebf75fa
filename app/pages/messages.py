"""What a page tells a person when a service call fails, in their language.

Services speak in problem slugs (app/errors.py); their English ``detail`` is
API prose, so pages show the text for the slug instead. Page areas add the
slugs of their own forms to ``MESSAGES`` through their own modules' lazy
strings; ``message_for`` falls back to a general sentence."""

from __future__ import annotations

from flask_babel import lazy_gettext

from app.errors import ServiceError

MESSAGES = {
    "invalid-credentials": lazy_gettext("The sign-in details are not correct."),
    "invalid-code": lazy_gettext(
        "The code is wrong, expired or already used. Ask for a new code if needed."
    ),
    "too-many-attempts": lazy_gettext("Too many attempts. Wait a while and try again."),
    "rate-limited": lazy_gettext("Too many requests. Wait a while and try again."),
    "validation-error": lazy_gettext("Check the highlighted fields."),
}
FALLBACK = lazy_gettext("This could not be done. Check what you entered and try again.")


def message_for(error: ServiceError) -> str:
    return str(MESSAGES.get(error.slug, FALLBACK))
