"""How recent a sign-in must be for each kind of sensitive act (RFC 9470
``max_age``). Each kind is named here once; its age is a setting, so an
operator can tighten it without touching code, and the access gate
(app/http/access.py) and the safeguards (app/services/safeguards.py) read the
same number."""

from __future__ import annotations

from enum import StrEnum

from app.settings import Settings


class Freshness(StrEnum):
    OPERATOR = "operator"
    CANCELLATION = "cancellation"
    CREDENTIAL_CHANGE = "credential_change"
    DEVICE_MANAGEMENT = "device_management"
    PASSKEY_REMOVAL = "passkey_removal"
    SECOND_FACTOR = "second_factor"
    EXPORT = "export"
    IDENTITY_VERIFICATION = "identity_verification"

    def seconds(self, settings: Settings) -> int:
        """The age allowed, from ``PRIVID_<NAME>_MAX_AUTH_AGE_SECONDS``."""
        return int(getattr(settings, f"{self.value}_max_auth_age_seconds"))
