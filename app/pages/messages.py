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
    # app/services/ways_in.py: unlinking, removing a password or passkey, a withdrawal.
    "last-way-in": lazy_gettext(
        "This is your last way to sign in. Add a password or a passkey first."
    ),
}
# The password policy's reason codes (FieldError.reason, and POST
# /api/v1/password/check), in words.
PASSWORD_REASONS = {
    "too_short": lazy_gettext("Use a longer password."),
    "too_long": lazy_gettext("Use a shorter password."),
    "common": lazy_gettext("This password is among the most common passwords; choose another."),
    "personal": lazy_gettext(
        "This password is built from your own email, phone number or name; choose one that is not."
    ),
}
FALLBACK = lazy_gettext("This could not be done. Check what you entered and try again.")


def message_for(error: ServiceError) -> str:
    return str(MESSAGES.get(error.slug, FALLBACK))


def password_message(reason: str | None, error: ServiceError) -> str:
    """Why the password policy refused a password, in the page's language."""
    known = PASSWORD_REASONS.get(reason or "")
    return str(known) if known is not None else message_for(error)
