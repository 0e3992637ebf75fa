"""The JSON API (``/api/v1``, health, OpenAPI, JWKS) as a capability: its
blueprints, all on the JSON problem-document surface."""

from __future__ import annotations

from app.api import (
    account,
    admin,
    consent,
    devices,
    incidents,
    login,
    mfa,
    passwords,
    registration,
    rights,
    scrape,
    system,
    webauthn,
)
from app.api.problems import JSON_API
from app.capabilities import Capability

capability = Capability(
    name="json-api",
    blueprints=tuple(
        (module.bp, JSON_API)
        for module in (
            system,
            registration,
            passwords,
            login,
            account,
            consent,
            rights,
            mfa,
            webauthn,
            devices,
            incidents,
            admin,
            scrape,
        )
    ),
)
