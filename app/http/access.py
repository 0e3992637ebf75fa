"""Who may call an endpoint, declared once on the endpoint.

Every view carries exactly one ``Access``, attached by one of the decorators
below; ``app/http/gate.py`` reads it before the view runs, for every surface
(JSON API, pages, OAuth). A route without one is refused at start-up and by
``tests/test_access_gate.py``. Nothing else checks sessions, CSRF, the
consent step, levels or ages: views receive a caller the gate has admitted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from app.services.freshness import Freshness
from app.services.sessions import Acr

F = TypeVar("F", bound=Callable[..., Any])


class Level(StrEnum):
    """How strong the sign-in must be. ``ACCOUNT`` is every factor the account
    has: multi-factor once TOTP is on, else single-factor."""

    SINGLE_FACTOR = Acr.SINGLE_FACTOR.value
    MULTI_FACTOR = Acr.MULTI_FACTOR.value
    PHISHING_RESISTANT = Acr.PHISHING_RESISTANT.value
    ACCOUNT = "account"


@dataclass(frozen=True)
class StepUp:
    """A sign-in at ``level`` or above, no older than ``freshness`` allows."""

    freshness: Freshness
    level: Level = Level.SINGLE_FACTOR


# The step-ups endpoints ask for, named once.
OPERATOR_STEP_UP = StepUp(Freshness.OPERATOR)
CANCELLATION = StepUp(Freshness.CANCELLATION)
EXPORT = StepUp(Freshness.EXPORT)
# Changing what signs you in: every factor the account has.
CREDENTIAL_CHANGE = StepUp(Freshness.CREDENTIAL_CHANGE, Level.ACCOUNT)
# Adding a passkey or binding a device: as fresh as removing a binding.
DEVICE_MANAGEMENT = StepUp(Freshness.DEVICE_MANAGEMENT, Level.ACCOUNT)
SECOND_FACTOR_ENROLMENT = StepUp(Freshness.SECOND_FACTOR)
# Sending an identity document to the verification provider.
IDENTITY_VERIFICATION = StepUp(Freshness.IDENTITY_VERIFICATION, Level.ACCOUNT)


@dataclass(frozen=True)
class Access:
    # A session is required (cookie or token).
    signed_in: bool
    # Usable by a session that still owes consent decisions.
    consent_step: bool = False
    step_up: StepUp | None = None
    operator: bool = False
    # State-changing requests from a browser prove they come from this
    # service's own pages (off only for endpoints other servers call).
    csrf: bool = True
    # A public view that reads form posts (a page's sign-in form): those must
    # carry the pre-session CSRF token. Views read forms only through
    # ``app.http.gate.submitted_form``, which insists on this declaration.
    reads_forms: bool = False
    # The endpoint issues a session that a DPoP proof (RFC 9449) may bind to
    # the proof's key. The view checks the proof (app/http/scope.py,
    # ``sign_in_context``) after its rate limits, as any sign-in input.
    binds_dpop: bool = False


def _declare(rule: Access) -> Callable[[F], F]:
    def attach(view: F) -> F:
        if getattr(view, "access", None) is not None:
            raise TypeError(f"{view.__name__} declares its access twice")
        view.access = rule  # type: ignore[attr-defined]
        return view

    return attach


def public(
    *, csrf: bool = True, binds_dpop: bool = False, reads_forms: bool = False
) -> Callable[[F], F]:
    """Anyone may call it; a session, if any, is not looked at."""
    return _declare(
        Access(signed_in=False, csrf=csrf, binds_dpop=binds_dpop, reads_forms=reads_forms)
    )


def signed_in(*, consent_step: bool = False, step_up: StepUp | None = None) -> Callable[[F], F]:
    """A signed-in caller; with ``step_up``, one who signed in recently and
    strongly enough (RFC 9470)."""
    return _declare(Access(signed_in=True, consent_step=consent_step, step_up=step_up))


def operator_only() -> Callable[[F], F]:
    """Operators who signed in recently enough."""
    return _declare(Access(signed_in=True, operator=True, step_up=OPERATOR_STEP_UP))


def access_of(view: Callable[..., Any] | None) -> Access | None:
    return getattr(view, "access", None)
