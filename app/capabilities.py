"""The plug-in point: each capability (the JSON API, the pages, and later
OAuth, WeChat and identity verification) lives in its own package and
describes itself with one ``Capability``; ``INSTALLED`` lists them. The app
factory, the runtime, the export and Alembic read them from here instead of
from lists kept in each of those places."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask

from app.http.surfaces import Surface
from app.services.cancellation import AccountEnding
from app.services.consent import WithdrawalEffects
from app.services.export import Section, register_section
from app.services.retention import Purge
from app.services.ways_in import WayInCounter, register_ways_in

if TYPE_CHECKING:
    from app.models import User
    from app.services.container import DeferredRenderer, Services, SessionEndListener

# (services, user, client id, claim names) -> {claim: value}
ClaimValues = Callable[["Services", "User", str, frozenset[str]], Mapping[str, Any]]

# Modules with a ``capability`` attribute, in the order their blueprints register.
INSTALLED: tuple[str, ...] = (
    "app.core",
    "app.api.capability",
    "app.pages",
    "app.oidc",
    "app.wechat",
    "verification",
)


@dataclass(frozen=True)
class Capability:
    name: str
    # Each blueprint with the surface that answers for it.
    blueprints: Sequence[tuple[Blueprint, Surface]] = ()
    # Adds what stops in this capability when a purpose is withdrawn.
    withdrawal_effects: Callable[[WithdrawalEffects], None] | None = None
    # What this capability holds about a person, for the export.
    export_sections: Sequence[Section] = ()
    # The capability's tables (their module imported makes Alembic see them).
    models: Sequence[type] = ()
    # Anything else it wires into the app (template globals, a locale selector).
    init_app: Callable[[Flask], None] | None = None
    # Public keys it signs with: /.well-known/jwks.json publishes them beside
    # the receipt key, so relying parties know one jwks_uri.
    published_keys: Callable[[Services], Sequence[Mapping[str, Any]]] | None = None
    # What it does, in the same transaction, when browser sessions end.
    session_ended: SessionEndListener | None = None
    # Renderers of the deferred outbox messages it queues, by name.
    outbox_renderers: Sequence[tuple[str, DeferredRenderer]] = ()
    # What it ends, at once, when an account is cancelled (before the rows go).
    account_ending: AccountEnding | None = None
    # What a retention run deletes of its own tables.
    retention_purge: Purge | None = None
    # Pages of its own in the privacy centre: (endpoint, label), for the nav.
    privacy_pages: Sequence[tuple[str, Any]] = ()
    # Addresses off the site that a page's forms may end at, through redirects,
    # when the page returns the person to ``next`` (an authorisation request
    # ends at its client's redirect URI); browsers check form-action on each hop.
    form_targets: Callable[[str], Sequence[str]] | None = None
    # Its pages' message catalogues, when it lives outside app/ (whose
    # ``translations/`` folders are found without being named).
    translations: str | None = None
    # Values of the OIDC user claims it answers for (app/oidc/claims.py names
    # them under a scope), for one client; a claim it has no value for is left out.
    user_claims: ClaimValues | None = None
    # The ways in to an account it holds (a linked identity), named "kind:id":
    # app/services/ways_in.py counts them for "an account keeps one way in".
    ways_in: WayInCounter | None = None


@cache
def installed() -> tuple[Capability, ...]:
    found = tuple(importlib.import_module(name).capability for name in INSTALLED)
    for capability in found:
        for section in capability.export_sections:
            register_section(section)
        if capability.ways_in is not None:
            register_ways_in(capability.ways_in)
    return found


def withdrawal_effects() -> WithdrawalEffects:
    effects = WithdrawalEffects()
    for capability in installed():
        if capability.withdrawal_effects is not None:
            capability.withdrawal_effects(effects)
    return effects


def session_end_listeners() -> tuple[SessionEndListener, ...]:
    return tuple(c.session_ended for c in installed() if c.session_ended is not None)


def outbox_renderers() -> dict[str, DeferredRenderer]:
    return {name: render for c in installed() for name, render in c.outbox_renderers}


def account_endings() -> tuple[AccountEnding, ...]:
    return tuple(c.account_ending for c in installed() if c.account_ending is not None)


def retention_purges() -> tuple[Purge, ...]:
    return tuple(c.retention_purge for c in installed() if c.retention_purge is not None)


def privacy_pages() -> list[tuple[str, Any]]:
    """The privacy centre's sections other capabilities add, for its nav."""
    return [page for capability in installed() for page in capability.privacy_pages]


def published_keys(services: Services) -> list[Mapping[str, Any]]:
    """Every installed capability's public signing keys, as JWKs."""
    keys: list[Mapping[str, Any]] = []
    for capability in installed():
        if capability.published_keys is not None:
            keys.extend(capability.published_keys(services))
    return keys


def capability_claims() -> list[ClaimValues]:
    return [c.user_claims for c in installed() if c.user_claims is not None]


def capability_translations() -> list[str]:
    """The catalogue folders capabilities outside app/ name."""
    return [c.translations for c in installed() if c.translations is not None]


def form_targets(next_path: str) -> list[str]:
    """Every installed capability's off-site form targets for ``next_path``."""
    found: list[str] = []
    for capability in installed():
        if capability.form_targets is not None:
            found.extend(capability.form_targets(next_path))
    return found
