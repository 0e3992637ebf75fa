"""The provider this app talks to, built once from the settings: its circuit
breaker has to outlive a request to be of any use."""

from __future__ import annotations

from flask import Flask, current_app

from app.clock import Clock
from app.extensions import limiter
from app.http.limits import caller_key, setting
from app.http.scope import runtime, services
from app.settings import Settings, decode_key
from verification.http_provider import HttpProvider, HttpProviderConfig
from verification.provider import Provider
from verification.sandbox import SandboxProvider
from verification.service import VerificationService

EXTENSION = "privid.verification.provider"

# Attempts per account, one count for the API and the page: the limit keeps the
# service from being an oracle for whether a name goes with a number.
attempts_per_account = limiter.shared_limit(
    setting("limit_verification_per_account"), scope="identity-verification", key_func=caller_key
)


def build_provider(settings: Settings, clock: Clock) -> Provider:
    # Settings.check refuses the sandbox in production and any other name.
    if settings.verification_provider == "sandbox":
        return SandboxProvider(clock)
    return HttpProvider(
        HttpProviderConfig(
            name=settings.verification_provider_name,
            base_url=settings.verification_provider_url,
            key_id=settings.verification_provider_key_id,
            request_key=decode_key(
                settings.verification_provider_request_key,
                "PRIVID_VERIFICATION_PROVIDER_REQUEST_KEY",
            ),
            answer_key=decode_key(
                settings.verification_provider_answer_key,
                "PRIVID_VERIFICATION_PROVIDER_ANSWER_KEY",
            ),
            timeout_seconds=settings.verification_provider_timeout_seconds,
            retries=settings.verification_provider_retries,
            backoff_seconds=settings.verification_provider_backoff_seconds,
            breaker_fail_max=settings.verification_breaker_fail_max,
            breaker_reset_seconds=settings.verification_breaker_reset_seconds,
        )
    )


def install_provider(app: Flask) -> None:
    runtime = app.extensions["privid.runtime"]
    app.extensions[EXTENSION] = build_provider(runtime.settings, runtime.clock)


def provider() -> Provider:
    found: Provider = current_app.extensions[EXTENSION]
    return found


def flow() -> VerificationService:
    """The verification service of this request, with the app's provider."""
    settings = runtime().settings
    return VerificationService(services(), provider(), settings.verification_provider_abroad)
